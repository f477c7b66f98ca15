// The mock backend's server (private to backend/): the state a connection carries and the
// class that runs the loop. server.cpp holds the loop (accepting, reading, writing, timers);
// routes.cpp holds the answers (one function per route) and what they generate.
//
// Per connection, requests are read as they arrive (net::request_reader) and queued; the
// responses are produced strictly in request order, one "job" at a time. A job is either
// complete at once (appended to the output buffer), streamed lazily as the socket drains
// (/bytes, /chunked, /close), waiting for a timer (/slow, /api/chat) or never finishing
// (/hang).
//
// Thread-safety: all connection, timer and socket state is touched by the loop thread only;
// the observers read atomic counters and a mutex-protected record of the requests.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <queue>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "backend/http_backend.hpp"
#include "net/event_loop.hpp"
#include "net/request_reader.hpp"

namespace sshpool::demo::detail {

using steady = std::chrono::steady_clock;

/// Limit on the request line plus header names and values, answered with 431.
constexpr std::size_t max_head_bytes = std::size_t{64} << 10;
/// Limit on a request body, answered with 413.
constexpr std::size_t max_body_bytes = std::size_t{64} << 20;

/// A parsed request waiting for (or being given) its response.
struct request : net::request {
  /// The connection may carry further requests after this one.
  bool keep_alive = true;
  /// Nonzero: the request was refused while parsing; answer with this status and close.
  int reject = 0;
};

/// What the connection's current response is still doing.
enum class job_kind {
  /// Nothing in progress: the next queued request may start.
  idle,
  /// Streaming `left` pattern bytes from `offset`.
  pattern,
  /// Streaming `chunks_left` chunks of `chunk_size` pattern bytes (`left` of the current).
  chunks,
  /// Waiting for the timer, then sending `deferred`.
  delayed,
  /// Emitting /api/chat token lines on timer ticks.
  chat,
  /// Never answering.
  hang,
};

/// The state of the response in progress.
struct job {
  job_kind kind = job_kind::idle;
  /// Chunked framing (false: raw bytes, delimited by closing the connection).
  bool chunked = false;
  std::uint64_t offset = 0;
  std::uint64_t left = 0;
  std::uint64_t chunks_left = 0;
  std::uint64_t chunk_size = 0;
  std::size_t tokens_sent = 0;
  steady::time_point started{};
  std::string deferred;
};

/// One client connection. Owned and used by the loop thread only.
struct connection {
  std::uint64_t id = 0;
  net::unique_fd fd;
  net::request_reader reader{max_head_bytes, max_body_bytes};
  /// Complete requests waiting for their response, in arrival order.
  std::deque<request> queued;
  /// The response in progress.
  job active;
  /// Output not yet accepted by the socket starts at `out[out_off]`.
  std::string out;
  std::size_t out_off = 0;
  /// The epoll interest currently registered.
  std::uint32_t events = 0;
  /// No further requests will be parsed (close requested, parse error, peer EOF).
  bool input_done = false;
  /// recv returned 0.
  bool peer_eof = false;
  /// EPOLLRDHUP was seen while not reading; it is then no longer polled for.
  bool rdhup_seen = false;
  /// Close once the response in progress is fully sent.
  bool close_after = false;
  /// Our FIN is sent; input is read and discarded until the peer's EOF or the timer.
  bool lingering = false;
  /// Identifies the connection's one live timer; stale heap entries carry older values.
  std::uint64_t timer_token = 0;

  std::size_t unsent() const { return out.size() - out_off; }
};

/// A timer heap entry.
struct timer_entry {
  steady::time_point when;
  std::uint64_t connection_id;
  std::uint64_t token;

  bool operator>(const timer_entry& other) const { return when > other.when; }
};

/// The event loop and everything it owns.
class server {
public:
  /// Binds, listens and starts the loop thread.
  explicit server(http_backend::options opts);
  /// Stops the loop and joins its thread.
  ~server();

  server(const server&) = delete;
  server& operator=(const server&) = delete;

  std::uint16_t port() const { return loop_.port(); }
  std::uint64_t requests_received() const { return requests_.load(); }
  std::uint64_t connections_accepted() const { return accepted_.load(); }
  std::size_t open_connections() const { return open_.load(); }
  std::vector<recorded_request> received() const;
  bool wait_for_requests(std::uint64_t n, std::chrono::milliseconds timeout) const;

private:
  // -- the loop (server.cpp) ----------------------------------------------------------------
  void run();
  int next_timeout_ms() const;
  void admit(net::unique_fd fd);
  void on_event(connection& c, std::uint32_t events);
  bool wants_input(const connection& c) const;
  void on_readable(connection& c);
  void on_peer_eof(connection& c);
  void parse(connection& c, std::string_view data);
  void record(const request& r);
  void pump(connection& c);
  void fill(connection& c);
  void produce_pattern(connection& c);
  void produce_chunks(connection& c);
  void update_interest(connection& c);
  void begin_close(connection& c);
  void close_now(connection& c);
  void arm_timer(connection& c, steady::time_point when);
  void run_timers();

  // -- the answers (routes.cpp) -------------------------------------------------------------
  /// Status line and the headers every response has.
  void begin_head(std::string& out, int status) const;
  /// Connection header and the blank line; marks the connection for closing if needed.
  static void end_head(std::string& out, connection& c, const request& r, bool force_close);
  /// A complete response with Content-Length (none for 204 and 304, which have no body).
  void write_simple(std::string& out, connection& c, const request& r, int status,
                    std::string_view type, std::string_view body, bool force_close = false);
  void bad_request(connection& c, const request& r);
  /// Starts the response to `r`: appends it, or its head and a job producing the rest.
  void start(connection& c, const request& r);
  void echo(connection& c, const request& r);
  void info(connection& c, const request& r);
  /// /bytes/N (Content-Length) or /close/N (delimited by closing the connection).
  void bytes(connection& c, const request& r, std::string_view arg, bool close_delimited);
  /// The head of a streamed answer: chunked, or for an HTTP/1.0 client close-delimited.
  void stream_head(connection& c, const request& r, std::string_view type);
  /// /chunked/N/K; to an HTTP/1.0 client the same bytes, delimited by closing.
  void chunked(connection& c, const request& r, std::string_view arg);
  void status(connection& c, const request& r, std::string_view arg);
  void slow(connection& c, const request& r, std::string_view arg);
  void tags(connection& c, const request& r);
  void not_found(connection& c, const request& r, std::string_view path);
  /// The closing fields of a chat answer: `"done":true,...}`.
  std::string chat_summary(steady::time_point started) const;
  void chat(connection& c, const request& r);
  /// Appends the next chat line (and, after the last token, the summary and the end).
  void emit_token(connection& c);

  const http_backend::options opts_;
  net::event_loop loop_;

  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::size_t> open_{0};
  mutable std::mutex record_mutex_;
  mutable std::condition_variable record_cv_;
  std::deque<recorded_request> records_;

  // Loop thread only.
  net::connection_table<connection> connections_;
  std::priority_queue<timer_entry, std::vector<timer_entry>, std::greater<>> timers_;
  std::vector<char> read_buffer_;

  std::thread thread_; // last: started once everything above exists
};

/// Appends pattern bytes [offset, offset + n) (byte i is 'a' + i % 26) to `out`.
void append_pattern(std::string& out, std::uint64_t offset, std::size_t n);

} // namespace sshpool::demo::detail
