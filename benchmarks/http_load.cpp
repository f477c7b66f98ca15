// The closed-loop HTTP/1.1 client of sshpool-bench: one epoll thread drives `concurrency`
// non-blocking keep-alive connections with one request in flight each (like `wrk -c`), so
// that nginx directly and the OpenSSH tunnels are measured by the same client. Responses are
// framed by the Debian http_parser (Content-Length or chunked); each must be a 200 with the
// expected body size. As in wrk, a connection sends its next request once the current batch
// of events is handled. A connection that fails or says "close" is reopened for its next
// request; failures are counted and the run stops issuing after `max_errors`.
#include "http_load.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <http_parser.h>

namespace sshpool::bench {

namespace {

constexpr std::string_view keep_alive_request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
constexpr std::string_view close_request =
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

/// In-flight requests may take this long after the end of the run, then they fail.
constexpr auto drain_limit = std::chrono::seconds(10);

/// The warm-up (connect plus one request per connection) must finish within this.
constexpr auto warm_up_limit = std::chrono::seconds(30);

struct client {
  /// Where this client connects (clients are spread round robin over the ports).
  sockaddr_in addr{};
  int fd = -1;
  bool connecting = false;
  bool want_write = false;
  bool in_flight = false;
  std::size_t out_off = 0;
  bench_clock::time_point sent_at;
  http_parser parser{};
  std::size_t body_len = 0;
  bool message_done = false;
};

int on_body(http_parser* p, const char*, std::size_t len) {
  static_cast<client*>(p->data)->body_len += len;
  return 0;
}

int on_message_complete(http_parser* p) {
  static_cast<client*>(p->data)->message_done = true;
  // One request in flight: anything after this response is a protocol error, so stop here
  // and let the caller see the unparsed rest.
  http_parser_pause(p, 1);
  return 0;
}

class http_load {
public:
  http_load(const std::vector<std::uint16_t>& ports, const load_options& opts)
      : opts_(opts), clients_(opts.concurrency),
        request_text_(opts.connection_close ? close_request : keep_alive_request) {
    http_parser_settings_init(&settings_);
    settings_.on_body = &on_body;
    settings_.on_message_complete = &on_message_complete;
    for (std::size_t i = 0; i < clients_.size(); ++i) {
      auto& addr = clients_[i].addr;
      addr.sin_family = AF_INET;
      addr.sin_port = htons(ports[i % ports.size()]);
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  }

  ~http_load() {
    for (auto& c : clients_)
      close_client(c);
    if (epoll_fd_ >= 0)
      ::close(epoll_fd_);
  }

  http_load(const http_load&) = delete;
  http_load& operator=(const http_load&) = delete;

  load_result run() {
    if (epoll_fd_ < 0) {
      result_.abort(std::string{"epoll_create1: "} + std::strerror(errno));
      return std::move(result_);
    }
    result_.latencies.reserve(std::min<std::uint64_t>(opts_.max_requests, 1u << 20));
    auto warm_up_end = bench_clock::now() + warm_up_limit;
    for (auto& c : clients_)
      send_request(c);
    std::array<epoll_event, 64> events{};
    while (!result_.aborted) {
      auto now = bench_clock::now();
      if (warming_ && warmed_ == clients_.size()) {
        warming_ = false;
        start_ = now;
        deadline_ = now + opts_.duration;
        if (opts_.started)
          opts_.started();
        for (auto& c : clients_)
          issue(c);
      }
      if (warming_ && now > warm_up_end) {
        result_.abort("the warm-up did not finish within 30 s");
        break;
      }
      if (!warming_) {
        for (auto* c : next_)
          issue(*c);
        next_.clear();
        if (in_flight_ == 0)
          break;
        if (now > deadline_ + drain_limit) {
          for (auto& c : clients_)
            if (c.in_flight)
              fail_request(c, "no response within 10 s after the end of the run");
          break;
        }
      }
      int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), 50);
      if (n < 0 && errno != EINTR) {
        result_.abort(std::string{"epoll_wait: "} + std::strerror(errno));
        break;
      }
      for (int i = 0; i < n; ++i)
        handle(*static_cast<client*>(events[i].data.ptr), events[i].events);
    }
    if (!warming_ && last_completion_ > start_)
      result_.elapsed = last_completion_ - start_;
    return std::move(result_);
  }

private:
  void handle(client& c, std::uint32_t ev) {
    if (c.fd < 0)
      return;
    if ((ev & EPOLLOUT) != 0 || (c.connecting && (ev & (EPOLLERR | EPOLLHUP)) != 0))
      on_writable(c);
    if (c.fd >= 0 && !c.connecting && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0)
      on_readable(c);
  }

  /// Sends the next request of `c` if the run goes on.
  void issue(client& c) {
    if (bench_clock::now() >= deadline_ || issued_ >= opts_.max_requests ||
        result_.errors >= opts_.max_errors)
      return;
    ++issued_;
    send_request(c);
  }

  void send_request(client& c) {
    c.in_flight = true;
    ++in_flight_;
    c.sent_at = bench_clock::now();
    http_parser_init(&c.parser, HTTP_RESPONSE);
    c.parser.data = &c;
    c.body_len = 0;
    c.message_done = false;
    c.out_off = 0;
    if (c.fd < 0 && !open(c))
      return;
    if (!c.connecting)
      write_some(c);
  }

