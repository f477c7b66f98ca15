// The engine paths of sshpool-bench: one sshpool engine whose users (all alike, each with
// its own pool) reach nginx through the private sshd, driven either by a CAF driver actor (as a
// CAF-based service would: leases through the supervisor, forward_atom to the leased connections)
// or by threads calling the blocking facade (as an embedding service would), or by one thread
// keeping requests in flight through the facade's forward_async. In reverse mode
// (engine_target::agents) the users' machines dial in instead: the engine has an agent
// listener, and each user's machine is the stock OpenSSH client `ssh -N -R` exposing nginx.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "load.hpp"
#include "sshpool/types.hpp"

namespace sshpool {
class connection;
class engine;
namespace test {
class agent_home;
class logged_process;
} // namespace test
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
  /// Reverse mode: the users are agent users (endpoint_mode::agent, `ep.target_port` the
  /// port their agents give to `-R`), and each user's machine is one `ssh -N -R
  /// target_port:127.0.0.1:target_port` dialing in to the engine's agent listener (nginx is
  /// its service); only `ep.target_port` of `ep` is used.
  bool agents = false;
};

/// One engine kept for every run of the benchmark, so that its SSH handshakes happen once,
/// in the first run's warm-up, like the OpenSSH tunnels that stay up between runs. Each run
/// leases max(1, min(concurrency, connections x channels) / users) connections per user;
/// the load's slot s always uses lease s % leases (so slots are spread evenly over the
/// users, and each stays on its connection like a wrk connection on its tunnel).
class engine_load {
public:
  /// Builds the engine (log level warn, request and acquire timeouts 30 s). Reverse mode:
  /// also its agent listener (127.0.0.1, a port of its own, a host key in a temporary
  /// directory), and starts one `ssh -N -R` per user, returning once every user has its
  /// agent connected. Throws std::exception if the configuration or the endpoint is refused,
  /// or an agent did not connect within 30 s (with the agent's output).
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

  /// One thread keeping `concurrency` connection::forward_async requests in flight (slot s
  /// on lease s % leases, leased and released through the facade): it takes every future
  /// that is ready, sending that slot's next request at once, and waits (for the oldest
  /// request) only when none is.
  load_result run_async(const load_options& opts);

private:
  /// Leases per user of one run.
  std::size_t leases_per_user(const load_options& opts) const;

  /// Leases the connections of one facade run (see above); on failure, `result` is aborted
  /// and the leases taken so far are returned.
  std::vector<connection> lease_connections(const load_options& opts, load_result& result);

  /// Counts the channels of each connection used into `result`, then releases the leases.
  void release_connections(const std::vector<connection>& conns, load_result& result);

  /// Reverse mode: starts the users' agents and waits until they are connected.
  void start_agents();

  engine_target target_;
  /// Reverse mode: the machines' keys and known_hosts, the listener's host key, and the
  /// agents (destroyed after the engine, which disconnects them first).
  std::unique_ptr<test::agent_home> home_;
  std::vector<std::unique_ptr<test::logged_process>> agents_;
  std::unique_ptr<sshpool::engine> engine_;
};

} // namespace sshpool::bench
