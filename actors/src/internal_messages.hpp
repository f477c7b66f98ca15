// The engine's internal messages: the atoms that only its own actors exchange (transport
// events, permits, connection events, timers, the cleanup and shutdown controls), in a
// type-ID block of their own, and the full interface of each actor. The supervisor and the
// connection extend their public interfaces (sshpool/messages.hpp): they are spawned with
// the full type and handed out as the public one. The user pool, cleanup and shutdown
// actors are internal as a whole: nothing public hands them out.
//
// One meaning per atom: each timer has its own (request_timeout_atom, acquire_timeout_atom,
// grace_over_atom, token_atom, sweep_atom, keepalive_atom, probe_atom, retry_atom), and a
// connection closes itself on disconnect_atom, while close_atom (public) closes a user's
// connections.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sshpool/messages.hpp"
#include "sshpool/ssh/agent_listener.hpp"

CAF_BEGIN_TYPE_ID_BLOCK(sshpool_internal_atoms, caf::first_custom_type_id + 200)
// connection ← pool
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, connect_atom, "sp_connect")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, disconnect_atom, "sp_discon")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, validate_atom, "sp_valid")
// connection ← transport (I/O threads)
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, opened_atom, "sp_opened")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, result_atom, "sp_result")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, lost_atom, "sp_lost")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, alive_atom, "sp_alive")
// connection's timers
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, request_timeout_atom, "sp_reqtime")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, keepalive_atom, "sp_keepal")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, probe_atom, "sp_probe")
// pool ← connection, pool ← supervisor
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, conn_up_atom, "sp_connup")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, conn_down_atom, "sp_conndn")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, retire_atom, "sp_retire")
// supervisor ← agent listener (reverse mode), pool ← supervisor
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, agent_atom, "sp_agent")
// pool's timers
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, acquire_timeout_atom, "sp_acqtime")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, retry_atom, "sp_retry")
// supervisor ← pool, and the supervisor's handshake-rate timer
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, permit_atom, "sp_permit")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, withdraw_atom, "sp_withdr")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, return_atom, "sp_return")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, idle_atom, "sp_idle")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, token_atom, "sp_token")
// cleanup ← facade, and its periodic timer
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, start_atom, "sp_start")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, pause_atom, "sp_pause")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, trigger_atom, "sp_trigger")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, config_atom, "sp_config")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, sweep_atom, "sp_sweep")
// shutdown's timer
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, grace_over_atom, "sp_grace")
// supervisor ← cluster actor (the members and the directory), cluster actor ← supervisor
// (this node claims a user, or gives the claim up)
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, view_atom, "sp_view")
CAF_ADD_ATOM(sshpool_internal_atoms, sshpool, claim_atom, "sp_claim")
CAF_END_TYPE_ID_BLOCK(sshpool_internal_atoms)

namespace sshpool {

/// What an agent (reverse mode) is told when the gateway drains or stops.
inline constexpr const char* agent_goodbye = "gateway shutting down";

/// An agent (reverse mode) on its way from the listener to its user's pool. A CAF message
/// is copied, the handle is move-only: copies share one handle, which the first `take`
/// gets. Dropping the last copy of one neither taken nor refused refuses it (the handle's
/// destructor). Used by one actor at a time (the message passes it on).
class agent_offer {
public:
  agent_offer() = default;
  agent_offer(std::string user, ssh::agent_handle handle);

  /// Whether it carries an agent (one made from a handle).
  explicit operator bool() const noexcept { return shared_ != nullptr; }
  /// The SSH user name: the user id.
  const std::string& user() const { return user_; }
  /// The handle, once; empty afterwards (and for a default-constructed offer).
  ssh::agent_handle take();
  /// Disconnects the agent with `reason` (its ssh prints it), unless taken.
  void refuse(const std::string& reason);
  /// What `refuse` said; empty if it was not refused.
  const std::string& refusal() const;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, agent_offer& x) {
    // Only the user: the handle never leaves the process.
    return f(caf::meta::type_name("sshpool.agent_offer"), x.user_);
  }

private:
  struct shared {
    ssh::agent_handle handle;
    std::string refusal;
  };
  std::string user_;
  std::shared_ptr<shared> shared_;
};

