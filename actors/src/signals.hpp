// Turns SIGTERM/SIGINT into calls on a normal thread: the signal handler only writes the
// signal number to a self-pipe; one watcher thread reads it and calls `on_signal` with how
// many signals arrived so far (1: drain, 2: force). One instance per process.
#pragma once

#include <functional>
#include <memory>

namespace sshpool {

class signal_watcher {
public:
  /// Installs the handlers and starts the watcher thread; throws std::system_error if
  /// another watcher is active or a call fails.
  explicit signal_watcher(std::function<void(int count)> on_signal);

  /// Restores the previous handlers and stops the thread.
  ~signal_watcher();

  signal_watcher(const signal_watcher&) = delete;
  signal_watcher& operator=(const signal_watcher&) = delete;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace sshpool
