// See event_loop.hpp.
#include "net/event_loop.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace sshpool::net {

event_loop::event_loop(const std::string& host, std::uint16_t port, const std::string& who) {
  listen_ = open_listener(host, port, who);
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw_errno(errno, who + ": getsockname");
  port_ = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                           : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  epoll_ = unique_fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_)
    throw_errno(errno, who + ": epoll_create1");
  wake_ = unique_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_)
    throw_errno(errno, who + ": eventfd");
  if (!add(listen_.get(), EPOLLIN, listen_key) || !add(wake_.get(), EPOLLIN, wake_key))
    throw_errno(errno, who + ": epoll_ctl");
}

void event_loop::wake() const noexcept {
  std::uint64_t one = 1;
  ssize_t written = ::write(wake_.get(), &one, sizeof one);
  static_cast<void>(written); // an eventfd write of 1 cannot fail short of overflow
}

void event_loop::clear_wake() const noexcept {
  std::uint64_t count = 0;
  ssize_t got = ::read(wake_.get(), &count, sizeof count);
  static_cast<void>(got); // EAGAIN: nothing to reset
}

bool event_loop::add(int fd, std::uint32_t events, std::uint64_t key) const {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = key;
  return ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
}

bool event_loop::modify(int fd, std::uint32_t events, std::uint64_t key) const {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = key;
  return ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) == 0;
}

void event_loop::remove(int fd) const {
  epoll_event ev{};
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, &ev);
}

void event_loop::pause_accepting() {
  if (accepting_ && listen_)
    remove(listen_.get());
  accepting_ = false;
}

void event_loop::resume_accepting() {
  if (!accepting_ && listen_)
    accepting_ = add(listen_.get(), EPOLLIN, listen_key);
}

void event_loop::close_listener() {
  pause_accepting();
  listen_.reset();
}

event_loop::accepted event_loop::accept_one(unique_fd& fd, sockaddr_storage& addr) {
  socklen_t len = sizeof addr;
  fd = unique_fd(::accept4(listen_.get(), reinterpret_cast<sockaddr*>(&addr), &len,
                           SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (!fd) {
    if (errno == EINTR || errno == ECONNABORTED)
      return accepted::retry;
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
      pause_accepting(); // out of descriptors: until a connection closes
    return accepted::none;
  }
  int on = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  return accepted::connection;
}

} // namespace sshpool::net
