// The pool-ops scenario of sshpool-bench-engine: lease + release pairs with no I/O on a warm
// connection, through the typed actor interface (many in flight from a driver actor), and
// the bare CAF round trips they are compared with, in the same actor system.
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

/// Operations (pairs or round trips) of one timed run.
struct ops_result : run_counts {
  /// Latency of each operation (nanoseconds); empty where not recorded.
  std::vector<std::int64_t> latencies;
};

/// What a timed run is allowed to do.
struct ops_limits {
  std::chrono::nanoseconds duration{std::chrono::seconds(5)};
  std::uint64_t max_ops = 50'000'000;
  /// Operations in flight (actor runs).
  std::size_t in_flight = 64;
  /// Completed operations, for the progress line.
  std::atomic<std::uint64_t>* completed = nullptr;
};

/// A driver actor keeps `in_flight` acquire_atom -> release_atom pairs for `user` in flight
/// to the supervisor; each pair starts the next one when its release is answered. Each
/// request has a 10 s timeout, or none (the engine answers by its own deadlines).
ops_result run_actor_pairs(engine& e, const std::string& user, bool with_timeout,
                           const ops_limits& limits);

/// A driver actor keeps `in_flight` requests in flight to a trivial actor (replies its
/// argument) in the engine's actor system: CAF's own message cost. Each request has a 10 s
/// timeout (as every request to and inside the engine has), or none.
ops_result run_caf_round_trips(engine& e, bool with_timeout, const ops_limits& limits);

/// From this thread, one scoped_actor (created once, or once per round trip as the facade
/// does) doing request/receive round trips with a trivial actor, one at a time.
ops_result run_scoped_round_trips(engine& e, bool scoped_actor_per_call, const ops_limits& limits);

} // namespace sshpool::bench
