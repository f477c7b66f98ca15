// Many users' first requests at once through the engine's typed actor interface, for the
// cold-start and footprint scenarios of sshpool-bench-engine.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "report.hpp"

namespace sshpool {
class engine;
} // namespace sshpool

namespace sshpool::bench {

/// What one wave of first requests measured (`elapsed`: from sending every acquire to the
/// last answer).
struct fleet_result : run_counts {
  /// Per successful user: from its acquire to its lease (the handshake, queueing included),
  /// and from its acquire to its response, in nanoseconds.
  std::vector<std::int64_t> lease_latencies;
  std::vector<std::int64_t> request_latencies;
};

/// A driver actor sends acquire_atom for every user in `users` at once; each lease gets one
/// GET / (the response must be a 200 with `body_bytes` bytes) and is released. Returns when
/// every user has answered, or at `limit` (the missing ones count as errors). Connections
/// stay in their pools, idle.
/// `progress` (if given) counts the users that have answered, for the progress line.
fleet_result run_first_requests(engine& e, const std::vector<std::string>& users,
                                std::size_t body_bytes, std::chrono::seconds limit,
                                std::atomic<std::uint64_t>* progress = nullptr);

} // namespace sshpool::bench
