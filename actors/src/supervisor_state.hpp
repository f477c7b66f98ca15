// The state of the supervisor actor and the steps its two source files share:
// supervisor.cpp (pools, permits, agents, fan-outs, drains) and supervisor_cluster.cpp (the
// cluster: routing to the owner node, relays, leases served to other nodes, claims).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/actor_clock.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "context.hpp"
#include "internal_messages.hpp"
#include "relay.hpp"

namespace sshpool {

/// A pool's request for a permit, waiting for a handshake token.
struct permit_request {
  caf::typed_response_promise<void> rp;
  caf::actor_addr pool;
};

/// A lease of another node's connection, held by a lessee of this node through a relay.
struct relayed_lease {
  /// The owner node and the lease as it granted it (released as such).
  std::string node;
  lease remote;
  relay_actor relay;
};

/// An acquire sent to the owner node, not answered yet.
struct remote_acquire {
  std::string user;
  caf::typed_response_promise<lease> rp;
  std::string node;
  caf::actor_clock::time_point deadline;
  /// Which attempt is current (answers of an earlier one are ignored); one retry at most.
  std::uint32_t attempt = 0;
};

/// The supervisor's cluster side; absent until the first claim or view (a single node).
struct cluster_state {
  /// The last view of the cluster actor; none yet: everything is served locally.
  std::optional<cluster_view> view;
  /// Relays by their address.
  std::unordered_map<caf::actor_addr, relayed_lease> relays;
  /// Acquires sent to owner nodes, by a sequence number.
  std::unordered_map<std::uint64_t, remote_acquire> acquires;
  std::uint64_t next_acquire = 0;
  /// Leases granted to other nodes' lessees, by their node's supervisor (monitored).
  std::unordered_map<caf::actor_addr, std::vector<lease>> lessees;
  /// Users with an agent connected here (claimed while they are), and users claimed after
  /// a rebalance until their leases and waiters here are gone.
  std::set<std::string> agent_users;
  std::set<std::string> held;
  bool hold_tick_armed = false;
  /// cluster_stats' routed counters.
  std::uint64_t remote_acquires = 0;
  std::uint64_t remote_acquire_failures = 0;
  std::uint64_t served_acquires = 0;
};

struct supervisor_state {
  static inline const char* name = "sshpool.supervisor";

  std::shared_ptr<const actor_context> ctx;
  std::unordered_map<std::string, endpoint> endpoints;
  std::unordered_map<std::string, user_pool_actor> pools;
  std::unordered_map<caf::actor_addr, std::string> pool_users;
  /// Permits held per pool (one per connection actor alive), and their sum.
  std::unordered_map<caf::actor_addr, std::size_t> permits;
  std::size_t permits_held = 0;
  /// Users whose pool is being asked to retire, with the calls held meanwhile.
  std::unordered_map<std::string, std::vector<std::function<void()>>> retiring;
  /// Handshake rate: a token bucket refilled at max_handshakes_per_second.
  double tokens = 0;
  caf::actor_clock::time_point refilled;
  std::deque<permit_request> permit_queue;
  bool tick_armed = false;
  bool draining = false;
  bool stopping = false;
  std::vector<caf::typed_response_promise<void>> stop_promises;
  std::unique_ptr<cluster_state> cluster;
};

using supervisor_ptr = supervisor_impl::stateful_pointer<supervisor_state>;

// -- supervisor.cpp ---------------------------------------------------------------------------

/// Why calls are refused while the engine drains or stops.
error not_admitting(const supervisor_state& st);

/// The pool of `user`, spawned on demand; an error if the user has no endpoint.
expected<user_pool_actor> pool_for(supervisor_ptr self, const std::string& user);

/// Runs `route` now, or once `user`'s pool answered whether it retires.
template <class Promise, class Route>
Promise hold_or_route(supervisor_ptr self, const std::string& user, Promise rp, Route route) {
  auto& st = self->state;
  if (!st.retiring.empty()) {
    if (auto held = st.retiring.find(user); held != st.retiring.end()) {
      held->second.push_back([rp, route]() mutable { route(rp); });
      return rp;
    }
  }
  route(rp);
  return rp;
}

/// The local path of an acquire: `user`'s pool answers `rp`.
void acquire_into(supervisor_ptr self, const std::string& user,
                  caf::typed_response_promise<lease>& rp);

// -- supervisor_cluster.cpp -------------------------------------------------------------------

/// Whether calls are routed (a view arrived): false on a single node.
inline bool routing_on(const supervisor_state& st) {
  return st.cluster && st.cluster->view;
}

/// Whether the current message comes from another node.
bool from_remote(supervisor_ptr self);

/// Whether the current message is one of this node's own calls sent from another node (then
/// logged and refused with local_only()): a peer holds this supervisor's handle (the cluster
/// hello) and CAF's middleman delivers whatever it sends, so only acquire, release, close and
/// drain of a user are taken from there. One pointer test on a single node (no cluster state,
/// no peers; a cluster node has its state from its cluster actor's first view, sent before it
/// listens).
bool from_peer(supervisor_ptr self);

/// The answer to a local-only call from another node (invalid_argument).
caf::error local_only();

/// Routes an acquire (routing on): sent to the owner node and answered with a relay's
/// lease, or served here for another node (tracked); none: the local path as today.
std::optional<caf::result<lease>> cluster_acquire(supervisor_ptr self, const std::string& user);

/// Routes a release (routing on): a relayed lease goes to its owner, another node's release
/// is tracked; none: the local path.
std::optional<caf::result<void>> cluster_release(supervisor_ptr self, const std::string& user,
                                                 const lease& l);

/// Routes close(user) and drain(user) (routing on) to the owner node; none: local.
std::optional<caf::result<std::uint64_t>> cluster_close(supervisor_ptr self,
                                                        const std::string& user);
std::optional<caf::result<shutdown_report>> cluster_drain(supervisor_ptr self,
                                                          const std::string& user);

/// A new view of the cluster.
void on_view(supervisor_ptr self, cluster_view& view);

/// A pool's user has agents here (true) or none any more (false).
void on_agents(supervisor_ptr self, const std::string& user, bool present);

/// Re-checks the users held after a rebalance (the hold tick).
void check_held(supervisor_ptr self);

/// A monitored relay or remote supervisor is down; false if `dm` is none of the cluster's.
bool cluster_down(supervisor_ptr self, const caf::down_msg& dm);

/// The engine stops: pending remote acquires fail, relays end.
void cluster_stop(supervisor_ptr self);

} // namespace sshpool
