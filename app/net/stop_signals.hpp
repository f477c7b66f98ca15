// How the demo's programs (and the benchmarks' slow-client flood) stop on SIGINT or SIGTERM:
// the signals are blocked in every thread and taken by sigwait on one, so that no handler
// runs in the middle of a server thread.
//
// Thread-safety: construct it on the main thread before starting any other; `wait` there.
#pragma once

#include <pthread.h>
#include <signal.h>

namespace sshpool::net {

/// SIGINT and SIGTERM, blocked in the calling thread from construction on: threads started
/// afterwards inherit the mask, so only `wait` takes them.
class stop_signals {
public:
  stop_signals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }

  /// Waits for SIGINT or SIGTERM; returns which came.
  int wait() const {
    int sig = 0;
    while (sigwait(&set_, &sig) != 0) {
    }
    return sig;
  }

private:
  sigset_t set_;
};

} // namespace sshpool::net
