// The front end's loop (private to gateway/): the state of a client connection and the class
// that runs the epoll loop on its thread. Its parts:
//   http_server.cpp     the loop itself: running and stopping, reading and parsing requests
//                       (net::request_reader), exchanges, marking and servicing connections;
//   http_output.cpp     answers: response heads and body framing, writing, the end of an
//                       exchange, lingering, closing;
//   http_admission.cpp  client slots: accepting, shedding (from the order of wait_order.hpp)
//                       and refusing, timeouts;
//   http_tls.cpp        the TLS layer under reads and writes: the handshake, TLS reads and
//                       writes, the context and its reload.
//
// Thread-safety: the loop thread only, but for `start`, `shutdown` and the destructor (the
// owner's thread) and the counters of `http_server` (atomics).
#pragma once

#include <sys/socket.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gateway/http_server.hpp"
#include "gateway/tls.hpp"
#include "gateway/wait_order.hpp"
#include "net/event_loop.hpp"
#include "net/request_reader.hpp"
#include "sshpool/engine.hpp"

namespace sshpool::gateway {

using steady = std::chrono::steady_clock;

/// Size of one recv; also how much consumed input or sent output is kept before the buffer
/// is compacted.
constexpr std::size_t read_chunk = std::size_t{64} << 10;

enum class phase { reading, handling, streaming, flushing, lingering };

/// How the body of the response in progress is framed.
enum class framing { none, length, chunked, close };

/// One client connection. Loop thread only.
struct connection {
  connection(std::size_t max_head, std::size_t max_body) : reader(max_head, max_body) {}

  std::uint64_t id = 0;
  net::unique_fd fd;
  /// The TLS layer (nullptr: plain HTTP, read and written with plain recv / send).
  std::unique_ptr<tls_stream> tls;
  /// The TLS layer waits for the socket to become writable (a handshake or read step) or
  /// readable (a write step), beyond what the exchange itself polls for.
  bool tls_wants_write = false;
  bool tls_wants_read = false;
  std::string peer;
  /// The peer's host: its IPv4 address or IPv6 /64 (the key of the per-source count).
  std::string source;
  steady::time_point accepted;
  /// Requests dispatched so far (a head deadline runs from `accepted` until the first).
  std::uint64_t requests = 0;
  net::request_reader reader;
  bool keep_alive = true;
  bool head_request = false;
  bool http10 = false;
  /// The head of the request in progress was put to `admit_head`.
  bool head_admitted = false;
  /// What `admit_head` said of it (see http_request::principal).
  std::string principal;
  /// Received bytes not parsed yet (pipelined requests wait here).
  std::string in;
  std::size_t in_off = 0;
  /// No more requests are read (a rejected request, stopping).
  bool input_closed = false;
  // -- the exchange in progress
  phase ph = phase::reading;
  std::uint64_t exchange = 0;
  framing frame = framing::none;
  std::uint64_t remaining = 0;
  bool close_after = false;
  bool cut = false;
  /// Over the unsent-output cap: dropped when next serviced.
  bool overflow = false;
  std::uint64_t exchange_start = 0;
  // -- output: everything ever queued / sent, and where each body piece ends
  std::string out;
  std::size_t out_off = 0;
  std::uint64_t queued_total = 0;
  std::uint64_t sent_total = 0;
  std::deque<std::pair<std::uint64_t, std::size_t>> acks;
  // -- polling and timeouts
  std::uint32_t events = 0;
  steady::time_point last_input;
  steady::time_point last_write_progress;
  steady::time_point linger_deadline;
  // -- its place among the connections without an exchange, all and those of its source
  // (the shedding order: http_admission.cpp)
  wait_link<connection> waiting;
  wait_link<connection> waiting_in_source;

  std::size_t unsent() const { return out.size() - out_off; }
  /// A TLS connection whose handshake is not complete yet.
  bool handshaking() const { return tls && !tls->established(); }
  std::size_t unparsed() const { return in.size() - in_off; }
};

/// The event loop and everything it owns. Hosted by an engine (`start(host)`), it runs on
/// that engine's first scheduler thread through `run_once`.
class http_server::loop : public hosted_loop {
public:
  /// Binds and listens; the thread starts with `start`.
  loop(http_server& owner, options opts, http_handler& handler);
  /// `shutdown(0)`.
  ~loop() override;

  loop(const loop&) = delete;
  loop& operator=(const loop&) = delete;

  void start(engine* host);
  void shutdown(std::chrono::milliseconds grace);
  /// See http_server::reload_tls (http_tls.cpp).
  expected<void> reload_tls();

  // -- answers (loop thread; http_output.cpp) -----------------------------------------------
  void respond(std::uint64_t exchange, response_head head, std::string body);
  void send_head(std::uint64_t exchange, response_head head);
  void send_body(std::uint64_t exchange, std::string data);
  void finish(std::uint64_t exchange, bool complete);