/// What of the cluster actor its supervisor uses: this node claims `user` (true: its agent
/// connected here, or this node finishes work for a user that moved) or gives the claim up.
using claim_actor = caf::typed_actor<caf::reacts_to<claim_atom, std::string, bool>>;

/// The cluster as one node sees it, sent by the cluster actor to its supervisor whenever the
/// members or the directory change. Never crosses nodes (it holds this node's handles).
struct cluster_view {
  /// This node's id.
  std::string self;
  /// Live members, `self` included, sorted: the candidates of `rendezvous::owner`.
  std::vector<std::string> members;
  /// The other live members' supervisors, by node id.
  std::map<std::string, supervisor_actor> supervisors;
  /// The directory: users whose owner is fixed by a claim, with the claiming node (a live
  /// member); they are not hashed.
  std::map<std::string, std::string> claims;
  /// The local cluster actor, for claim_atom.
  claim_actor cluster;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, cluster_view& x) {
    return f(caf::meta::type_name("sshpool.cluster_view"), x.self, x.members, x.supervisors,
             x.claims, x.cluster);
  }
};

/// A connection actor in full: its lessee's interface, plus what its pool, its transport
/// and its own timers send.
using connection_impl = connection_actor::extend<
    // The pool starts the handshake.
    caf::reacts_to<connect_atom>,
    // The pool closes the SSH connection with a reason (in-flight requests fail with
    // connection_lost; an agent's ssh prints it).
    caf::reacts_to<disconnect_atom, std::string>,
    // Probes the server now; true once it answered, an error (and the connection closes)
    // if it did not within keepalive_timeout.
    caf::replies_to<validate_atom>::with<bool>,
    // Closes the connection if nothing was in flight for at least the given time.
    caf::replies_to<evict_atom, caf::timespan>::with<bool>,
    // Stops taking requests, lets those in flight finish, then disconnects; replies what
    // happened (connections_closed = 1). force_atom cuts what is still in flight.
    caf::replies_to<drain_atom>::with<shutdown_report>, caf::reacts_to<force_atom>,
    // Transport events: handshake done, request done or failed, stream head and body
    // pieces, session lost, proof of life.
    caf::reacts_to<opened_atom, caf::error>,
    caf::reacts_to<result_atom, std::uint64_t, response, transfer_info>,
    caf::reacts_to<result_atom, std::uint64_t, caf::error, transfer_info>,
    caf::reacts_to<head_atom, std::uint64_t, response>,
    caf::reacts_to<chunk_atom, std::uint64_t, std::string>, caf::reacts_to<lost_atom, caf::error>,
    caf::reacts_to<alive_atom>,
    // Timers: the earliest request deadline, the keepalive tick, the probe's deadline (each
    // with the generation it was armed with).
    caf::reacts_to<request_timeout_atom, std::uint64_t>,
    caf::reacts_to<keepalive_atom, std::uint64_t>, caf::reacts_to<probe_atom, std::uint64_t>>;

/// The pool of one user. Only the supervisor and the pool's own connections talk to it.
using user_pool_actor = caf::typed_actor<
    caf::replies_to<acquire_atom, std::string>::with<lease>,
    caf::replies_to<release_atom, std::string, lease>::with<void>,
    caf::replies_to<close_atom, std::string>::with<std::uint64_t>,
    caf::replies_to<stats_atom>::with<user_stats>, caf::reacts_to<endpoint_atom, endpoint>,
    // Fails waiters with shutting_down, withdraws its permits asked, closes every
    // connection and quits once their actors are down.
    caf::reacts_to<stop_atom>,
    // Closes idle connections older than the given idle time; replies how many.
    caf::replies_to<evict_atom, caf::timespan>::with<std::uint64_t>,
    // Stops admitting the user, lets its requests finish, closes; replies what happened.
    caf::replies_to<drain_atom>::with<shutdown_report>, caf::reacts_to<force_atom>,
    // The supervisor retires an empty pool (true: it quits).
    caf::replies_to<retire_atom>::with<bool>,
    // An agent of the user dialed in, with a permit the supervisor took for it: it becomes
    // a connection, or is refused (the permit then goes back).
    caf::reacts_to<agent_atom, agent_offer>,
    // Its connections: up, or down (lost, failed handshake, probe missed).
    caf::reacts_to<conn_up_atom, std::uint64_t>,
    caf::reacts_to<conn_down_atom, std::uint64_t, caf::error>,
    // Timers: the earliest waiter deadline, the end of a reconnect backoff.
    caf::reacts_to<acquire_timeout_atom, std::uint64_t>, caf::reacts_to<retry_atom, std::uint64_t>>;

