// The gateway's HTTP/1.1 front end: one thread, one epoll loop (see http_server.hpp).
//
// A connection goes through these phases, one exchange at a time:
//
//   reading ── request complete ──► handling ── send_head ──► streaming ── finish ──┐
//      ▲  (parse errors, 408: the handler answers, then the connection closes)  │ respond │
//      │                                                                          ▼         ▼
//      └────────── keep-alive ◄── all output taken by the socket ◄──────────── flushing
//                                          │ Connection: close / cut stream
//                                          ▼
//                                      lingering (our FIN sent; input discarded until the
//                                                 peer's FIN or 2 s) ──► closed
//
// Pipelined requests stay in the input buffer (bounded) until the exchange before them is
// over. While an exchange is in progress the socket stays polled for EOF: a client that
// goes away ends its exchange at once (`on_done(false)`), which is how a stream upstream
// gets cancelled. Calls from the handler only queue output and mark the connection; the
// loop then writes ("services") marked connections, so the handler is never re-entered
// from its own calls.
#include "gateway/http_server.hpp"

#include <arpa/inet.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <climits>
#include <deque>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

#include "gateway/logging.hpp"
#include "net/chunked.hpp"
#include "net/net.hpp"
#include "net/text.hpp"

namespace sshpool::gateway {

namespace {

using net::append_number;
using net::iequals;
using net::throw_errno;
using net::unique_fd;
using steady = std::chrono::steady_clock;

constexpr std::uint64_t listen_key = 0;
constexpr std::uint64_t wake_key = 1;
/// Size of one recv, and reads per readiness event (one busy client cannot starve others).
constexpr std::size_t read_chunk = std::size_t{64} << 10;
constexpr int read_budget = 8;
constexpr int accept_budget = 64;
/// Connections admitted over `max_clients` only to be answered 503 (then closed): bounds
/// the descriptors that refusals hold while they linger.
constexpr std::size_t refusal_slots = 64;
/// Shortest period between two warnings that clients were shed or refused.
constexpr std::chrono::seconds admission_warn_period{10};
/// Period of the timeout sweep over all connections.
constexpr std::chrono::milliseconds sweep_period{250};
/// After our FIN, how long input is read and discarded before closing anyway.
constexpr std::chrono::seconds linger_timeout{2};

const char* reason_phrase(int status) {
  const char* s = http_status_str(static_cast<http_status>(status));
  return s[0] == '<' ? "Unknown" : s;
}

enum class phase { reading, handling, streaming, flushing, lingering };

/// How the body of the response in progress is framed.
enum class framing { none, length, chunked, close };

/// One client connection. Loop thread only.
struct connection {
  std::uint64_t id = 0;
  unique_fd fd;
  std::string peer;
  /// The peer's address without the port (the key of the per-source count).
  std::string source;
  steady::time_point accepted;
  /// Requests dispatched so far (a head deadline runs from `accepted` until the first).
  std::uint64_t requests = 0;
  http_parser parser{};
  // -- the request being parsed
  http_request current;
  bool in_header_value = false;
  bool message_begun = false;
  /// The head of the request being read is complete.
  bool head_done = false;
  /// A chunked body: http-parser reads the head only, this decodes the body strictly.
  std::optional<net::chunked_decoder> chunked;
  /// The head is parsed and `chunked` is still reading the body.
  bool reading_body = false;
  std::size_t head_bytes = 0;
  int reject = 0;
  std::string reject_why;
  bool keep_alive = true;
  bool head_request = false;
  bool http10 = false;
  /// The request asked for "100 Continue" before sending its body.
  bool expect_continue = false;
  /// The limits of the server (the parser callbacks see only the connection).
  std::size_t max_head = 0;
  std::size_t max_body = 0;
  steady::time_point request_started;
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

  std::size_t unsent() const { return out.size() - out_off; }
  std::size_t unparsed() const { return in.size() - in_off; }
};

} // namespace

const std::string* http_request::header(std::string_view name) const {
  for (const auto& [key, value] : headers)
    if (iequals(key, name))
      return &value;
  return nullptr;
}

void loop_queue::post(std::function<void()> task) {
  std::lock_guard<std::mutex> guard{mutex_};
  if (closed_)
    return;
  tasks_.push_back(std::move(task));
  if (tasks_.size() == 1) {
    std::uint64_t one = 1;
    ssize_t written = ::write(wake_fd_, &one, sizeof one);
    static_cast<void>(written); // an eventfd write of 1 cannot fail short of overflow
  }
}

/// The event loop and everything it owns.
class http_server::loop {
public:
  loop(http_server& owner, options opts, http_handler& handler)
      : owner_(owner), opts_(std::move(opts)), handler_(handler) {
    listen_ = net::open_listener(opts_.bind, opts_.port, "http_server");
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw_errno(errno, "http_server: getsockname");
    owner_.port_ =
        ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                         : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    epoll_ = unique_fd(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_)
      throw_errno(errno, "http_server: epoll_create1");
    wake_ = unique_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_)
      throw_errno(errno, "http_server: eventfd");
    if (!watch(listen_.get(), EPOLL_CTL_ADD, EPOLLIN, listen_key) ||
        !watch(wake_.get(), EPOLL_CTL_ADD, EPOLLIN, wake_key))
      throw_errno(errno, "http_server: epoll_ctl");
    owner_.queue_->wake_fd_ = wake_.get();
    read_buffer_.resize(read_chunk);
  }