  bool open(client& c) {
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      fail_request(c, std::string{"socket: "} + std::strerror(errno));
      return false;
    }
    int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c.connecting = false;
    if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&c.addr), sizeof(c.addr)) != 0) {
      if (errno != EINPROGRESS) {
        fail_request(c, std::string{"connect: "} + std::strerror(errno));
        return false;
      }
      c.connecting = true;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | (c.connecting ? EPOLLOUT : 0u);
    ev.data.ptr = &c;
    c.want_write = c.connecting;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c.fd, &ev) != 0) {
      fail_request(c, std::string{"epoll_ctl: "} + std::strerror(errno));
      return false;
    }
    return true;
  }

  void close_client(client& c) {
    if (c.fd >= 0)
      ::close(c.fd); // also leaves the epoll set
    c.fd = -1;
    c.connecting = false;
    c.want_write = false;
  }

  void set_want_write(client& c, bool on) {
    if (c.want_write == on)
      return;
    c.want_write = on;
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
    ev.data.ptr = &c;
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void on_writable(client& c) {
    if (c.connecting) {
      int err = 0;
      socklen_t len = sizeof(err);
      ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        fail_request(c, std::string{"connect: "} + std::strerror(err));
        return;
      }
      c.connecting = false;
    }
    if (c.in_flight)
      write_some(c);
    else
      set_want_write(c, false);
  }

  void write_some(client& c) {
    while (c.out_off < request_text_.size()) {
      auto n = ::send(c.fd, request_text_.data() + c.out_off, request_text_.size() - c.out_off,
                      MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          set_want_write(c, true);
          return;
        }
        fail_request(c, std::string{"send: "} + std::strerror(errno));
        return;
      }
      c.out_off += static_cast<std::size_t>(n);
    }
    set_want_write(c, false);
  }

  void on_readable(client& c) {
    std::array<char, 16384> buf;
    auto n = ::recv(c.fd, buf.data(), buf.size(), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      return;
    if (n <= 0) {
      auto what = n == 0 ? std::string{"the server closed the connection"}
                         : std::string{"recv: "} + std::strerror(errno);
      if (c.in_flight)
        fail_request(c, what);
      else
        close_client(c); // an idle keep-alive connection closed: reopened on next use
      return;
    }
    if (!c.in_flight) {
      close_client(c);
      result_.fail("bytes arrived with no request in flight");
      return;
    }
    auto len = static_cast<std::size_t>(n);
    auto parsed = http_parser_execute(&c.parser, &settings_, buf.data(), len);
    if (c.message_done) {
      if (parsed != len)
        fail_request(c, "bytes after the end of the response");
      else
        complete(c);
      return;
    }
    if (auto err = HTTP_PARSER_ERRNO(&c.parser); err != HPE_OK)
      fail_request(c, std::string{"bad response: "} + http_errno_name(err));
  }

  /// A whole response arrived on `c`.
  void complete(client& c) {
    auto now = bench_clock::now();
    c.in_flight = false;
    --in_flight_;
    bool keep_alive = http_should_keep_alive(&c.parser) != 0;
    if (!keep_alive)
      close_client(c);
    bool good = c.parser.status_code == 200 && c.body_len == opts_.body_bytes;
    if (warming_) {
      if (!good)
        result_.abort(describe(c));
      ++warmed_;
      return;
    }
    last_completion_ = now;
    opts_.completed->fetch_add(1, std::memory_order_relaxed);
    if (good) {
      ++result_.ok;
      result_.latencies.push_back((now - c.sent_at).count());
    } else {
      result_.fail(describe(c));
    }
    next_.push_back(&c);
  }

  std::string describe(const client& c) const {
    return "status " + std::to_string(c.parser.status_code) + " with a " +
           std::to_string(c.body_len) + "-byte body (expected 200 with " +
           std::to_string(opts_.body_bytes) + ")";
  }

  /// The request in flight on `c` failed: the connection is dropped and, if the run goes
  /// on, reopened for the next request after this event batch.
  void fail_request(client& c, std::string what) {
    close_client(c);
    if (!c.in_flight)
      return;
    c.in_flight = false;
    --in_flight_;
    if (warming_) {
      result_.abort("warm-up: " + what);
      return;
    }
    last_completion_ = bench_clock::now();
    opts_.completed->fetch_add(1, std::memory_order_relaxed);
    result_.fail(std::move(what));
    next_.push_back(&c);
  }

  const load_options& opts_;
  std::vector<client> clients_;
  http_parser_settings settings_{};
  std::string_view request_text_;
  int epoll_fd_ = -1;
  bool warming_ = true;
  std::size_t warmed_ = 0;
  std::size_t in_flight_ = 0;
  std::uint64_t issued_ = 0;
  bench_clock::time_point start_;
  bench_clock::time_point deadline_ = bench_clock::time_point::max();
  bench_clock::time_point last_completion_;
  /// Clients that send their next request once the current event batch is handled.
  std::vector<client*> next_;
  load_result result_;
};

} // namespace

load_result run_http_load(const std::vector<std::uint16_t>& ports, const load_options& opts) {
  http_load load{ports, opts};
  return load.run();
}

} // namespace sshpool::bench
