// Child processes for the test fixtures: pidfds, signals, free ports, waiting for exits and
// processes whose output goes to a file (spawning itself and files: os.hpp). Errors throw
// std::system_error.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "support/os.hpp"

namespace sshpool::test {

/// A pidfd for `pid` (-1 on failure). Called through syscall(2): glibc 2.36 declares
/// pidfd_open without C linkage in C++.
int open_pidfd(pid_t pid);

/// Sends `sig` to the process of `pidfd`, which cannot have been replaced by a reused pid.
void send_signal(int pidfd, int sig);

/// A free TCP port on 127.0.0.1 (bound to port 0 and released).
std::uint16_t free_port();

/// Waits up to `bound` until every process in `pidfds` has exited; returns those that have not.
std::vector<int> wait_exits(std::vector<int> pidfds, std::chrono::milliseconds bound);

/// A child process whose stdout and stderr go to a file. The destructor kills it (SIGKILL)
/// if it still runs and reaps it. Not thread-safe.
class logged_process {
public:
  /// Spawns `argv` (see `spawn`) with its output appended to `log_file`.
  logged_process(const std::string& log_file, const std::vector<std::string>& argv);
  ~logged_process();
  logged_process(const logged_process&) = delete;
  logged_process& operator=(const logged_process&) = delete;

  pid_t pid() const noexcept { return pid_; }
  /// Waits for the exit (an event: the pidfd): the exit code, 128 + the signal if a signal
  /// ended it; nullopt if it still runs at `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  /// Sends `sig` unless it was reaped.
  void signal(int sig);
  /// What it wrote so far.
  std::string output() const;

private:
  std::string log_file_;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::optional<int> status_;
};

} // namespace sshpool::test