/// The supervisor in full: the service's interface, plus the permits its pools ask for.
using supervisor_impl = supervisor_actor::extend<
    // A pool asks for a permit to create one connection (answered, in FIFO order, as the
    // handshake rate allows; refused at the global cap), withdraws the permits it asked for
    // and no longer needs, and gives one back once that connection's actor is down.
    caf::replies_to<permit_atom>::with<void>, caf::reacts_to<withdraw_atom>,
    caf::reacts_to<return_atom>,
    // An empty pool offers to retire.
    caf::reacts_to<idle_atom, std::string>,
    // An agent dialed in (from the agent listener's thread): routed to its user's pool.
    caf::reacts_to<agent_atom, agent_offer>,
    // The next handshake token is due.
    caf::reacts_to<token_atom>,
    // Cluster: the cluster actor's view (members, peers' supervisors, claims); a pool's
    // user has agents here (true) or none any more (false); the tick that re-checks the
    // users held after a rebalance; the routed counters of cluster_stats
    // (remote_acquires, remote_acquire_failures, served_acquires, served_leases).
    caf::reacts_to<view_atom, cluster_view>, caf::reacts_to<claim_atom, std::string, bool>,
    caf::reacts_to<claim_atom>,
    caf::replies_to<view_atom>::with<std::uint64_t, std::uint64_t, std::uint64_t, std::uint64_t>>;

/// The cleanup actor: periodic idle eviction. Sweeps carry a generation and stale ones are
/// ignored, so a new configuration reschedules at once.
using cleanup_actor =
    caf::typed_actor<caf::reacts_to<start_atom>, caf::reacts_to<pause_atom>,
                     // Runs a cleanup now; replies how many connections it closed.
                     caf::replies_to<trigger_atom>::with<std::uint64_t>,
                     caf::replies_to<config_atom, cleanup_config>::with<void>,
                     caf::replies_to<stats_atom>::with<cleanup_stats>,
                     // The periodic sweep.
                     caf::reacts_to<sweep_atom, std::uint64_t>>;

/// The shutdown actor: one drain of the whole engine at a time.
using shutdown_actor = caf::typed_actor<
    // Drains within the grace period; every caller gets the same report.
    caf::replies_to<drain_atom, caf::timespan>::with<shutdown_report>,
    // Cuts what remains now (a second signal).
    caf::reacts_to<force_atom>,
    // The grace period of drain number N is over.
    caf::reacts_to<grace_over_atom, std::uint64_t>>;

} // namespace sshpool

CAF_BEGIN_TYPE_ID_BLOCK(sshpool_internal, caf::first_custom_type_id + 300)
CAF_ADD_TYPE_ID(sshpool_internal, (sshpool::connection_impl))
CAF_ADD_TYPE_ID(sshpool_internal, (sshpool::user_pool_actor))
CAF_ADD_TYPE_ID(sshpool_internal, (sshpool::supervisor_impl))
CAF_ADD_TYPE_ID(sshpool_internal, (sshpool::cleanup_actor))
CAF_ADD_TYPE_ID(sshpool_internal, (sshpool::shutdown_actor))
CAF_ADD_TYPE_ID(sshpool_internal, (sshpool::agent_offer))
CAF_ADD_TYPE_ID(sshpool_internal, (sshpool::claim_actor))
CAF_ADD_TYPE_ID(sshpool_internal, (sshpool::cluster_view))
CAF_END_TYPE_ID_BLOCK(sshpool_internal)
