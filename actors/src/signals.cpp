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

/// The self-pipe lives as long as the process: the handler may run on any thread at any
/// time, so its write end is never closed (no stray byte into a reused fd number).
struct self_pipe {
  int read_fd = -1;
  int write_fd = -1;
};

const self_pipe& process_pipe() {
  static const self_pipe p = [] {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
      throw std::system_error{errno, std::generic_category(), "pipe2"};
    return self_pipe{fds[0], fds[1]};
  }();
  return p;
}

/// The write end while a watcher is active, else -1. Read by the handler only.
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
  int stop_fds[2] = {-1, -1};
  struct sigaction old_term {};
  struct sigaction old_int {};
  std::thread thread;
};

signal_watcher::signal_watcher(std::function<void(int)> on_signal)
    : impl_(std::make_unique<impl>()) {
  auto& im = *impl_;
  const auto& pipe = process_pipe();
  int expected = -1;
  if (!signal_fd.compare_exchange_strong(expected, pipe.write_fd))
    throw std::system_error{EBUSY, std::generic_category(),
                            "another engine already handles signals"};
  if (::pipe2(im.stop_fds, O_CLOEXEC) != 0) {
    auto err = errno;
    signal_fd = -1;
    throw std::system_error{err, std::generic_category(), "pipe2"};
  }
  // Drop signal bytes left over from an earlier watcher.
  unsigned char stale[64];
  while (::read(pipe.read_fd, stale, sizeof(stale)) > 0) {
  }
  struct sigaction sa {};
  sa.sa_handler = &on_signal_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGTERM, &sa, &im.old_term);
  ::sigaction(SIGINT, &sa, &im.old_int);
  im.thread = std::thread{[&im, read_fd = pipe.read_fd, on_signal = std::move(on_signal)] {
    int count = 0;
    pollfd fds[2] = {{read_fd, POLLIN, 0}, {im.stop_fds[0], POLLIN, 0}};
    for (;;) {
      if (::poll(fds, 2, -1) < 0 && errno != EINTR)
        return;
      if (fds[1].revents != 0)
        return;
      unsigned char buf[16];
      auto n = ::read(read_fd, buf, sizeof(buf));
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
  ::close(im.stop_fds[0]);
  ::close(im.stop_fds[1]);
}

} // namespace sshpool
