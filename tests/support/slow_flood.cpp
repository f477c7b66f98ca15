// The slow-client flood (see slow_flood.hpp). Each slot is one connection, opened again
// whenever the server closes it; a refused or failed connect is retried after a pause.
#include "support/slow_flood.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <string>
#include <system_error>
#include <vector>

namespace sshpool::test {

namespace {

using steady = std::chrono::steady_clock;

constexpr std::uint64_t stop_key = 0;
constexpr std::chrono::milliseconds retry_pause{100};
constexpr std::chrono::milliseconds tick{20};
constexpr char head_start[] = "GET /u/flood/ HTTP/1.1\r\nHost: flood\r\nX-Slow: ";

struct slot {
  int fd = -1;
  bool connected = false;
  /// Connected at least once.
  bool established = false;
  steady::time_point next;
};

} // namespace

slow_flood::slow_flood(flood_options opts) : opts_(opts) {
  if (opts_.sources == 0 || opts_.sources > 250)
    opts_.sources = 250;
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  stop_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_ < 0 || stop_fd_ < 0)
    throw std::system_error(errno, std::system_category(), "slow_flood: epoll/eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = stop_key;
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, stop_fd_, &ev);
  thread_ = std::thread([this] { run(); });
}

slow_flood::~slow_flood() {
  std::uint64_t one = 1;
  ssize_t n = ::write(stop_fd_, &one, sizeof one);
  static_cast<void>(n);
  thread_.join();
  ::close(stop_fd_);
  ::close(epoll_);
}

bool slow_flood::wait_established(std::chrono::milliseconds limit) const {
  std::unique_lock<std::mutex> lock{mutex_};
  return changed_.wait_for(lock, limit, [&] { return established_.load() >= opts_.connections; });
}

void slow_flood::notify() {
  { std::lock_guard<std::mutex> guard{mutex_}; }
  changed_.notify_all();
}

void slow_flood::run() {
  std::vector<slot> slots(opts_.connections);
  auto close_slot = [&](slot& s, bool by_server) {
    if (s.fd < 0)
      return;
    ::close(s.fd);
    s.fd = -1;
    if (s.connected && by_server)
      closed_.fetch_add(1);
    s.connected = false;
  };
  auto open_slot = [&](std::size_t i, steady::time_point now) {
    slot& s = slots[i];
    s.next = now + retry_pause; // if this attempt fails
    s.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.fd < 0)
      return;
    sockaddr_in from{};
    from.sin_family = AF_INET;
    from.sin_addr.s_addr = htonl((127u << 24) | (100u << 8) | (1u + i % opts_.sources));
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(opts_.port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    epoll_event ev{};
    ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = i + 1;
    if (::bind(s.fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
        (::connect(s.fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 &&
         errno != EINPROGRESS) ||
        ::epoll_ctl(epoll_, EPOLL_CTL_ADD, s.fd, &ev) != 0)
      close_slot(s, false);
  };
  auto on_connected = [&](slot& s, steady::time_point now) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      close_slot(s, false);
      s.next = now + retry_pause;
      return;
    }
    s.connected = true;
    if (!s.established) {
      s.established = true;
      established_.fetch_add(1);
      notify();
    }
    if (opts_.drip.count() > 0 &&
        ::send(s.fd, head_start, sizeof head_start - 1, MSG_NOSIGNAL) < 0) {
      close_slot(s, true);
      return;
    }
    s.next = now + opts_.drip;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = static_cast<std::uint64_t>(&s - slots.data()) + 1;
    ::epoll_ctl(epoll_, EPOLL_CTL_MOD, s.fd, &ev);
  };

  auto now = steady::now();
  for (std::size_t i = 0; i < slots.size(); ++i)
    open_slot(i, now);
  std::array<epoll_event, 256> events;
  std::array<char, 4096> sink;
  for (;;) {
    int n = ::epoll_wait(epoll_, events.data(), static_cast<int>(events.size()),
                         static_cast<int>(tick.count()));
    now = steady::now();
    for (int e = 0; e < n; ++e) {
      if (events[e].data.u64 == stop_key) {
        for (auto& s : slots)
          close_slot(s, false);
        return;
      }
      slot& s = slots[events[e].data.u64 - 1];
      if (s.fd < 0)
        continue;
      if (!s.connected) {
        on_connected(s, now);
        continue;
      }
      // Whatever the server says (a 408 or 503) is read and dropped; its FIN closes the slot.
      ssize_t got = 0;
      while ((got = ::recv(s.fd, sink.data(), sink.size(), 0)) > 0) {
      }
      if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ||
          (events[e].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
        close_slot(s, true);
        s.next = now;
      }
    }
    for (std::size_t i = 0; i < slots.size(); ++i) {
      slot& s = slots[i];
      if (now < s.next)
        continue;
      if (s.fd < 0) {
        open_slot(i, now);
      } else if (s.connected && opts_.drip.count() > 0) {
        if (::send(s.fd, "X", 1, MSG_NOSIGNAL) < 0)
          close_slot(s, true);
        s.next = now + opts_.drip;
      }
    }
  }
}

std::size_t raise_fd_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0)
    return 0;
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);
  ::getrlimit(RLIMIT_NOFILE, &lim);
  return static_cast<std::size_t>(lim.rlim_cur);
}

} // namespace sshpool::test
