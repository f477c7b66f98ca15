// Engine metrics: lock-free counters and fixed-bucket latency histograms, updated from the
// reactor, connector and actor threads, read as a snapshot (for Prometheus, /stats, logs).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sshpool/errc.hpp"

namespace sshpool {

/// A latency histogram as read at one moment. `counts[i]` is the number of observations
/// <= `bounds[i]` seconds (cumulative, as Prometheus wants); `count` includes +Inf.
struct histogram_snapshot {
  std::vector<double> bounds;
  std::vector<std::uint64_t> counts;
  std::uint64_t count = 0;
  double sum = 0;
};

/// Everything the engine counts, at one moment.
struct metrics_snapshot {
  histogram_snapshot handshake_seconds;
  histogram_snapshot channel_open_seconds;
  histogram_snapshot request_seconds;
  std::uint64_t handshakes_started = 0;
  std::uint64_t handshakes_failed = 0;
  /// Finished forwards and streams by result: "ok" or an errc name.
  std::map<std::string, std::uint64_t> requests;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t keepalive_failures = 0;
  std::uint64_t connections_opened = 0;
  std::uint64_t connections_closed = 0;
};

/// A histogram with fixed bucket bounds (seconds). Thread-safe, lock-free.
class histogram {
public:
  /// 0.5 ms .. 60 s, roughly x2.5 per bucket.
  static constexpr std::array<double, 14> bounds = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0};

  void observe(std::chrono::nanoseconds d) noexcept;
  histogram_snapshot snapshot() const;

private:
  std::array<std::atomic<std::uint64_t>, bounds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> sum_ns_{0};
};

/// The engine's counters. Thread-safe; shared by every layer of one engine.
class metrics {
public:
  histogram handshake_seconds;
  histogram channel_open_seconds;
  histogram request_seconds;
  std::atomic<std::uint64_t> handshakes_started{0};
  std::atomic<std::uint64_t> handshakes_failed{0};
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> bytes_out{0};
  std::atomic<std::uint64_t> keepalive_failures{0};
  std::atomic<std::uint64_t> connections_opened{0};
  std::atomic<std::uint64_t> connections_closed{0};

  /// Counts a finished request by its result (errc::none = ok).
  void count_request(errc result) noexcept;

  metrics_snapshot snapshot() const;

private:
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(errc::internal) + 1> requests_{};
};

} // namespace sshpool
