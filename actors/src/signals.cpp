#include "signals.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <system_error>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

namespace sshpool {

namespace {

/// The write end of the active watcher's self-pipe (-1: none). Read by the handler only.
std::atomic<int> signal_fd{-1};

extern "C" void on_signal_handler(int signo) {
  auto saved = errno;
  auto fd = signal_fd.load();
  if (fd >= 0) {
    auto byte = static_cast<unsigned char>(signo);
    [[maybe_unused]] auto n = ::write(fd, &byte, 1);
  }
  errno = saved;
}

} // namespace

struct signal_watcher::impl {
  int pipe_fds[2] = {-1, -1};
  int stop_fds[2] = {-1, -1};
  struct sigaction old_term {};
  struct sigaction old_int {};
  std::thread thread;
};

signal_watcher::signal_watcher(std::function<void(int)> on_signal)
    : impl_(std::make_unique<impl>()) {
  auto& im = *impl_;
  if (::pipe2(im.pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0 || ::pipe2(im.stop_fds, O_CLOEXEC) != 0)
    throw std::system_error{errno, std::generic_category(), "pipe2"};
  int expected = -1;
  if (!signal_fd.compare_exchange_strong(expected, im.pipe_fds[1]))
    throw std::system_error{EBUSY, std::generic_category(),
                            "another engine already handles signals"};
  struct sigaction sa {};
  sa.sa_handler = &on_signal_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGTERM, &sa, &im.old_term);
  ::sigaction(SIGINT, &sa, &im.old_int);
  im.thread = std::thread{[&im, on_signal = std::move(on_signal)] {
    int count = 0;
    pollfd fds[2] = {{im.pipe_fds[0], POLLIN, 0}, {im.stop_fds[0], POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 2, -1) < 0 && errno != EINTR)
        return;
      if (fds[1].revents != 0)
        return;
      unsigned char buf[16];
      auto n = ::read(im.pipe_fds[0], buf, sizeof(buf));
      for (ssize_t i = 0; i < n; ++i)
        on_signal(++count);
    }
  }};
}

signal_watcher::~signal_watcher() {
  auto& im = *impl_;
  ::sigaction(SIGTERM, &im.old_term, nullptr);
  ::sigaction(SIGINT, &im.old_int, nullptr);
  signal_fd = -1;
  [[maybe_unused]] auto n = ::write(im.stop_fds[1], "x", 1);
  im.thread.join();
  for (int fd : {im.pipe_fds[0], im.pipe_fds[1], im.stop_fds[0], im.stop_fds[1]})
    ::close(fd);
}

} // namespace sshpool