  void start() {
    if (!thread_.joinable() && !stopped_)
      thread_ = std::thread([this] { run(); });
  }

  ~loop() { shutdown(std::chrono::milliseconds(0)); }

  loop(const loop&) = delete;
  loop& operator=(const loop&) = delete;

  void shutdown(std::chrono::milliseconds grace) {
    if (thread_.joinable()) {
      owner_.queue_->post([this, grace] { begin_stop(grace); });
      thread_.join();
    }
    stopped_ = true;
    std::lock_guard<std::mutex> guard{owner_.queue_->mutex_};
    owner_.queue_->closed_ = true;
    owner_.queue_->tasks_.clear();
  }

  // -- answers (loop thread) ----------------------------------------------------------------

  void respond(std::uint64_t exchange, response_head head, std::string body) {
    connection* c = find_exchange(exchange);
    if (c == nullptr || c->ph != phase::handling)
      return;
    head.content_length = body.size();
    bool has_body = !c->head_request && !head.no_body;
    write_head(*c, head);
    if (has_body)
      append_out(*c, body);
    c->ph = phase::flushing;
    mark(*c);
  }

  void send_head(std::uint64_t exchange, response_head head) {
    connection* c = find_exchange(exchange);
    if (c == nullptr || c->ph != phase::handling)
      return;
    write_head(*c, head);
    c->ph = phase::streaming;
    mark(*c);
  }

  void send_body(std::uint64_t exchange, std::string data) {
    connection* c = find_exchange(exchange);
    if (c == nullptr || c->ph != phase::streaming || data.empty())
      return;
    std::size_t size = data.size();
    switch (c->frame) {
    case framing::none:
      break; // nothing may follow this head: the piece is dropped (and acknowledged)
    case framing::length:
      if (size > c->remaining) {
        c->cut = true;
        size = static_cast<std::size_t>(c->remaining);
        data.resize(size);
      }
      c->remaining -= size;
      append_out(*c, data);
      break;
    case framing::chunked: {
      std::string prefix;
      append_number(prefix, size, 16);
      prefix += "\r\n";
      append_out(*c, prefix);
      append_out(*c, data);
      append_out(*c, "\r\n");
      break;
    }
    case framing::close:
      append_out(*c, data);
      break;
    }
    c->acks.emplace_back(c->queued_total, data.size());
    if (c->cut) {
      c->close_after = true;
      c->ph = phase::flushing;
    }
    if (c->unsent() > opts_.max_unsent_bytes)
      c->overflow = true;
    mark(*c);
  }

  void finish(std::uint64_t exchange, bool complete) {
    connection* c = find_exchange(exchange);
    if (c == nullptr || (c->ph != phase::streaming && c->ph != phase::handling))
      return;
    if (c->ph == phase::handling || (c->frame == framing::length && c->remaining != 0))
      complete = false;
    if (complete && c->frame == framing::chunked)
      append_out(*c, "0\r\n\r\n");
    if (!complete) {
      c->cut = true;
      c->close_after = true;
    }
    c->ph = phase::flushing;
    mark(*c);
  }

private:
  // -- setup --------------------------------------------------------------------------------

