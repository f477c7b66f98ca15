// The demo/test HTTP/1.1 backend: one thread, one epoll loop, non-blocking sockets.
//
// Why it is built this way: the integration tests and benchmarks need a peer that behaves
// like a real HTTP service (keep-alive, pipelining, every body framing, slow and streaming
// answers, huge bodies) while staying cheap enough to never be the bottleneck of a
// benchmark. So there is no thread per client: every connection is a small state machine
// driven by epoll readiness, and delayed answers (/slow, the /api/chat token stream, the
// lingering close) are entries in a timer heap whose head bounds the epoll timeout.
//
// Per connection, requests are parsed as they arrive (http-parser 2.9) and queued; the
// responses are produced strictly in request order, one "job" at a time. A job is either
// complete at once (appended to the output buffer), streamed lazily as the socket drains
// (/bytes, /chunked, /close), waiting for a timer (/slow, /api/chat) or never finishing
// (/hang). Output is written with non-blocking sends; what the socket does not take stays
// buffered and is resumed on EPOLLOUT.
//
// Thread-safety: all connection, timer and socket state is touched by the loop thread only;
// the observers read atomic counters and a mutex-protected record of the requests.
#include "backend/http_backend.hpp"

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
#include <atomic>
#include <cerrno>
#include <charconv>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <functional>
#include <mutex>
#include <queue>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

#include "net/net.hpp"

namespace sshpool::demo {

namespace {

using net::append_number;
using net::iequals;
using net::throw_errno;
using net::unique_fd;
using steady = std::chrono::steady_clock;

/// Limit on the request line plus header names and values, answered with 431.
constexpr std::size_t max_head_bytes = std::size_t{64} << 10;
/// Limit on a request body, answered with 413.
constexpr std::uint64_t max_body_bytes = std::uint64_t{64} << 20;
/// How many requests `received()` keeps.
constexpr std::size_t max_recorded = 1000;
/// How much of each body `received()` keeps.
constexpr std::size_t recorded_body_bytes = std::size_t{64} << 10;
/// Size of one recv.
constexpr std::size_t read_chunk = std::size_t{64} << 10;
/// Reads per readiness event, so one busy client cannot starve the others.
constexpr int read_budget = 8;
/// Streamed bodies are generated until this much output is waiting to be sent.
constexpr std::size_t out_high_water = std::size_t{256} << 10;
/// Reading stops while this many requests wait for their turn...
constexpr std::size_t max_queued_requests = 32;
/// ...or while this much output is unsent (e.g. a large echo).
constexpr std::size_t max_unsent_for_reading = std::size_t{1} << 20;
/// Connections accepted per readiness event of the listening socket.
constexpr int accept_budget = 64;
/// After our FIN, how long we keep reading (and discarding) before closing anyway.
constexpr std::chrono::seconds linger_timeout{2};
/// Longest accepted /slow delay.
constexpr std::uint64_t max_slow_ms = 24ULL * 3600 * 1000;
/// Epoll keys of the two non-connection descriptors; connection ids start after them.
constexpr std::uint64_t listen_key = 0;
constexpr std::uint64_t wake_key = 1;

/// Words of the /api/chat answer, cycled.
constexpr std::array<std::string_view, 16> chat_words = {
    "Hello", "from",    "the",   "demo",  "model",   "running", "behind", "an",
    "SSH",   "tunnel.", "Every", "token", "arrives", "on",      "its",    "own."};

/// Parses a whole decimal string into `out`; false if empty, not a number or too large.
bool parse_u64(std::string_view s, std::uint64_t& out) {
  if (s.empty())
    return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

/// The body pattern: byte i is 'a' + i % 26; this string holds it from i = 0 with 26
/// bytes of slack so any 64 KiB window can be copied from offset i % 26.
const std::string& pattern_block() {
  static const std::string block = [] {
    std::string s((std::size_t{64} << 10) + 26, '\0');
    for (std::size_t i = 0; i < s.size(); ++i)
      s[i] = static_cast<char>('a' + i % 26);
    return s;
  }();
  return block;
}

/// Appends pattern bytes [offset, offset + n) to `out`.
void append_pattern(std::string& out, std::uint64_t offset, std::size_t n) {
  const std::string& block = pattern_block();
  while (n > 0) {
    auto start = static_cast<std::size_t>(offset % 26);
    std::size_t take = std::min(n, block.size() - start);
    out.append(block, start, take);
    n -= take;
    offset += take;
  }
}

/// Appends `s` as a JSON string literal (quotes included).
void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    default:
      if (c < 0x20 || c == 0x7f) {
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 0xf];
      } else {
        out += ch;
      }
    }
  }
  out += '"';
}

