// The CPU a load costs, for sshpool-bench: this process's (the load driver runs in-process,
// so an engine path's figure holds the driver and the engine, an OpenSSH path's the HTTP
// client alone) and the private sshd's (its listener and every process below it: a
// connection's processes and what they exec'd), over a load's timed phase. No CAF here.
//
//                 mark_start() (the load's `started`)        stop()
//   constructed ─────────────────────────────────────► timed ──────► stopped (figures)
//        │ stop() with no start marked (the load aborted in its warm-up)
//        └───────────────────────────────────────────────────────────► stopped (no figures)
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <optional>
#include <thread>

namespace sshpool::bench {

/// What a timed phase cost.
struct cpu_figures {
  /// This process's CPU (user + system) per completed request, in microseconds.
  double us_per_request = 0;
  /// Whether an sshd was watched; if so, its CPU over the phase's wall time, in % of one core.
  bool sshd_watched = false;
  double sshd_percent = 0;
};

/// Samples the CPU at the start of a load's timed phase and at its end. The start is taken
/// by a thread of the meter's own, woken by mark_start(), so that the load may mark it from a
/// CAF scheduler thread without blocking there on /proc.
class cpu_meter {
public:
  /// `sshd_pid` 0: no sshd to watch.
  explicit cpu_meter(pid_t sshd_pid);
  ~cpu_meter();

  cpu_meter(const cpu_meter&) = delete;
  cpu_meter& operator=(const cpu_meter&) = delete;

  /// The timed phase starts; never blocks. Only the first call counts.
  void mark_start();

  /// The timed phase has ended after `requests` completed requests (called once): the
  /// figures, or none if no start was marked.
  std::optional<cpu_figures> stop(std::uint64_t requests);

private:
  /// CPU seconds of this process and of the sshd's tree, and when they were read.
  struct sample {
    double self_s = 0;
    double sshd_s = 0;
    std::chrono::steady_clock::time_point at;
  };

  /// Reads this process's CPU after the sshd's at the start (`self_last`) and before it at
  /// the end, so that neither walk of /proc counts as the load's CPU.
  sample take(bool self_last) const;

  pid_t sshd_pid_;
  std::atomic<bool> marked_{false};
  /// true: set by mark_start() (the sampler samples), false: by stop() (it does not).
  std::promise<bool> start_;
  sample begin_;
  std::thread sampler_;
};

} // namespace sshpool::bench
