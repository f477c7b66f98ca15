// The cluster protocol: what one node's cluster actor says to another's over the middleman
// (hello, heartbeat, claims, leave), and the local interface of the cluster actor (its
// engine, its supervisor and its own timers). In a type-ID block of their own; the hello,
// the peer handle and the stats are registered by `add_message_types`.
//
// One meaning per atom: hello_atom introduces a node, ping_atom / pong_atom are the
// heartbeat, leave_atom announces a drain, listen_atom publishes the node, dial_atom,
// beat_atom and deadline_atom are the cluster actor's own timers.
#pragma once

#include <string>
#include <vector>

#include "internal_messages.hpp"

CAF_BEGIN_TYPE_ID_BLOCK(sshpool_cluster_atoms, caf::first_custom_type_id + 400)
CAF_ADD_ATOM(sshpool_cluster_atoms, sshpool, hello_atom, "sp_hello")
CAF_ADD_ATOM(sshpool_cluster_atoms, sshpool, ping_atom, "sp_ping")
CAF_ADD_ATOM(sshpool_cluster_atoms, sshpool, pong_atom, "sp_pong")
CAF_ADD_ATOM(sshpool_cluster_atoms, sshpool, leave_atom, "sp_leave")
CAF_ADD_ATOM(sshpool_cluster_atoms, sshpool, listen_atom, "sp_listen")
CAF_ADD_ATOM(sshpool_cluster_atoms, sshpool, dial_atom, "sp_dial")
CAF_ADD_ATOM(sshpool_cluster_atoms, sshpool, beat_atom, "sp_beat")
CAF_ADD_ATOM(sshpool_cluster_atoms, sshpool, deadline_atom, "sp_deadln")
CAF_END_TYPE_ID_BLOCK(sshpool_cluster_atoms)

namespace sshpool {

struct cluster_hello;

/// What one node's cluster actor takes from another's (the actor published on the node's
/// `cluster.listen`).
using cluster_peer_actor = caf::typed_actor<
    // Introduces the sender; the reply introduces the receiver. Refused (invalid_argument)
    // if the sender's node id is the receiver's own or a live member's of another process,
    // and (shutting_down) while the receiver leaves.
    caf::replies_to<hello_atom, cluster_hello>::with<cluster_hello>,
    // Heartbeat: answered by pong_atom with the answering node's id.
    caf::reacts_to<ping_atom>, caf::reacts_to<pong_atom, std::string>,
    // Node `node` claims `user` (true) or gives the claim up (false).
    caf::reacts_to<claim_atom, std::string, std::string, bool>,
    // Node `node` drains: drop it from the members now.
    caf::reacts_to<leave_atom, std::string>>;

/// A node introducing itself: its id, its middleman address, its supervisor (where other
/// nodes send the calls of the users it owns), its cluster actor and the users it claims.
struct cluster_hello {
  std::string node_id;
  std::string listen;
  supervisor_actor supervisor;
  cluster_peer_actor cluster;
  std::vector<std::string> claims;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, cluster_hello& x) {
    return f(caf::meta::type_name("sshpool.cluster_hello"), x.node_id, x.listen, x.supervisor,
             x.cluster, x.claims);
  }
};

/// Where the cluster actor sends its views: the supervisor, seen through the one message
/// it takes from the cluster actor.
using view_sink = caf::typed_actor<caf::reacts_to<view_atom, cluster_view>>;

/// The cluster actor in full: the peer interface, plus what its engine, its supervisor and
/// its own timers send. Messages of this extension are taken from this node only.
using cluster_actor = cluster_peer_actor::extend<
    // The supervisor: this node claims a user, or gives the claim up.
    caf::reacts_to<claim_atom, std::string, bool>,
    // The engine: publish on cluster.listen (the bound port), then dial the peers.
    caf::replies_to<listen_atom>::with<std::uint16_t>,
    // The engine: the members and the peers' counters.
    caf::replies_to<stats_atom>::with<cluster_stats>,
    // The engine drains: tell every member, answer once they acknowledged (or timed out).
    caf::reacts_to<leave_atom>,
    // Timers: dial peer link N of generation G, send the heartbeats, a member's heartbeat
    // deadline number D.
    caf::reacts_to<dial_atom, std::uint64_t, std::uint64_t>, caf::reacts_to<beat_atom>,
    caf::reacts_to<deadline_atom, std::string, std::uint64_t>>;

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_peer_stats& x) {
  return f(caf::meta::type_name("sshpool.cluster_peer_stats"), x.address, x.node_id, x.up,
           x.connects, x.failures, x.since);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_stats& x) {
  return f(caf::meta::type_name("sshpool.cluster_stats"), x.node_id, x.members, x.peers,
           x.membership_changes, x.claims, x.directory, x.remote_acquires,
           x.remote_acquire_failures, x.served_acquires, x.served_leases);
}

} // namespace sshpool

CAF_BEGIN_TYPE_ID_BLOCK(sshpool_cluster, caf::first_custom_type_id + 450)
CAF_ADD_TYPE_ID(sshpool_cluster, (sshpool::cluster_hello))
CAF_ADD_TYPE_ID(sshpool_cluster, (sshpool::cluster_peer_actor))
CAF_ADD_TYPE_ID(sshpool_cluster, (sshpool::cluster_actor))
CAF_ADD_TYPE_ID(sshpool_cluster, (sshpool::cluster_peer_stats))
CAF_ADD_TYPE_ID(sshpool_cluster, (sshpool::cluster_stats))
CAF_END_TYPE_ID_BLOCK(sshpool_cluster)