/// Appends `data` as one chunk, or verbatim when the body is not chunked.
void append_chunk(std::string& out, std::string_view data, bool chunked) {
  if (!chunked) {
    out += data;
    return;
  }
  append_number(out, data.size(), 16);
  out += "\r\n";
  out += data;
  out += "\r\n";
}

/// The current UTC time as Ollama prints it, e.g. 2024-05-01T12:00:00.123456Z.
std::string utc_timestamp() {
  auto now = std::chrono::system_clock::now();
  auto t = std::chrono::system_clock::to_time_t(now);
  auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
      1000000;
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[40];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%06lldZ", static_cast<long long>(micros));
  return buf;
}

const char* reason_phrase(int status) {
  const char* s = http_status_str(static_cast<http_status>(status));
  return s[0] == '<' ? "Unknown" : s;
}

/// The path part of a request target (origin form, absolute form or anything else).
std::string_view path_of(std::string_view target) {
  if (!target.empty() && target.front() == '/')
    return target.substr(0, target.find_first_of("?#"));
  http_parser_url url;
  http_parser_url_init(&url);
  if (http_parser_parse_url(target.data(), target.size(), 0, &url) == 0 &&
      (url.field_set & (1 << UF_PATH)) != 0)
    return target.substr(url.field_data[UF_PATH].off, url.field_data[UF_PATH].len);
  return target;
}

