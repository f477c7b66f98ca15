// Child processes for the test fixtures (see child_process.hpp).
#include "support/child_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace sshpool::test {

int open_pidfd(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

void send_signal(int pidfd, int sig) {
  ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0);
}

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    throw_errno("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) {
    int err = errno;
    ::close(fd);
    throw std::system_error(err, std::generic_category(), "bind 127.0.0.1:0");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::vector<int> wait_exits(std::vector<int> pidfds, std::chrono::milliseconds bound) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!pidfds.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      break;
    std::vector<pollfd> fds;
    for (int fd : pidfds)
      fds.push_back({fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), static_cast<int>(left.count()) + 1) < 0 && errno != EINTR)
      break;
    pidfds.clear();
    for (const auto& p : fds) {
      if (p.revents == 0)
        pidfds.push_back(p.fd);
    }
  }
  return pidfds;
}

logged_process::logged_process(const std::string& log_file, const std::vector<std::string>& argv)
    : log_file_(log_file) {
  int out = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0)
    throw_errno("open " + log_file);
  try {
    pid_ = spawn(argv, out);
  } catch (...) {
    ::close(out);
    throw;
  }
  ::close(out);
  pidfd_ = open_pidfd(pid_);
}

logged_process::~logged_process() {
  if (!status_) {
    signal(SIGKILL);
    wait(std::chrono::milliseconds{-1});
  }
  if (pidfd_ >= 0)
    ::close(pidfd_);
}

std::optional<int> logged_process::wait(std::chrono::milliseconds timeout) {
  if (status_)
    return status_;
  if (timeout.count() >= 0) {
    pollfd p{pidfd_, POLLIN, 0};
    int n = 0;
    while ((n = ::poll(&p, 1, static_cast<int>(timeout.count()))) < 0 && errno == EINTR) {
    }
    if (n == 0)
      return std::nullopt;
  }
  int status = wait_child(pid_);
  status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return status_;
}

void logged_process::signal(int sig) {
  if (!status_ && pidfd_ >= 0)
    send_signal(pidfd_, sig);
}

std::string logged_process::output() const {
  return read_file(log_file_);
}

} // namespace sshpool::test
