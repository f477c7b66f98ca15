// What every load path of sshpool-bench is asked to do and what it reports: the common
// contract of the HTTP client (http_load) and the engine drivers (engine_load). No CAF here,
// so that only engine_load.cpp pays for CAF's headers.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "report.hpp"

namespace sshpool::bench {

using bench_clock = std::chrono::steady_clock;

/// One timed run of one path: a closed loop of `concurrency` slots, each sending its next
/// request as soon as its previous one completes.
struct load_options {
  /// New requests are issued until this long after the warm-up; those in flight then finish.
  std::chrono::nanoseconds duration{std::chrono::seconds(10)};
  /// Upper bound on the requests issued, whatever the duration.
  std::uint64_t max_requests = 10'000'000;
  std::size_t concurrency = 32;
  /// The run stops issuing once this many requests failed.
  std::uint64_t max_errors = 1000;
  /// Every response must be a 200 with a body of exactly this many bytes.
  std::size_t body_bytes = 100;
  /// Every request says `Connection: close` (a new connection, or channel, per request).
  bool connection_close = false;
  /// Completed requests (successes and failures) of the timed phase, for the progress line.
  std::atomic<std::uint64_t>* completed = nullptr;
  /// Called once when the timed phase starts (the warm-up done), on the thread that runs the
  /// load (a CAF driver actor's among them: it must not block); may be empty.
  std::function<void()> started;
};

/// What a run measured (`elapsed`: from the end of the warm-up to the last completion). The
/// warm-up (one request per slot, which opens connections and channels) is not counted.
struct load_result : run_counts {
  /// Latency of every successful request, in nanoseconds.
  std::vector<std::int64_t> latencies;
  /// The run could not be carried out (set-up or warm-up failed); the numbers are void.
  bool aborted = false;
  /// Engine paths: the channels open on each connection used, at the end of the run (busy
  /// plus kept for reuse).
  std::vector<std::uint32_t> channels_per_connection;

  /// Marks the run as not carried out.
  void abort(std::string what) {
    aborted = true;
    if (first_error.empty())
      first_error = std::move(what);
  }
};

} // namespace sshpool::bench