/// Whether a chat request body asks for a single answer (`"stream": false`).
bool stream_disabled(std::string_view body) {
  auto skip_space = [&](std::size_t i) {
    while (i < body.size() &&
           (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
      ++i;
    return i;
  };
  for (auto pos = body.find("\"stream\""); pos != std::string_view::npos;
       pos = body.find("\"stream\"", pos + 1)) {
    std::size_t i = skip_space(pos + 8);
    if (i < body.size() && body[i] == ':') {
      i = skip_space(i + 1);
      if (body.compare(i, 5, "false") == 0)
        return true;
    }
  }
  return false;
}

/// A parsed request waiting for (or being given) its response.
struct request {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  /// HTTP/1.0 (no chunked responses; keep-alive only on request).
  bool http10 = false;
  /// The connection may carry further requests after this one.
  bool keep_alive = true;
  /// Nonzero: the request was rejected while parsing; answer with this status and close.
  int reject = 0;

  /// The value of the first header named `name` (case-insensitive), or nullptr.
  const std::string* header(std::string_view name) const {
    for (const auto& [key, value] : headers)
      if (iequals(key, name))
        return &value;
    return nullptr;
  }
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
  unique_fd fd;
  http_parser parser{};
  /// The request being parsed and the parser's bookkeeping for it.
  request current;
  bool in_header_value = false;
  std::size_t head_bytes = 0;
  int reject = 0;
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
  explicit server(http_backend::options opts) : opts_(std::move(opts)) {
    listen_ = net::open_listener(opts_.bind, opts_.port, "http_backend");
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw_errno(errno, "http_backend: getsockname");
    port_ = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    epoll_ = unique_fd(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_)
      throw_errno(errno, "http_backend: epoll_create1");
    wake_ = unique_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_)
      throw_errno(errno, "http_backend: eventfd");
    if (!watch(listen_.get(), EPOLL_CTL_ADD, EPOLLIN, listen_key) ||
        !watch(wake_.get(), EPOLL_CTL_ADD, EPOLLIN, wake_key))
      throw_errno(errno, "http_backend: epoll_ctl");
    thread_ = std::thread([this] { run(); });
  }

  ~server() {
    std::uint64_t one = 1;
    ssize_t written = ::write(wake_.get(), &one, sizeof one);
    static_cast<void>(written); // an eventfd write of 1 cannot fail short of overflow
    thread_.join();
  }

  server(const server&) = delete;
  server& operator=(const server&) = delete;

  std::uint16_t port() const { return port_; }
  std::uint64_t requests_received() const { return requests_.load(); }
  std::uint64_t connections_accepted() const { return accepted_.load(); }
  std::size_t open_connections() const { return open_.load(); }

  std::vector<recorded_request> received() const {
    std::lock_guard<std::mutex> lock(record_mutex_);
    return {records_.begin(), records_.end()};
  }

  bool wait_for_requests(std::uint64_t n, std::chrono::milliseconds timeout) const {
    std::unique_lock<std::mutex> lock(record_mutex_);
    return record_cv_.wait_for(lock, timeout, [&] { return requests_.load() >= n; });
  }

private:
  // -- setup ------------------------------------------------------------------------------

  /// epoll_ctl; false (with errno set) on failure.
  bool watch(int fd, int op, std::uint32_t events, std::uint64_t key) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = key;
    return ::epoll_ctl(epoll_.get(), op, fd, &ev) == 0;
  }

  // -- the loop ---------------------------------------------------------------------------

  void run() {
    std::array<epoll_event, 256> events;
    read_buffer_.resize(read_chunk);
    for (bool stopping = false; !stopping;) {
      int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()),
                           next_timeout_ms());
      if (n < 0 && errno != EINTR)
        break;
      for (int i = 0; i < n; ++i) {
        std::uint64_t key = events[i].data.u64;
        if (key == wake_key)
          stopping = true;
        else if (key == listen_key)
          accept_all();
        else if (auto it = connections_.find(key); it != connections_.end())
          on_event(*it->second, events[i].events);
      }
      run_timers();
      closed_.clear();
    }
    open_.store(0);
    connections_.clear();
    closed_.clear();
  }

  int next_timeout_ms() const {
    if (timers_.empty())
      return -1;
    auto wait = timers_.top().when - steady::now();
    if (wait <= steady::duration::zero())
      return 0;
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
    return static_cast<int>(std::min<decltype(ms)>(ms, INT_MAX));
  }

  void accept_all() {
    for (int i = 0; i < accept_budget; ++i) {
      unique_fd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd) {
        if (errno == EINTR || errno == ECONNABORTED)
          continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors: stop polling the listener (it would stay readable and spin)
          // until a connection closes.
          watch(listen_.get(), EPOLL_CTL_DEL, 0, listen_key);
          accepting_ = false;
        }
        return;
      }
      int on = 1;
      ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
      auto c = std::make_unique<connection>();
      c->id = next_id_++;
      c->fd = std::move(fd);
      http_parser_init(&c->parser, HTTP_REQUEST);
      c->parser.data = c.get();
      c->events = EPOLLIN;
      if (!watch(c->fd.get(), EPOLL_CTL_ADD, c->events, c->id))
        continue; // cannot be polled: dropped
      accepted_.fetch_add(1);
      open_.fetch_add(1);
      connections_.emplace(c->id, std::move(c));
    }
  }

  void on_event(connection& c, std::uint32_t events) {
    if ((events & (EPOLLERR | EPOLLHUP)) != 0) {
      close_now(c);
      return;
    }
    if ((events & EPOLLOUT) != 0) {
      pump(c);
      if (!c.fd)
        return;
    }
    if ((events & EPOLLIN) != 0) {
      on_readable(c);
    } else if ((events & EPOLLRDHUP) != 0) {
      // Only polled while not reading: the peer is gone for a /hang; otherwise its EOF is
      // noticed once reading resumes.
      if (c.active.kind == job_kind::hang) {
        close_now(c);
      } else {
        c.rdhup_seen = true;
        update_interest(c);
      }
    }
  }

  // -- reading ----------------------------------------------------------------------------

  bool wants_input(const connection& c) const {
    return c.lingering || (!c.input_done && c.queued.size() < max_queued_requests &&
                           c.unsent() < max_unsent_for_reading);
  }

  void on_readable(connection& c) {
    for (int i = 0; i < read_budget && wants_input(c); ++i) {
      ssize_t n = ::recv(c.fd.get(), read_buffer_.data(), read_buffer_.size(), 0);
      if (n > 0) {
        if (!c.lingering)
          parse(c, read_buffer_.data(), static_cast<std::size_t>(n));
        if (static_cast<std::size_t>(n) < read_buffer_.size())
          break;
      } else if (n == 0) {
        on_peer_eof(c);
        if (!c.fd)
          return;
        break;
      } else if (errno == EINTR) {
        continue;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      } else {
        close_now(c);
        return;
      }
    }
    pump(c);
  }

  void on_peer_eof(connection& c) {
    c.peer_eof = true;
    c.input_done = true;
    bool busy = c.active.kind != job_kind::idle || !c.queued.empty() || c.unsent() > 0;
    if (c.lingering || c.active.kind == job_kind::hang || !busy)
      close_now(c);
  }

  void parse(connection& c, const char* data, std::size_t size) {
    std::size_t before = c.queued.size();
    http_parser_execute(&c.parser, &settings_, data, size);
    for (std::size_t i = before; i < c.queued.size(); ++i)
      record(c.queued[i]);
    auto err = HTTP_PARSER_ERRNO(&c.parser);
    if (err == HPE_PAUSED || c.parser.upgrade != 0) {
      c.input_done = true;
    } else if (err != HPE_OK) {
      request bad;
      bad.reject = c.reject != 0 ? c.reject : 400;
      bad.keep_alive = false;
      c.queued.push_back(std::move(bad));
      c.input_done = true;
    }
  }

  void record(const request& r) {
    recorded_request rec;
    rec.method = r.method;
    rec.path = r.target;
    rec.headers = r.headers;
    rec.body = r.body.substr(0, recorded_body_bytes);
    rec.body_size = r.body.size();
    {
      std::lock_guard<std::mutex> lock(record_mutex_);
      if (records_.size() == max_recorded)
        records_.pop_front();
      records_.push_back(std::move(rec));
      requests_.fetch_add(1);
    }
    record_cv_.notify_all();
  }

  // http-parser callbacks; `parser->data` is the connection.

  static connection& conn(http_parser* p) { return *static_cast<connection*>(p->data); }

  /// Counts head bytes; false (after noting a 431) when over the limit.
  static bool count_head(connection& c, std::size_t n) {
    c.head_bytes += n;
    if (c.head_bytes <= max_head_bytes)
      return true;
    c.reject = 431;
    return false;
  }

  static int on_message_begin(http_parser* p) {
    connection& c = conn(p);
    c.current = request{};
    c.in_header_value = false;
    c.head_bytes = 0;
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
    request& r = c.current;
    r.method = http_method_str(static_cast<http_method>(p->method));
    r.http10 = p->http_major == 0 || (p->http_major == 1 && p->http_minor == 0);
    bool chunked = (p->flags & F_CHUNKED) != 0;
    bool has_length = p->content_length != ULLONG_MAX;
    if (!chunked && has_length && p->content_length > max_body_bytes) {
      c.reject = 413;
      return -1; // 1 and 2 mean "skip body" and "upgrade"; anything else is an error
    }
    const std::string* expect = r.header("Expect");
    if (expect != nullptr && iequals(*expect, "100-continue") && !r.http10 &&
        (chunked || (has_length && p->content_length > 0)) && c.active.kind == job_kind::idle &&
        c.queued.empty() && !c.close_after)
      c.out += "HTTP/1.1 100 Continue\r\n\r\n";
    return 0;
  }

  static int on_body(http_parser* p, const char* at, std::size_t n) {
    connection& c = conn(p);
    if (c.current.body.size() + n > max_body_bytes) {
      c.reject = 413;
      return 1;
    }
    c.current.body.append(at, n);
    return 0;
  }

  static int on_message_complete(http_parser* p) {
    connection& c = conn(p);
    c.current.keep_alive = http_should_keep_alive(p) != 0 && p->upgrade == 0;
    bool last = !c.current.keep_alive;
    c.queued.push_back(std::move(c.current));
    c.current = request{};
    if (last)
      http_parser_pause(p, 1); // further bytes are not requests of ours
    return 0;
  }

  static constexpr http_parser_settings settings_ = {on_message_begin, on_url,
                                                     nullptr,          on_header_field,
                                                     on_header_value,  on_headers_complete,
                                                     on_body,          on_message_complete,
                                                     nullptr,          nullptr};

  // -- writing ----------------------------------------------------------------------------

  /// Produces output and sends it until the socket is full, the response in progress waits
  /// or there is nothing left; then closes or updates the epoll interest.
  void pump(connection& c) {
    if (c.lingering)
      return;
    for (;;) {
      fill(c);
      if (c.unsent() == 0)
        break;
      ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_off, c.unsent(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
          break;
        close_now(c);
        return;
      }
      c.out_off += static_cast<std::size_t>(n);
      if (c.out_off == c.out.size()) {
        c.out.clear();
        c.out_off = 0;
      } else {
        break; // the socket took only part of it: wait for EPOLLOUT
      }
    }
    bool done = c.unsent() == 0 && c.active.kind == job_kind::idle &&
                (c.close_after || (c.peer_eof && c.queued.empty()));
    if (done)
      begin_close(c);
    else
      update_interest(c);
  }

  /// Appends output until `out_high_water` is reached or the response in progress waits.
  void fill(connection& c) {
    if (c.out_off > 0 && c.unsent() < out_high_water) {
      c.out.erase(0, c.out_off);
      c.out_off = 0;
    }
    while (c.unsent() < out_high_water) {
      switch (c.active.kind) {
      case job_kind::pattern:
        produce_pattern(c);
        continue;
      case job_kind::chunks:
        produce_chunks(c);
        continue;
      case job_kind::delayed:
      case job_kind::chat:
      case job_kind::hang:
        return;
      case job_kind::idle:
        break;
      }
      if (c.close_after || c.queued.empty())
        return;
      request r = std::move(c.queued.front());
      c.queued.pop_front();
      start(c, r);
    }
  }

  void produce_pattern(connection& c) {
    job& j = c.active;
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(j.left, out_high_water));
    append_pattern(c.out, j.offset, n);
    j.offset += n;
    j.left -= n;
    if (j.left == 0)
      j = job{};
  }

  void produce_chunks(connection& c) {
    job& j = c.active;
    if (j.left == 0) {
      if (j.chunks_left == 0) {
        if (j.chunked)
          c.out += "0\r\n\r\n";
        j = job{};
        return;
      }
      if (j.chunked) {
        append_number(c.out, j.chunk_size, 16);
        c.out += "\r\n";
      }
      j.left = j.chunk_size;
    }
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(j.left, out_high_water));
    append_pattern(c.out, j.offset, n);
    j.offset += n;
    j.left -= n;
    if (j.left == 0) {
      if (j.chunked)
        c.out += "\r\n";
      --j.chunks_left;
    }
  }

  void update_interest(connection& c) {
    std::uint32_t want = 0;
    if (wants_input(c))
      want |= EPOLLIN;
    else if (!c.peer_eof && !c.rdhup_seen)
      want |= EPOLLRDHUP;
    if (c.unsent() > 0 && !c.lingering)
      want |= EPOLLOUT;
    if (want != c.events) {
      c.events = want;
      if (!watch(c.fd.get(), EPOLL_CTL_MOD, want, c.id))
        close_now(c);
    }
  }

  /// Graceful close: send our FIN, then wait (bounded) for the peer's so that unread input
  /// does not turn into a reset that could destroy the response in flight.
  void begin_close(connection& c) {
    if (c.peer_eof) {
      close_now(c);
      return;
    }
    ::shutdown(c.fd.get(), SHUT_WR);
    c.lingering = true;
    arm_timer(c, steady::now() + linger_timeout);
    update_interest(c);
  }

  void close_now(connection& c) {
    c.fd.reset();
    open_.fetch_sub(1);
    auto it = connections_.find(c.id);
    closed_.push_back(std::move(it->second)); // destroyed after the current event
    connections_.erase(it);
    if (!accepting_)
      accepting_ = watch(listen_.get(), EPOLL_CTL_ADD, EPOLLIN, listen_key);
  }

  // -- timers -----------------------------------------------------------------------------

  void arm_timer(connection& c, steady::time_point when) {
    timers_.push({when, c.id, ++c.timer_token});
  }

  void run_timers() {
    auto now = steady::now();
    while (!timers_.empty() && timers_.top().when <= now) {
      timer_entry t = timers_.top();
      timers_.pop();
      auto it = connections_.find(t.connection_id);
      if (it == connections_.end() || it->second->timer_token != t.token)
        continue;
      connection& c = *it->second;
      if (c.lingering) {
        close_now(c);
      } else if (c.active.kind == job_kind::delayed) {
        c.out += c.active.deferred;
        c.active = job{};
        pump(c);
      } else if (c.active.kind == job_kind::chat) {
        emit_token(c);
        pump(c);
      }
    }
  }

  // -- responses --------------------------------------------------------------------------

  /// Status line and the headers every response has.
  void begin_head(std::string& out, int status) const {
    out += "HTTP/1.1 ";
    append_number(out, static_cast<std::uint64_t>(status));
    out += ' ';
    out += reason_phrase(status);
    out += "\r\nX-Backend: ";
    out += opts_.name;
    out += "\r\n";
  }

  /// Connection header and the blank line; marks the connection for closing if needed.
  static void end_head(std::string& out, connection& c, const request& r, bool force_close) {
    if (force_close || !r.keep_alive) {
      out += "Connection: close\r\n";
      c.close_after = true;
      c.input_done = true;
    } else if (r.http10) {
      out += "Connection: keep-alive\r\n";
    }
    out += "\r\n";
  }

  /// A complete response with Content-Length (none for 204 and 304, which have no body).
  void write_simple(std::string& out, connection& c, const request& r, int status,
                    std::string_view type, std::string_view body, bool force_close = false) {
    begin_head(out, status);
    bool bodyless = status == 204 || status == 304;
    if (!bodyless) {
      out += "Content-Type: ";
      out += type;
      out += "\r\nContent-Length: ";
      append_number(out, body.size());
      out += "\r\n";
    }
    end_head(out, c, r, force_close);
    if (!bodyless && r.method != "HEAD")
      out += body;
  }

  void bad_request(connection& c, const request& r) {
    write_simple(c.out, c, r, 400, "text/plain", "bad request\n");
  }

  /// Starts the response to `r`: appends it, or its head and a job producing the rest.
  void start(connection& c, const request& r) {
    if (r.reject != 0) {
      std::string body = std::to_string(r.reject) + " " + reason_phrase(r.reject) + "\n";
      write_simple(c.out, c, r, r.reject, "text/plain", body, true);
      return;
    }
    std::string_view path = path_of(r.target);
    auto arg = [&](std::string_view prefix, std::string_view& rest) {
      if (path.substr(0, prefix.size()) != prefix)
        return false;
      rest = path.substr(prefix.size());
      return true;
    };
    std::string_view rest;
    if (path == "/echo")
      echo(c, r);
    else if (path == "/info")
      info(c, r);
    else if (arg("/bytes/", rest))
      bytes(c, r, rest, false);
    else if (arg("/close/", rest))
      bytes(c, r, rest, true);
    else if (arg("/chunked/", rest))
      chunked(c, r, rest);
    else if (arg("/status/", rest))
      status(c, r, rest);
    else if (arg("/slow/", rest))
      slow(c, r, rest);
    else if (path == "/hang")
      c.active.kind = job_kind::hang;
    else if (path == "/api/tags" && (r.method == "GET" || r.method == "HEAD"))
      tags(c, r);
    else if (path == "/api/chat" && r.method == "POST")
      chat(c, r);
    else
      not_found(c, r, path);
  }

  void echo(connection& c, const request& r) {
    std::string& out = c.out;
    begin_head(out, 200);
    const std::string* type = r.header("Content-Type");
    out += "Content-Type: ";
    out += type != nullptr ? std::string_view(*type) : "application/octet-stream";
    out += "\r\nX-Method: ";
    out += r.method;
    out += "\r\nX-Path: ";
    out += r.target;
    out += "\r\n";
    if (const std::string* id = r.header("X-Request-Id")) {
      out += "X-Request-Id: ";
      out += *id;
      out += "\r\n";
    }
    out += "Content-Length: ";
    append_number(out, r.body.size());
    out += "\r\n";
    end_head(out, c, r, false);
    if (r.method != "HEAD")
      out += r.body;
  }

  void info(connection& c, const request& r) {
    // Repeated header names are merged (values joined with ", ") to keep the object valid.
    std::vector<std::pair<std::string, std::string>> merged;
    for (const auto& header : r.headers) {
      auto it = std::find_if(merged.begin(), merged.end(),
                             [&](const auto& m) { return iequals(m.first, header.first); });
      if (it == merged.end())
        merged.push_back(header);
      else
        it->second += ", " + header.second;
    }
    std::string body = "{\"backend\":";
    append_json_string(body, opts_.name);
    body += ",\"method\":";
    append_json_string(body, r.method);
    body += ",\"path\":";
    append_json_string(body, r.target);
    body += ",\"body_bytes\":";
    append_number(body, r.body.size());
    body += ",\"headers\":{";
    for (std::size_t i = 0; i < merged.size(); ++i) {
      if (i > 0)
        body += ',';
      append_json_string(body, merged[i].first);
      body += ':';
      append_json_string(body, merged[i].second);
    }
    body += "}}";
    write_simple(c.out, c, r, 200, "application/json", body);
  }

  /// /bytes/N (Content-Length) or /close/N (delimited by closing the connection).
  void bytes(connection& c, const request& r, std::string_view arg, bool close_delimited) {
    std::uint64_t n = 0;
    if (!parse_u64(arg, n)) {
      bad_request(c, r);
      return;
    }
    begin_head(c.out, 200);
    c.out += "Content-Type: application/octet-stream\r\n";
    if (!close_delimited) {
      c.out += "Content-Length: ";
      append_number(c.out, n);
      c.out += "\r\n";
    }
    end_head(c.out, c, r, close_delimited);
    if (r.method != "HEAD" && n > 0) {
      c.active.kind = job_kind::pattern;
      c.active.left = n;
    }
  }

  /// /chunked/N/K; to an HTTP/1.0 client the same bytes, delimited by closing.
  void chunked(connection& c, const request& r, std::string_view arg) {
    auto slash = arg.find('/');
    std::uint64_t count = 0;
    std::uint64_t size = 0;
    if (slash == std::string_view::npos || !parse_u64(arg.substr(0, slash), count) ||
        !parse_u64(arg.substr(slash + 1), size)) {
      bad_request(c, r);
      return;
    }
    begin_head(c.out, 200);
    c.out += "Content-Type: application/octet-stream\r\n";
    if (!r.http10)
      c.out += "Transfer-Encoding: chunked\r\n";
    end_head(c.out, c, r, r.http10);
    if (r.method != "HEAD") {
      c.active.kind = job_kind::chunks;
      c.active.chunked = !r.http10;
      c.active.chunk_size = size;
      c.active.chunks_left = size > 0 ? count : 0; // an empty chunk would end the body
    }
  }

  void status(connection& c, const request& r, std::string_view arg) {
    std::uint64_t code = 0;
    if (!parse_u64(arg, code) || code < 200 || code > 599) {
      bad_request(c, r);
      return;
    }
    int s = static_cast<int>(code);
    write_simple(c.out, c, r, s, "text/plain", std::to_string(s) + " " + reason_phrase(s) + "\n");
  }

  void slow(connection& c, const request& r, std::string_view arg) {
    std::uint64_t ms = 0;
    if (!parse_u64(arg, ms) || ms > max_slow_ms) {
      bad_request(c, r);
      return;
    }
    c.active.kind = job_kind::delayed;
    write_simple(c.active.deferred, c, r, 200, "text/plain", "slow");
    arm_timer(c, steady::now() + std::chrono::milliseconds(ms));
  }

  void tags(connection& c, const request& r) {
    static constexpr std::string_view body =
        R"({"models":[{"name":"demo-llm:latest","model":"demo-llm:latest",)"
        R"("modified_at":"2024-01-01T00:00:00Z","size":1048576,)"
        R"("digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000",)"
        R"("details":{"format":"gguf","family":"demo","parameter_size":"1M",)"
        R"("quantization_level":"Q4_0"}}]})";
    write_simple(c.out, c, r, 200, "application/json", body);
  }

  void not_found(connection& c, const request& r, std::string_view path) {
    std::string body = "{\"error\":\"not found\",\"path\":";
    append_json_string(body, path);
    body += "}";
    write_simple(c.out, c, r, 404, "application/json", body);
  }

  // /api/chat

  static std::string_view chat_word(std::size_t i) { return chat_words[i % chat_words.size()]; }

  static std::string token_line(std::string_view word) {
    std::string line = R"({"model":"demo-llm","created_at":")" + utc_timestamp() +
                       R"(","message":{"role":"assistant","content":)";
    append_json_string(line, std::string(word) + " ");
    line += "},\"done\":false}\n";
    return line;
  }

  /// The closing fields of a chat answer: `"done":true,...}`.
  std::string chat_summary(steady::time_point started) const {
    std::string s = R"("done":true,"done_reason":"stop","total_duration":)";
    append_number(
        s,
        static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - started).count()));
    s += ",\"eval_count\":";
    append_number(s, opts_.tokens);
    s += "}";
    return s;
  }

  void chat(connection& c, const request& r) {
    auto started = steady::now();
    if (stream_disabled(r.body)) {
      std::string content;
      for (std::size_t i = 0; i < opts_.tokens; ++i)
        content.append(chat_word(i)).append(" ");
      std::string body = R"({"model":"demo-llm","created_at":")" + utc_timestamp() +
                         R"(","message":{"role":"assistant","content":)";
      append_json_string(body, content);
      body += "}," + chat_summary(started);
      write_simple(c.out, c, r, 200, "application/json", body);
      return;
    }
    begin_head(c.out, 200);
    c.out += "Content-Type: application/x-ndjson\r\n";
    if (!r.http10)
      c.out += "Transfer-Encoding: chunked\r\n";
    end_head(c.out, c, r, r.http10);
    c.active.kind = job_kind::chat;
    c.active.chunked = !r.http10;
    c.active.started = started;
    if (opts_.tokens == 0)
      emit_token(c);
    else
      arm_timer(c, started + opts_.token_delay);
  }

  /// Appends the next chat line (and, after the last token, the summary and the end).
  void emit_token(connection& c) {
    job& j = c.active;
    if (j.tokens_sent < opts_.tokens) {
      append_chunk(c.out, token_line(chat_word(j.tokens_sent)), j.chunked);
      ++j.tokens_sent;
    }
    if (j.tokens_sent < opts_.tokens) {
      arm_timer(c, j.started + opts_.token_delay * static_cast<long>(j.tokens_sent + 1));
      return;
    }
    append_chunk(c.out,
                 "{\"model\":\"demo-llm\",\"created_at\":\"" + utc_timestamp() + "\"," +
                     chat_summary(j.started) + "\n",
                 j.chunked);
    if (j.chunked)
      c.out += "0\r\n\r\n";
    j = job{};
  }

  const http_backend::options opts_;
  unique_fd listen_;
  unique_fd epoll_;
  unique_fd wake_;
  std::uint16_t port_ = 0;

  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::size_t> open_{0};
  mutable std::mutex record_mutex_;
  mutable std::condition_variable record_cv_;
  std::deque<recorded_request> records_;

  // Loop thread only.
  std::unordered_map<std::uint64_t, std::unique_ptr<connection>> connections_;
  std::vector<std::unique_ptr<connection>> closed_;
  std::priority_queue<timer_entry, std::vector<timer_entry>, std::greater<>> timers_;
  std::uint64_t next_id_ = wake_key + 1;
  bool accepting_ = true;
  std::vector<char> read_buffer_;

  std::thread thread_; // last: started once everything above exists
};

} // namespace

struct http_backend::impl {
  explicit impl(options opts) : srv(std::move(opts)) {}
  server srv;
};

http_backend::http_backend(options opts) : impl_(std::make_unique<impl>(std::move(opts))) {}

http_backend::~http_backend() = default;

std::uint16_t http_backend::port() const {
  return impl_->srv.port();
}

std::uint64_t http_backend::requests_received() const {
  return impl_->srv.requests_received();
}

std::uint64_t http_backend::connections_accepted() const {
  return impl_->srv.connections_accepted();
}

std::size_t http_backend::open_connections() const {
  return impl_->srv.open_connections();
}

bool http_backend::wait_for_requests(std::uint64_t n, std::chrono::milliseconds timeout) const {
  return impl_->srv.wait_for_requests(n, timeout);
}

std::vector<recorded_request> http_backend::received() const {
  return impl_->srv.received();
}

} // namespace sshpool::demo
