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

/// Plain counters kept live as atomics and read as values at one moment: a struct template
/// `C<Counter>` that lists its counters once and names them, in order, in a static `each`.
/// `load_all` reads the live form into the value form, field by field.
template <template <class> class C>
C<std::uint64_t> load_all(const C<std::atomic<std::uint64_t>>& live) noexcept {
  C<std::uint64_t> out;
  C<std::atomic<std::uint64_t>>::each(live, [&out](const auto&... in) {
    C<std::uint64_t>::each(
        out, [&in...](auto&... value) { ((value = in.load(std::memory_order_relaxed)), ...); });
  });
  return out;
}

/// The engine's plain counters (see `load_all`).
template <class Counter>
struct engine_counters {
  Counter handshakes_started{};
  Counter handshakes_failed{};
  Counter bytes_in{};
  Counter bytes_out{};
  Counter keepalive_failures{};
  Counter connections_opened{};
  Counter connections_closed{};
  /// Reactor passes that held one connection's writes back and sent them together (several
  /// requests to one SSH connection in one pass; docs/libssh.md, trap 19).
  Counter batched_writes{};

  template <class Self, class F>
  static void each(Self& x, F&& f) {
    f(x.handshakes_started, x.handshakes_failed, x.bytes_in, x.bytes_out, x.keepalive_failures,
      x.connections_opened, x.connections_closed, x.batched_writes);
  }
};

/// Everything the engine counts, at one moment.
struct metrics_snapshot : engine_counters<std::uint64_t> {
  histogram_snapshot handshake_seconds;
  histogram_snapshot channel_open_seconds;
  histogram_snapshot request_seconds;
  /// Finished forwards and streams by result: "ok" or an errc name.
  std::map<std::string, std::uint64_t> requests;
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
class metrics : public engine_counters<std::atomic<std::uint64_t>> {
public:
  histogram handshake_seconds;
  histogram channel_open_seconds;
  histogram request_seconds;

  /// Counts a finished request by its result (errc::none = ok).
  void count_request(errc result) noexcept;

  metrics_snapshot snapshot() const;

private:
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(errc::internal) + 1> requests_{};
};

} // namespace sshpool