  // -- hosted by an engine (its scheduler thread) --------------------------------------------
  void run_once(int timeout_ms) override;
  void wake() noexcept override { loop_.wake(); }

private:
  // -- the loop (http_server.cpp) -----------------------------------------------------------
  void run();
  /// One turn: waits at most `max_wait_ms` (-1: until the next sweep or the stop deadline),
  /// handles what is ready; true once the loop is over (stopped, or epoll failed).
  bool turn(int max_wait_ms);
  /// Closes every connection left once the loop is over.
  void close_all();
  /// Whether a connection still has an exchange or output to deliver.
  bool busy() const;
  void run_tasks();
  void begin_stop(std::chrono::milliseconds grace);
  void on_event(connection& c, std::uint32_t events);
  bool wants_input(const connection& c) const;
  void on_readable(connection& c, bool hung_up);
  /// Parses buffered input while no exchange is in progress.
  void advance(connection& c);
  void begin_exchange(connection& c);
  void dispatch(connection& c);
  void reject(connection& c, int status, std::string why);
  /// The handler refused the head: stop reading, hand the request on without its body.
  void withhold_body(connection& c);
  void mark(connection& c) { marked_.push_back(c.id); }
  connection* find_exchange(std::uint64_t exchange);
  /// Writes, parses and re-polls every marked connection, and puts it in its place in the
  /// shedding order (until none is marked: handler answers made meanwhile mark connections
  /// again).
  void service_marked();

  // -- output (http_output.cpp) -------------------------------------------------------------
  void append_out(connection& c, std::string_view data);
  void write_head(connection& c, const response_head& head);
  /// Writes what the socket takes, reports sent body bytes, ends a flushed exchange.
  void pump(connection& c);
  void end_exchange(connection& c);
  /// Sends our FIN and discards input until the peer's FIN (or the linger timeout), so
  /// unread input does not turn into a reset that destroys the response in flight.
  void begin_linger(connection& c);
  void update_interest(connection& c);
  /// Closes at once; an exchange in progress ends incomplete unless `delivered`.
  void drop(connection& c);

  // -- the TLS layer (http_tls.cpp) ----------------------------------------------------------
  /// Loads the context of options::tls_cert_file / tls_key_file (throws
  /// std::invalid_argument); nothing without them.
  void load_tls();
  /// Gives a new connection its TLS layer (with the current context); false if OpenSSL
  /// could not make one.
  bool attach_tls(connection& c);
  /// Advances the handshake; false if it failed (the connection was dropped).
  bool continue_handshake(connection& c);
  /// One read: plain recv, or a TLS read on an established TLS connection (lingering ones
  /// discard raw bytes).
  net::recv_status receive(connection& c, std::size_t& got);
  /// Writes the unsent output (plain send_pending, or TLS records); false when the
  /// connection failed.
  bool transmit(connection& c, std::size_t& sent);

  // -- client slots (http_admission.cpp) ----------------------------------------------------
  /// Whether another connection may be accepted (served, or refused with 503).
  bool has_room() const;
  /// Takes a new connection (or refuses it with 503 when no slot can be made).
  void admit(net::unique_fd fd, const sockaddr_storage& addr);
  /// Makes room for a new connection from `source` when the server or that source is at its
  /// cap, by closing the longest-waiting connection that has no exchange in progress (of
  /// that source if the source is at its cap). False if there is none: the newcomer is to
  /// be refused.
  bool make_room(const std::string& source);
  /// Puts `c` in, moves it within or takes it out of the shedding order, as its state says
  /// now. Run at admission and on every connection serviced, and by `make_room` to mend
  /// a place that input changed since (input only ever makes a connection younger).
  void update_waiting(connection& c);
  /// Gives up the slot of a connection being closed: out of the shedding order and the
  /// count of its source.
  void release_slot(connection& c);
  /// Closes or refuses (408) the connections past their deadlines.
  void sweep(steady::time_point now);
  /// At most one warning per period while clients are shed, refused or too slow with
  /// their heads (each one is logged at debug level; the counters are metrics).
  void warn_about_admission(steady::time_point now);

  http_server& owner_;
  const options opts_;
  http_handler& handler_;
  net::event_loop loop_;
  net::connection_table<connection> connections_;
  std::unordered_map<std::uint64_t, std::uint64_t> exchanges_;
  /// Open connections per source address, and those of them without an exchange.
  struct source_slots {
    std::size_t open = 0;
    wait_order<connection, &connection::waiting_in_source> order;
  };
  std::unordered_map<std::string, source_slots> per_source_;
  /// The connections without an exchange, the longest-waiting first.
  wait_order<connection, &connection::waiting> waiting_;
  std::array<std::uint64_t, 3> warned_counts_{};
  steady::time_point next_admission_warn_;
  std::vector<std::uint64_t> marked_;
  std::uint64_t next_exchange_ = 1;
  bool stopping_ = false;
  /// `shutdown` ran: the loop never starts again.
  bool stopped_ = false;
  steady::time_point stop_deadline_ = steady::time_point::max();
  steady::time_point next_sweep_;
  std::vector<char> read_buffer_;
  /// The TLS context for new connections (nullptr: plain HTTP); replaced by `reload_tls`
  /// from another thread, hence the mutex.
  std::mutex tls_mutex_;
  std::shared_ptr<const tls_context> tls_;
  /// The engine that hosts the loop (nullptr: none), and the end of its hosted loop.
  engine* host_ = nullptr;
  std::mutex over_mutex_;
  std::condition_variable over_cv_;
  bool over_ = false;
  std::thread thread_; // last: `start` runs it once everything above exists
};

} // namespace sshpool::gateway
