#include "sshpool/metrics.hpp"

namespace sshpool {

void histogram::observe(std::chrono::nanoseconds d) noexcept {
  auto seconds = std::chrono::duration<double>(d).count();
  std::size_t i = 0;
  while (i < bounds.size() && seconds > bounds[i])
    ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(d.count(), 0)),
                    std::memory_order_relaxed);
}

histogram_snapshot histogram::snapshot() const {
  histogram_snapshot result;
  result.bounds.assign(bounds.begin(), bounds.end());
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    result.counts.push_back(cumulative);
  }
  result.count = cumulative + buckets_[bounds.size()].load(std::memory_order_relaxed);
  result.sum = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
  return result;
}

void metrics::count_request(errc result) noexcept {
  requests_[static_cast<std::size_t>(result)].fetch_add(1, std::memory_order_relaxed);
}

metrics_snapshot metrics::snapshot() const {
  metrics_snapshot result;
  static_cast<engine_counters<std::uint64_t>&>(result) = load_all<engine_counters>(*this);
  result.handshake_seconds = handshake_seconds.snapshot();
  result.channel_open_seconds = channel_open_seconds.snapshot();
  result.request_seconds = request_seconds.snapshot();
  for (std::size_t i = 0; i < requests_.size(); ++i)
    if (auto n = requests_[i].load(); n > 0)
      result.requests[i == 0 ? "ok" : to_string(static_cast<errc>(i))] = n;
  return result;
}

} // namespace sshpool