  bool watch(int fd, int op, std::uint32_t events, std::uint64_t key) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = key;
    return ::epoll_ctl(epoll_.get(), op, fd, &ev) == 0;
  }

  // -- the loop -----------------------------------------------------------------------------

  void run() {
    std::array<epoll_event, 256> events;
    auto next_sweep = steady::now() + sweep_period;
    for (;;) {
      auto now = steady::now();
      auto wait = std::min(next_sweep, stopping_ ? stop_deadline_ : next_sweep) - now;
      auto wait_ms =
          std::max<long long>(0, std::chrono::ceil<std::chrono::milliseconds>(wait).count());
      int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()),
                           static_cast<int>(wait_ms));
      if (n < 0 && errno != EINTR) {
        log_event(spdlog::level::err, "http_server_failed",
                  {field("error", std::system_category().message(errno))});
        break;
      }
      for (int i = 0; i < n; ++i) {
        std::uint64_t key = events[i].data.u64;
        if (key == wake_key)
          run_tasks();
        else if (key == listen_key)
          accept_all();
        else if (auto it = connections_.find(key); it != connections_.end())
          on_event(*it->second, events[i].events);
      }
      service_marked();
      now = steady::now();
      if (now >= next_sweep) {
        sweep(now);
        service_marked();
        next_sweep = now + sweep_period;
      }
      closed_.clear();
      if (stopping_ && (now >= stop_deadline_ || !busy()))
        break;
    }
    std::vector<std::uint64_t> ids;
    for (auto& [id, c] : connections_)
      ids.push_back(id);
    for (auto id : ids)
      if (auto it = connections_.find(id); it != connections_.end())
        drop(*it->second);
    closed_.clear();
  }

  /// Whether a connection still has an exchange or output to deliver.
  bool busy() const {
    for (auto& [id, c] : connections_)
      if (c->ph != phase::lingering && (c->exchange != 0 || c->unsent() > 0))
        return true;
    return false;
  }

  void run_tasks() {
    std::uint64_t count = 0;
    ssize_t got = ::read(wake_.get(), &count, sizeof count);
    static_cast<void>(got); // EAGAIN: nothing to reset
    std::vector<std::function<void()>> tasks;
    {
      std::lock_guard<std::mutex> guard{owner_.queue_->mutex_};
      tasks.swap(owner_.queue_->tasks_);
    }
    for (auto& task : tasks)
      task();
  }

  void begin_stop(std::chrono::milliseconds grace) {
    stopping_ = true;
    stop_deadline_ = steady::now() + grace;
    if (listen_) {
      watch(listen_.get(), EPOLL_CTL_DEL, 0, listen_key);
      listen_.reset();
    }
    std::vector<connection*> idle;
    for (auto& [id, c] : connections_) {
      c->input_closed = true;
      if (c->ph == phase::reading)
        idle.push_back(c.get());
      else
        c->close_after = true;
    }
    for (auto* c : idle)
      drop(*c);
  }

  void accept_all() {
    for (int i = 0; i < accept_budget; ++i) {
      if (connections_.size() >= opts_.max_clients + refusal_slots) {
        stop_accepting();
        return;
      }
      sockaddr_storage addr{};
      socklen_t len = sizeof addr;
      unique_fd fd(::accept4(listen_.get(), reinterpret_cast<sockaddr*>(&addr), &len,
                             SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd) {
        if (errno == EINTR || errno == ECONNABORTED)
          continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
          stop_accepting(); // out of descriptors: until a connection closes
        return;
      }
      int on = 1;
      ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
      auto c = std::make_unique<connection>();
      c->id = next_id_++;
      c->fd = std::move(fd);
      c->peer = peer_name(addr, c->source);
      http_parser_init(&c->parser, HTTP_REQUEST);
      c->parser.data = c.get();
      c->max_head = opts_.max_header_bytes;
      c->max_body = opts_.max_body_bytes;
      c->events = EPOLLIN | EPOLLRDHUP;
      c->accepted = c->last_input = c->last_write_progress = steady::now();
      bool admitted = make_room(c->source);
      if (!watch(c->fd.get(), EPOLL_CTL_ADD, c->events, c->id))
        continue;
      owner_.accepted_.fetch_add(1);
      owner_.open_.fetch_add(1);
      ++per_source_[c->source];
      connection& added = *connections_.emplace(c->id, std::move(c)).first->second;
      if (!admitted) {
        owner_.refused_.fetch_add(1);
        reject(added, 503, "too many client connections; try again later");
        mark(added);
      }
    }
  }

  void stop_accepting() {
    if (accepting_)
      watch(listen_.get(), EPOLL_CTL_DEL, 0, listen_key);
    accepting_ = false;
  }

  /// Makes room for a new connection from `source` when the server or that source is at its
  /// cap, by closing the longest-waiting connection that has no exchange in progress (of
  /// that source if the source is at its cap). False if there is none: the newcomer is to
  /// be refused.
  bool make_room(const std::string& source) {
    bool source_full = opts_.max_clients_per_source != 0 &&
                       per_source_count(source) >= opts_.max_clients_per_source;
    if (!source_full && connections_.size() < opts_.max_clients)
      return true;
    connection* victim = nullptr;
    steady::time_point victim_since = steady::time_point::max();
    for (auto& [id, c] : connections_) {
      if (source_full && c->source != source)
        continue;
      // A connection that was answered and only waits for the peer's FIN goes first.
      bool done = c->ph == phase::lingering;
      if (!done && (c->ph != phase::reading || c->exchange != 0 || c->unsent() > 0))
        continue;
      auto since = done               ? steady::time_point::min()
                   : c->message_begun ? c->request_started
                                      : c->last_input;
      if (since < victim_since) {
        victim = c.get();
        victim_since = since;
      }
    }
    if (victim == nullptr)
      return false;
    owner_.shed_.fetch_add(1);
    log_event(spdlog::level::debug, "client_shed",
              {field("peer", victim->peer), field("reason", source_full ? "source_full" : "full")});
    drop(*victim);
    return true;
  }

  std::size_t per_source_count(const std::string& source) const {
    auto it = per_source_.find(source);
    return it == per_source_.end() ? 0 : it->second;
  }

  /// "ip:port" of `addr`; its ip alone goes to `source`.
  static std::string peer_name(const sockaddr_storage& addr, std::string& source) {
    char host[INET6_ADDRSTRLEN] = "?";
    std::uint16_t port = 0;
    if (addr.ss_family == AF_INET) {
      auto& in = reinterpret_cast<const sockaddr_in&>(addr);
      ::inet_ntop(AF_INET, &in.sin_addr, host, sizeof host);
      port = ntohs(in.sin_port);
    } else if (addr.ss_family == AF_INET6) {
      auto& in6 = reinterpret_cast<const sockaddr_in6&>(addr);
      ::inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof host);
      port = ntohs(in6.sin6_port);
    }
    source = host;
    return source + ":" + std::to_string(port);
  }

  void on_event(connection& c, std::uint32_t events) {
    if ((events & EPOLLERR) != 0) {
      drop(c);
      return;
    }
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) != 0)
      on_readable(c, (events & (EPOLLRDHUP | EPOLLHUP)) != 0);
    if (c.fd)
      mark(c);
  }

  // -- reading ------------------------------------------------------------------------------

  bool wants_input(const connection& c) const {
    return c.ph == phase::lingering || (!c.input_closed && c.unparsed() < opts_.max_header_bytes);
  }

  void on_readable(connection& c, bool hung_up) {
    for (int i = 0; i < read_budget; ++i) {
      if (!wants_input(c)) {
        // Not reading (input paused or closed): only the peer's hang-up matters now.
        if (hung_up)
          drop(c);
        return;
      }
      ssize_t n = ::recv(c.fd.get(), read_buffer_.data(), read_buffer_.size(), 0);
      if (n > 0) {
        owner_.bytes_in_.fetch_add(static_cast<std::uint64_t>(n));
        c.last_input = steady::now();
        if (c.ph != phase::lingering && !c.input_closed)
          c.in.append(read_buffer_.data(), static_cast<std::size_t>(n));
        if (static_cast<std::size_t>(n) < read_buffer_.size())
          return;
      } else if (n == 0) {
        // The peer's FIN: a client gone mid-exchange is a cancelled exchange.
        drop(c);
        return;
      } else if (errno == EINTR) {
        continue;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return;
      } else {
        drop(c);
        return;
      }
    }
  }

  /// Parses buffered input while no exchange is in progress.
  void advance(connection& c) {
    while (c.ph == phase::reading && !c.input_closed && c.unparsed() > 0) {
      if (c.reading_body) {
        if (!read_chunked_body(c))
          break;
        continue;
      }
      std::size_t n =
          http_parser_execute(&c.parser, &settings_, c.in.data() + c.in_off, c.unparsed());
      c.in_off += n;
      if (std::exchange(c.expect_continue, false))
        append_out(c, "HTTP/1.1 100 Continue\r\n\r\n");
      auto err = HTTP_PARSER_ERRNO(&c.parser);
      if (err == HPE_PAUSED) {
        // An Upgrade (or CONNECT) request is served as a plain request (Upgrade is
        // hop-by-hop and not forwarded); what follows it is parsed as HTTP/1.1 again.
        c.parser.upgrade = 0;
        http_parser_pause(&c.parser, 0);
        if (c.chunked)
          c.reading_body = true; // dispatched once the decoder has the whole body
        else
          dispatch(c);
      } else if (err != HPE_OK) {
        int status = c.reject != 0 ? c.reject : err == HPE_HEADER_OVERFLOW ? 431 : 400;
        std::string why = !c.reject_why.empty() ? c.reject_why
                          : status == 431
                              ? "request head too large"
                              : std::string{"malformed request: "} + http_errno_description(err);
        reject(c, status, std::move(why));
      }
    }
    if (c.in_off == c.in.size()) {
      c.in.clear();
      c.in_off = 0;
    } else if (c.in_off >= read_chunk) {
      c.in.erase(0, c.in_off);
      c.in_off = 0;
    }
  }

  /// Feeds buffered input to the chunked decoder; false when it needs more input.
  bool read_chunked_body(connection& c) {
    std::size_t used = 0;
    auto st = c.chunked->feed({c.in.data() + c.in_off, c.unparsed()}, c.current.body, used);
    c.in_off += used;
    switch (st) {
    case net::chunked_decoder::status::more:
      return false;
    case net::chunked_decoder::status::done:
      c.reading_body = false;
      c.chunked.reset();
      dispatch(c);
      return true;
    case net::chunked_decoder::status::too_large:
      reject(c, 413, c.chunked->why());
      return true;
    case net::chunked_decoder::status::bad:
      reject(c, 400, "malformed chunked body: " + c.chunked->why());
      return true;
    }
    return false;
  }

  void begin_exchange(connection& c) {
    c.exchange = next_exchange_++;
    exchanges_.emplace(c.exchange, c.id);
    c.exchange_start = c.queued_total;
    c.frame = framing::none;
    c.remaining = 0;
    c.cut = false;
    c.ph = phase::handling;
  }

  void dispatch(connection& c) {
    begin_exchange(c);
    ++c.requests;
    http_request req = std::move(c.current);
    c.current = http_request{};
    c.message_begun = false;
    c.http10 = req.http10;
    req.exchange = c.exchange;
    req.peer = c.peer;
    if (stopping_)
      c.close_after = true;
    handler_.on_request(std::move(req));
  }

  void reject(connection& c, int status, std::string why) {
    c.input_closed = true;
    c.reading_body = false;
    c.chunked.reset();
    c.close_after = true;
    c.in.clear();
    c.in_off = 0;
    begin_exchange(c);
    http_request req = std::move(c.current);
    c.current = http_request{};
    c.message_begun = false;
    c.http10 = req.http10;
    c.head_request = false;
    req.exchange = c.exchange;
    req.peer = c.peer;
    handler_.on_bad_request(std::move(req), status, std::move(why));
  }

  // http-parser callbacks; `parser->data` is the connection.

  static connection& conn(http_parser* p) { return *static_cast<connection*>(p->data); }

  static bool count_head(connection& c, std::size_t n) {
    c.head_bytes += n;
    if (c.head_bytes <= c.max_head)
      return true;
    c.reject = 431;
    c.reject_why = "request head over " + std::to_string(c.max_head) + " bytes";
    return false;
  }

  static int on_message_begin(http_parser* p) {
    connection& c = conn(p);
    c.current = http_request{};
    c.in_header_value = false;
    c.chunked.reset();
    c.reading_body = false;
    c.head_bytes = 0;
    c.reject = 0;
    c.reject_why.clear();
    c.message_begun = true;
    c.head_done = false;
    c.request_started = steady::now();
    return 0;
  }

  static int on_url(http_parser* p, const char* at, std::size_t n) {
    connection& c = conn(p);
    c.current.target.append(at, n);
    return count_head(c, n) ? 0 : 1;
  }

  static int on_header_field(http_parser* p, const char* at, std::size_t n) {
    connection& c = conn(p);
    if (c.in_header_value || c.current.headers.empty())
      c.current.headers.emplace_back();
    c.in_header_value = false;
    c.current.headers.back().first.append(at, n);
    return count_head(c, n) ? 0 : 1;
  }

  static int on_header_value(http_parser* p, const char* at, std::size_t n) {
    connection& c = conn(p);
    c.in_header_value = true;
    c.current.headers.back().second.append(at, n);
    return count_head(c, n) ? 0 : 1;
  }

  static int on_headers_complete(http_parser* p) {
    connection& c = conn(p);
    c.head_done = true;
    http_request& r = c.current;
    r.method = http_method_str(static_cast<http_method>(p->method));
    r.http10 = p->http_major == 0 || (p->http_major == 1 && p->http_minor == 0);
    for (auto& header : r.headers) {
      // RFC 9112 5.1: no whitespace between a field name and its colon. http-parser takes
      // "Transfer-Encoding : chunked" as framing; we refuse it (400, then close).
      if (header.first.find_first_of(" \t") != std::string::npos) {
        c.reject = 400;
        c.reject_why = "whitespace between a header field name and its colon";
        return -1;
      }
      auto& value = header.second;
      auto last = value.find_last_not_of(" \t");
      value.erase(last == std::string::npos ? 0 : last + 1);
    }
    // RFC 9112 3.2: an HTTP/1.1 request carries exactly one Host field.
    auto hosts = std::count_if(r.headers.begin(), r.headers.end(),
                               [](const auto& h) { return iequals(h.first, "Host"); });
    if (hosts > 1 || (hosts == 0 && !r.http10)) {
      c.reject = 400;
      c.reject_why = hosts > 1 ? "more than one Host header" : "an HTTP/1.1 request without Host";
      return -1;
    }
    bool chunked = (p->flags & F_CHUNKED) != 0;
    bool has_length = p->content_length != ULLONG_MAX;
    if (!chunked && has_length && p->content_length > c.max_body) {
      c.reject = 413;
      c.reject_why = "request body over " + std::to_string(c.max_body) + " bytes";
      return -1; // 1 and 2 mean "skip body" and "upgrade"; anything else is an error
    }
    const std::string* expect = r.header("Expect");
    c.expect_continue = expect != nullptr && iequals(*expect, "100-continue") && !r.http10 &&
                        (chunked || (has_length && p->content_length > 0));
    if (!chunked)
      return 0;
    c.chunked.emplace(c.max_body, c.max_head);
    return 1; // "no body" to http-parser: the message completes here, `chunked` reads on
  }

  static int on_body(http_parser* p, const char* at, std::size_t n) {
    connection& c = conn(p);
    if (c.current.body.size() + n > c.max_body) {
      c.reject = 413;
      c.reject_why = "request body over " + std::to_string(c.max_body) + " bytes";
      return 1;
    }
    c.current.body.append(at, n);
    return 0;
  }

  static int on_message_complete(http_parser* p) {
    connection& c = conn(p);
    c.keep_alive = http_should_keep_alive(p) != 0;
    c.head_request = c.current.method == "HEAD";
    if (!c.chunked)
      c.expect_continue = false; // the body is here already
    http_parser_pause(p, 1);     // one exchange at a time: resume once it is over
    return 0;
  }

  static constexpr http_parser_settings settings_ = {on_message_begin, on_url,
                                                     nullptr,          on_header_field,
                                                     on_header_value,  on_headers_complete,
                                                     on_body,          on_message_complete,
                                                     nullptr,          nullptr};

  // -- writing ------------------------------------------------------------------------------

  void append_out(connection& c, std::string_view data) {
    if (c.unsent() == 0)
      c.last_write_progress = steady::now();
    c.out.append(data);
    c.queued_total += data.size();
  }

  void write_head(connection& c, const response_head& head) {
    if (head.close || !c.keep_alive || stopping_)
      c.close_after = true;
    std::string h = "HTTP/1.1 ";
    append_number(h, static_cast<std::uint64_t>(head.status));
    h += ' ';
    h += head.reason.empty() ? reason_phrase(head.status) : head.reason;
    h += "\r\n";
    for (auto& [name, value] : head.headers) {
      h += name;
      h += ": ";
      h += value;
      h += "\r\n";
    }
    bool bodyless = head.no_body || c.head_request || head.status == 204 || head.status == 304 ||
                    head.status / 100 == 1;
    if (head.content_length && head.status != 204 && head.status / 100 != 1) {
      h += "Content-Length: ";
      append_number(h, *head.content_length);
      h += "\r\n";
    }
    if (bodyless) {
      c.frame = framing::none;
    } else if (head.content_length) {
      c.frame = framing::length;
      c.remaining = *head.content_length;
    } else if (!c.http10) {
      c.frame = framing::chunked;
      h += "Transfer-Encoding: chunked\r\n";
    } else {
      c.frame = framing::close;
      c.close_after = true;
    }
    if (c.close_after)
      h += "Connection: close\r\n";
    else if (c.http10)
      h += "Connection: keep-alive\r\n";
    h += "\r\n";
    append_out(c, h);
  }

  /// Writes what the socket takes, reports sent body bytes, ends a flushed exchange.
  void pump(connection& c) {
    while (c.unsent() > 0) {
      ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_off, c.unsent(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
          break;
        drop(c);
        return;
      }
      c.out_off += static_cast<std::size_t>(n);
      c.sent_total += static_cast<std::uint64_t>(n);
      owner_.bytes_out_.fetch_add(static_cast<std::uint64_t>(n));
      c.last_write_progress = steady::now();
    }
    if (c.out_off == c.out.size()) {
      c.out.clear();
      c.out_off = 0;
    } else if (c.out_off >= read_chunk) {
      c.out.erase(0, c.out_off);
      c.out_off = 0;
    }
    std::size_t acked = 0;
    while (!c.acks.empty() && c.acks.front().first <= c.sent_total) {
      acked += c.acks.front().second;
      c.acks.pop_front();
    }
    if (acked > 0 && c.exchange != 0)
      handler_.on_body_sent(c.exchange, acked);
    if (c.ph == phase::flushing && c.unsent() == 0)
      end_exchange(c);
  }

  void end_exchange(connection& c) {
    auto ex = std::exchange(c.exchange, 0);
    exchanges_.erase(ex);
    c.acks.clear();
    bool complete = !c.cut;
    handler_.on_done(ex, complete, c.sent_total - c.exchange_start);
    if (c.close_after || c.cut || stopping_) {
      begin_linger(c);
    } else {
      c.ph = phase::reading;
      c.last_input = steady::now();
    }
  }

  /// Sends our FIN and discards input until the peer's FIN (or the linger timeout), so
  /// unread input does not turn into a reset that destroys the response in flight.
  void begin_linger(connection& c) {
    ::shutdown(c.fd.get(), SHUT_WR);
    c.ph = phase::lingering;
    c.input_closed = true;
    c.in.clear();
    c.in_off = 0;
    c.linger_deadline = steady::now() + linger_timeout;
  }

  void update_interest(connection& c) {
    std::uint32_t want = EPOLLRDHUP;
    if (wants_input(c))
      want |= EPOLLIN;
    if (c.unsent() > 0 && c.ph != phase::lingering)
      want |= EPOLLOUT;
    if (want != c.events) {
      c.events = want;
      if (!watch(c.fd.get(), EPOLL_CTL_MOD, want, c.id))
        drop(c);
    }
  }

  /// Whether the client has the whole response although its exchange did not end yet: all
  /// of it was sent and either it was finished (the end is only waiting for the next
  /// service pass) or its framing is complete (no body, or all of a Content-Length body;
  /// `finish` has not come yet). A client that read it all and closed is not a client that
  /// left early. (The exchange itself ends only after `finish`, so that the next request
  /// on the connection starts once the upstream's end, and its lease, came back.)
  static bool delivered(const connection& c) {
    if (c.cut || c.unsent() != 0)
      return false;
    if (c.ph == phase::flushing)
      return true;
    return c.ph == phase::streaming &&
           (c.frame == framing::none || (c.frame == framing::length && c.remaining == 0));
  }

  /// Closes at once; an exchange in progress ends incomplete unless `delivered`.
  void drop(connection& c) {
    if (!c.fd)
      return;
    if (c.exchange != 0) {
      auto ex = std::exchange(c.exchange, 0);
      exchanges_.erase(ex);
      handler_.on_done(ex, delivered(c), c.sent_total - c.exchange_start);
    }
    watch(c.fd.get(), EPOLL_CTL_DEL, 0, c.id);
    c.fd.reset();
    owner_.open_.fetch_sub(1);
    if (auto source = per_source_.find(c.source);
        source != per_source_.end() && --source->second == 0)
      per_source_.erase(source);
    auto it = connections_.find(c.id);
    closed_.push_back(std::move(it->second)); // destroyed after the current event
    connections_.erase(it);
    if (!accepting_ && listen_ && !stopping_)
      accepting_ = watch(listen_.get(), EPOLL_CTL_ADD, EPOLLIN, listen_key);
  }

  // -- marking and timeouts -----------------------------------------------------------------

  void mark(connection& c) { marked_.push_back(c.id); }

  connection* find_exchange(std::uint64_t exchange) {
    auto it = exchanges_.find(exchange);
    if (it == exchanges_.end())
      return nullptr;
    auto c = connections_.find(it->second);
    return c == connections_.end() ? nullptr : c->second.get();
  }

  /// Writes, parses and re-polls every marked connection (until none is marked: handler
  /// answers made meanwhile mark connections again).
  void service_marked() {
    while (!marked_.empty()) {
      std::vector<std::uint64_t> batch;
      batch.swap(marked_);
      std::sort(batch.begin(), batch.end());
      batch.erase(std::unique(batch.begin(), batch.end()), batch.end());
      for (auto id : batch) {
        auto it = connections_.find(id);
        if (it == connections_.end())
          continue;
        connection& c = *it->second;
        if (c.overflow) {
          log_event(spdlog::level::warn, "client_output_overflow",
                    {field("peer", c.peer), field("unsent_bytes", std::uint64_t{c.unsent()})});
          drop(c);
          continue;
        }
        pump(c);
        if (!c.fd)
          continue;
        if (c.ph == phase::reading)
          advance(c);
        if (c.ph == phase::lingering && c.unparsed() > 0) {
          c.in.clear();
          c.in_off = 0;
        }
        if (c.fd)
          update_interest(c);
      }
    }
  }

  void sweep(steady::time_point now) {
    std::vector<connection*> expired;
    std::vector<connection*> slow;
    std::vector<connection*> late_heads;
    for (auto& [id, c] : connections_) {
      if (c->ph == phase::lingering) {
        if (now >= c->linger_deadline)
          expired.push_back(c.get());
      } else if (c->unsent() > 0) {
        if (now - c->last_write_progress > opts_.client_timeout)
          expired.push_back(c.get());
      } else if (c->ph == phase::reading) {
        // A head is due: the first request's from the accept on, a later one's from its
        // first byte on.
        bool head_due = c->message_begun ? !c->head_done : c->requests == 0;
        auto head_since = c->message_begun ? c->request_started : c->accepted;
        if (head_due && now - head_since > opts_.header_timeout) {
          owner_.header_timeouts_.fetch_add(1);
          (c->message_begun ? late_heads : expired).push_back(c.get());
        } else if (c->message_begun && now - c->request_started > opts_.client_timeout) {
          slow.push_back(c.get());
        } else if (!c->message_begun && now - c->last_input > opts_.client_timeout) {
          expired.push_back(c.get());
        }
      }
    }
    for (auto* c : expired)
      drop(*c);
    for (auto* c : late_heads) {
      reject(*c, 408,
             "request head not received within " + std::to_string(opts_.header_timeout.count()) +
                 " ms");
      mark(*c);
    }
    warn_about_admission(now);
    // Out of descriptors with no client connection to close (the SSH sockets took them):
    // try again every sweep rather than waiting for a drop that may never come.
    if (!accepting_ && listen_ && !stopping_ && connections_.size() < opts_.max_clients)
      accepting_ = watch(listen_.get(), EPOLL_CTL_ADD, EPOLLIN, listen_key);
    for (auto* c : slow) {
      reject(*c, 408,
             "request not received within " + std::to_string(opts_.client_timeout.count()) + " ms");
      mark(*c);
    }
  }

  /// At most one warning per period while clients are shed, refused or too slow with
  /// their heads (each one is logged at debug level; the counters are metrics).
  void warn_about_admission(steady::time_point now) {
    if (now < next_admission_warn_)
      return;
    std::array<std::uint64_t, 3> counts{owner_.shed_.load(), owner_.refused_.load(),
                                        owner_.header_timeouts_.load()};
    if (counts == warned_counts_)
      return;
    log_event(spdlog::level::warn, "client_slots_contended",
              {field("shed", counts[0] - warned_counts_[0]),
               field("refused_503", counts[1] - warned_counts_[1]),
               field("header_timeouts", counts[2] - warned_counts_[2]),
               field("open", std::uint64_t{connections_.size()}),
               field("max_clients", std::uint64_t{opts_.max_clients})});
    warned_counts_ = counts;
    next_admission_warn_ = now + admission_warn_period;
  }

  http_server& owner_;
  const options opts_;
  http_handler& handler_;
  unique_fd listen_;
  unique_fd epoll_;
  unique_fd wake_;
  std::unordered_map<std::uint64_t, std::unique_ptr<connection>> connections_;
  std::unordered_map<std::uint64_t, std::uint64_t> exchanges_;
  /// Open connections per source address.
  std::unordered_map<std::string, std::size_t> per_source_;
  std::array<std::uint64_t, 3> warned_counts_{};
  steady::time_point next_admission_warn_;
  std::vector<std::unique_ptr<connection>> closed_;
  std::vector<std::uint64_t> marked_;
  std::uint64_t next_id_ = wake_key + 1;
  std::uint64_t next_exchange_ = 1;
  bool accepting_ = true;
  bool stopping_ = false;
  /// `shutdown` ran: the loop never starts again.
  bool stopped_ = false;
  steady::time_point stop_deadline_ = steady::time_point::max();
  std::vector<char> read_buffer_;
  std::thread thread_; // last: `start` runs it once everything above exists
};

http_server::http_server(options opts, http_handler& handler)
    : queue_(std::make_shared<loop_queue>()) {
  loop_ = std::make_unique<loop>(*this, std::move(opts), handler);
}

http_server::~http_server() {
  loop_.reset();
}

void http_server::start() {
  loop_->start();
}

void http_server::shutdown(std::chrono::milliseconds grace) {
  loop_->shutdown(grace);
}

void http_server::respond(std::uint64_t exchange, response_head head, std::string body) {
  loop_->respond(exchange, std::move(head), std::move(body));
}

void http_server::send_head(std::uint64_t exchange, response_head head) {
  loop_->send_head(exchange, std::move(head));
}

void http_server::send_body(std::uint64_t exchange, std::string data) {
  loop_->send_body(exchange, std::move(data));
}

void http_server::finish(std::uint64_t exchange, bool complete) {
  loop_->finish(exchange, complete);
}

} // namespace sshpool::gateway
