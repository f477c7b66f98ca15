// SIGHUP for the gateway's configuration reload: blocked in every thread and taken by
// sigwait on the gateway's reload thread, so that no handler runs in the middle of a
// server thread (as stop_signals does for the demo's other programs).
//
// Thread-safety: construct it on the main thread before starting any other (threads inherit
// the mask); `wait` on the one thread that takes the signal, `wake` from any thread.
#pragma once

#include <pthread.h>
#include <signal.h>

namespace sshpool::gateway {

/// SIGHUP, blocked in the calling thread from construction on.
class hangup_signal {
public:
  hangup_signal() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }

  /// Waits for SIGHUP: one sent to the process, or `wake`'s to this thread.
  void wait() const {
    int sig = 0;
    while (sigwait(&set_, &sig) != 0) {
    }
  }

  /// Ends a `wait` on `thread` (which then checks why it woke).
  static void wake(pthread_t thread) { pthread_kill(thread, SIGHUP); }

private:
  sigset_t set_;
};

} // namespace sshpool::gateway
