// The engine paths of sshpool-bench: one sshpool engine whose users (all alike, each with
// its own pool) reach nginx through the private sshd, driven either by a CAF driver actor (as a
// CAF-based service would: leases through the supervisor, forward_atom to the leased connections)
// or by threads calling the blocking facade (as an embedding service would).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "load.hpp"
#include "sshpool/types.hpp"

namespace sshpool {
class engine;
} // namespace sshpool

namespace sshpool::bench {

/// How the engine reaches nginx and how its pool is sized.
struct engine_target {
  /// The sshd, its user and keys, and nginx as the sshd sees it; every user's endpoint.
  endpoint ep;
  /// Per user.
  std::size_t connections = 1;
  std::size_t channels = 32;
  /// Requests are spread over this many users ("bench-0", "bench-1", ...).
  std::size_t users = 1;
  /// false: every request says `Connection: close`, so it opens and closes its own channel.
  bool channel_reuse = true;
  /// engine_config::reactor_threads (0: the engine's default).
  std::size_t reactors = 0;
};

/// One engine kept for every run of the benchmark, so that its SSH handshakes happen once,
/// in the first run's warm-up, like the OpenSSH tunnels that stay up between runs. Each run
/// leases max(1, min(concurrency, connections x channels) / users) connections per user;
/// the load's slot s always uses lease s % leases (so slots are spread evenly over the
/// users, and each stays on its connection like a wrk connection on its tunnel).
class engine_load {
public:
  /// Builds the engine (log level warn, request and acquire timeouts 30 s). Throws
  /// std::exception if the configuration or the endpoint is refused.
  explicit engine_load(const engine_target& target);
  ~engine_load();

  engine_load(const engine_load&) = delete;
  engine_load& operator=(const engine_load&) = delete;

  /// A driver actor leases the connections from the supervisor, warms every lease up, keeps
  /// `concurrency` forward_atom requests in flight on them (slot s on lease s % leases)
  /// and releases the leases at the end.
  load_result run_actor(const load_options& opts);

  /// `concurrency` threads, each calling the blocking connection::forward in a loop, round
  /// robin over its share of the leases (taken and released the same way through the
  /// facade).
  load_result run_facade(const load_options& opts);

private:
  /// Leases per user of one run.
  std::size_t leases_per_user(const load_options& opts) const;

  engine_target target_;
  std::unique_ptr<sshpool::engine> engine_;
};

} // namespace sshpool::bench
