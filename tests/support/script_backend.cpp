#include "support/script_backend.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace sshpool::test {

namespace {

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

/// The number after `prefix` in `path` (0 when missing).
long number_after(const std::string& path, std::string_view prefix) {
  return std::strtol(path.c_str() + prefix.size(), nullptr, 10);
}

bool starts_with(const std::string& s, std::string_view prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

} // namespace

script_backend::script_backend(const std::string& bind) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (listen_fd_ < 0 || stop_fd_ < 0)
    throw_errno("script_backend: socket/eventfd");
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // SO_REUSEPORT lets stop_listening keep the port bound by a second socket (below).
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  addr_.sin_family = AF_INET;
  if (::inet_pton(AF_INET, bind.c_str(), &addr_.sin_addr) != 1)
    throw std::invalid_argument("script_backend: not an IPv4 address: " + bind);
  socklen_t len = sizeof addr_;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_) < 0 ||
      ::listen(listen_fd_, 64) < 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr_), &len) < 0)
    throw_errno("script_backend: bind/listen " + bind);
  port_ = ntohs(addr_.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

script_backend::~script_backend() {
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(stop_fd_, &one, sizeof one);
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> guard(mutex_);
    workers.swap(workers_);
    for (int fd : clients_)
      ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& w : workers)
    w.join();
  ::close(listen_fd_);
  if (hold_fd_ >= 0)
    ::close(hold_fd_);
  ::close(stop_fd_);
}

void script_backend::stop_listening() {
  // On Linux, shutdown() of a listening socket ends the listen: later SYNs are answered
  // with RST (connection refused) and the acceptor's poll wakes up. It also gives up the
  // port, which another test running in parallel could then bind and serve (a refused
  // connect would become its answer): a second socket, bound to the port but never
  // listening, keeps it ours.
  hold_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (hold_fd_ < 0 || ::setsockopt(hold_fd_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
      ::bind(hold_fd_, reinterpret_cast<const sockaddr*>(&addr_), sizeof addr_) < 0)
    throw_errno("script_backend: holding port " + std::to_string(port_));
  ::shutdown(listen_fd_, SHUT_RDWR);
}

bool script_backend::wait_for_requests(std::uint64_t n, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return requests_ >= n; });
}

bool script_backend::pause(int ms) const {
  pollfd p{stop_fd_, POLLIN, 0};
  return ::poll(&p, 1, ms) == 0;
}

void script_backend::accept_loop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno == EINTR)
      continue;
    if (fds[1].revents != 0)
      return;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      return; // EINVAL after stop_listening()
    }
    std::lock_guard<std::mutex> guard(mutex_);
    // Join the workers that are done (each listed itself last thing under the lock we now
    // hold), so a long run does not keep the stacks of finished threads.
    for (auto id : finished_) {
      auto w = std::find_if(workers_.begin(), workers_.end(),
                            [id](const std::thread& t) { return t.get_id() == id; });
      w->join();
      workers_.erase(w);
    }
    finished_.clear();
    clients_.push_back(fd);
    workers_.emplace_back([this, fd] {
      serve(fd);
      std::lock_guard<std::mutex> lock(mutex_);
      clients_.erase(std::find(clients_.begin(), clients_.end(), fd));
      ::close(fd);
      finished_.push_back(std::this_thread::get_id());
    });
  }
}

void script_backend::serve(int fd) {
  std::string buf;
  char chunk[4096];
  for (;;) {
    auto end = buf.find("\r\n\r\n");
    while (end == std::string::npos) {
      pollfd fds[2] = {{fd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0 && errno == EINTR)
        continue;
      if (fds[1].revents != 0)
        return;
      auto n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return;
      buf.append(chunk, static_cast<std::size_t>(n));
      end = buf.find("\r\n\r\n");
    }
    const auto first_space = buf.find(' ');
    const auto second_space = buf.find(' ', first_space + 1);
    const std::string path = buf.substr(first_space + 1, second_space - first_space - 1);
    buf.erase(0, end + 4);
    {
      std::lock_guard<std::mutex> guard(mutex_);
      ++requests_;
    }
    cv_.notify_all();
    const std::string ok_head = "HTTP/1.1 200 OK\r\n";
    if (starts_with(path, "/ok/")) {
      if (!pause(static_cast<int>(number_after(path, "/ok/"))) ||
          !send_all(fd, ok_head + "Content-Length: 2\r\n\r\nok"))
        return;
    } else if (path == "/silence") {
      pollfd fds[2] = {{fd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      ::poll(fds, 2, -1); // until the peer closes or the backend stops
      return;
    } else if (path == "/cut") {
      send_all(fd, ok_head + "Content-Length: 1000\r\n\r\n0123456789");
      return;
    } else if (path == "/stall") {
      if (!send_all(fd, ok_head + "Content-Length: 1000\r\n\r\n0123456789"))
        return;
      pollfd fds[2] = {{fd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      ::poll(fds, 2, -1); // until the peer closes or the backend stops
      return;
    } else if (path == "/endless") {
      if (!send_all(fd, ok_head + "Transfer-Encoding: chunked\r\n\r\n"))
        return;
      const std::string piece = "4000\r\n" + std::string(0x4000, 'e') + "\r\n";
      while (pause(0) && send_all(fd, piece)) {
      }
      return;
    } else if (path == "/bare-cr") {
      send_all(fd, "HTTP/1.1 200 OK\rSet-Cookie: x\r\nContent-Length: 2\r\n\r\nok");
      return;
    } else if (path == "/bad-status") {
      send_all(fd, "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n");
      return;
    } else if (path == "/bad-chunk") {
      send_all(fd, ok_head + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n");
      return;
    } else if (starts_with(path, "/big/")) {
      const auto size = static_cast<std::size_t>(number_after(path, "/big/"));
      if (!send_all(fd, ok_head + "Content-Length: " + std::to_string(size) + "\r\n\r\n"))
        return;
      const std::string piece(64 * 1024, 'x');
      for (std::size_t sent = 0; sent < size; sent += piece.size()) {
        if (!send_all(fd, std::string_view{piece}.substr(0, size - sent)))
          return;
      }
    } else if (starts_with(path, "/huge-head/")) {
      const auto size = static_cast<std::size_t>(number_after(path, "/huge-head/"));
      std::string head = ok_head;
      for (std::size_t i = 0; head.size() < size; ++i)
        head += "X-Filler-" + std::to_string(i) + ": " + std::string(100, 'f') + "\r\n";
      if (!send_all(fd, head + "Content-Length: 0\r\n\r\n"))
        return;
    } else if (starts_with(path, "/trickle/")) {
      const int ms = static_cast<int>(number_after(path, "/trickle/"));
      if (!send_all(fd, ok_head + "Content-Length: 1000\r\n\r\n"))
        return;
      for (int i = 0; i < 1000; ++i) {
        if (!pause(ms) || !send_all(fd, "t"))
          return;
      }
    } else if (!send_all(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")) {
      return;
    }
  }
}

} // namespace sshpool::test
