// See net.hpp.
#include "net/net.hpp"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <system_error>

namespace sshpool::net {

unique_fd& unique_fd::operator=(unique_fd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

void unique_fd::reset() {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
}

void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::system_category(), what);
}

unique_fd open_listener(const std::string& host, std::uint16_t port, const std::string& who) {
  std::string where = who + ": bind " + host + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0)
    throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                            where + ": " + ::gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, &::freeaddrinfo);
  int err = EADDRNOTAVAIL;
  for (addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
    unique_fd fd(
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd) {
      err = errno;
      continue;
    }
    int on = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd.get(), SOMAXCONN) == 0)
      return fd;
    err = errno;
  }
  throw_errno(err, where);
}

recv_status recv_some(int fd, char* buf, std::size_t size, std::size_t& got) {
  got = 0;
  for (;;) {
    ssize_t n = ::recv(fd, buf, size, 0);
    if (n > 0) {
      got = static_cast<std::size_t>(n);
      return recv_status::data;
    }
    if (n == 0)
      return recv_status::eof;
    if (errno == EINTR)
      continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? recv_status::would_block : recv_status::failed;
  }
}

bool send_pending(int fd, const std::string& out, std::size_t& off, std::size_t& sent) {
  sent = 0;
  while (off < out.size()) {
    ssize_t n = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    off += static_cast<std::size_t>(n);
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

void compact(std::string& buf, std::size_t& off, std::size_t slack) {
  if (off == buf.size()) {
    buf.clear();
    off = 0;
  } else if (off >= slack) {
    buf.erase(0, off);
    off = 0;
  }
}

} // namespace sshpool::net
