// The cluster actor: one per node. It knows the live members of the cluster and what each
// claims, and tells its supervisor (view_atom) whenever that changes.
//
// A peer link (one per configured peer address; one per node that dialed in unasked):
//
//              dial_atom(g)        connect + hello answered         down_msg, no pong within
//   waiting ───────────────► dialing ─────────────────────► up ──── heartbeat_timeout, leave
//     ▲  ▲                    │  refused / failed / timeout  │
//     │  └─ backoff(streak) ──┘                              │
//     └───────────────── backoff(1): [0, base] ──────────────┘
//   A dial is a request to the OpenSSL middleman actor (mutual TLS; a peer without a
//   certificate of the cluster CA never completes it), then hello_atom to the cluster actor
//   published there. A link that goes up also goes up when its node dials in first.
//
// The node:
//
//              listen_atom: published        leave_atom (engine drains)
//   spawned ───────────────────────────► member ──────────────────────────► leaving
//   (view: itself)  beats every interval   │ tells every member, which drop it at once;
//                                          │ hellos refused, no more dials
//
// A member is admitted by a hello (ours answered, or theirs received); it is dropped on
// the down_msg of its cluster actor's proxy, on a missed heartbeat deadline (a pong re-arms
// it) or on its leave. Every change of the members or the claims sends the supervisor a
// view. The engine's messages (listen, stats, leave, the supervisor's claims) and the
// timers are taken from this node only.
#include "cluster.hpp"

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include <caf/all.hpp>
#include <caf/io/middleman_actor.hpp>
#include <caf/openssl/manager.hpp>

#include "backoff.hpp"
#include "handlers.hpp"
#include "sshpool/ssh/log.hpp"
#include "sshpool/text.hpp"

namespace sshpool {

namespace {

/// One peer address: configured (dialed) or known from a node that dialed in.
struct peer_link {
  cluster_peer_stats stats;
  host_port where;
  /// Dialed by this node (configured); false for a node that dialed in unasked.
  bool dials = true;
  bool dialing = false;
  /// Failures in a row (the backoff's exponent).
  std::uint32_t streak = 0;
  /// The current dial's generation: a reply or timer of an older one is stale.
  std::uint64_t generation = 0;
};

/// A live member other than this node.
struct member {
  std::string address;
  caf::node_id node;
  supervisor_actor supervisor;
  cluster_peer_actor cluster;
  std::set<std::string> claims;
  /// Its current heartbeat deadline (a pong arms a newer one).
  std::uint64_t beat = 0;
};

struct cluster_state {
  static inline const char* name = "sshpool.cluster";

  cluster_config cfg;
  supervisor_actor supervisor;
  view_sink views;
  caf::io::middleman_actor middleman;
  std::vector<peer_link> links;
  std::map<std::string, member> members;
  std::set<std::string> own_claims;
  std::uint64_t membership_changes = 0;
  /// Numbers the heartbeat deadlines of every member, so that a deadline armed for a member
  /// that was dropped never matches one admitted later under the same id.
  std::uint64_t deadlines = 0;
  bool listening = false;
  bool leaving = false;
  std::minstd_rand rng{std::random_device{}()};
};

using cluster_ptr = cluster_actor::stateful_pointer<cluster_state>;

/// Whether the current message comes from an actor of this node (the engine's messages and
/// the timers; peers may send only the peer interface).
bool from_here(cluster_ptr self) {
  auto& sender = self->current_sender();
  return sender && sender->node() == self->node();
}

std::vector<std::string> member_ids(cluster_ptr self) {
  auto& st = self->state;
  std::vector<std::string> ids{st.cfg.node_id};
  for (auto& [id, m] : st.members)
    ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

/// The directory: each claimed user with its claiming node (the smallest id if two claim
/// it, so that every node picks the same).
std::map<std::string, std::string> directory(cluster_ptr self) {
  auto& st = self->state;
  std::map<std::string, std::string> claims;
  auto add = [&](const std::string& user, const std::string& node) {
    auto [it, fresh] = claims.emplace(user, node);
    if (!fresh && node < it->second)
      it->second = node;
  };
  for (auto& user : st.own_claims)
    add(user, st.cfg.node_id);
  for (auto& [id, m] : st.members)
    for (auto& user : m.claims)
      add(user, id);
  return claims;
}

void send_view(cluster_ptr self) {
  auto& st = self->state;
  cluster_view view;
  view.self = st.cfg.node_id;
  view.members = member_ids(self);
  for (auto& [id, m] : st.members)
    view.supervisors.emplace(id, m.supervisor);
  view.claims = directory(self);
  view.cluster = caf::actor_cast<claim_actor>(self);
  self->send(st.views, view_atom_v, std::move(view));
}

cluster_hello own_hello(cluster_ptr self) {
  auto& st = self->state;
  return {st.cfg.node_id,
          st.cfg.listen,
          st.supervisor,
          caf::actor_cast<cluster_peer_actor>(self),
          {st.own_claims.begin(), st.own_claims.end()}};
}

peer_link* link_of_address(cluster_ptr self, const std::string& address) {
  for (auto& l : self->state.links)
    if (l.stats.address == address)
      return &l;
  return nullptr;
}

void arm_deadline(cluster_ptr self, const std::string& id, member& m) {
  m.beat = ++self->state.deadlines;
  self->delayed_send(self, self->state.cfg.heartbeat_timeout, deadline_atom_v, id, m.beat);
}

/// Schedules the next dial of link `i` after the backoff of its failures in a row.
void schedule_dial(cluster_ptr self, std::size_t i) {
  auto& st = self->state;
  auto& l = st.links[i];
  if (!l.dials || st.leaving)
    return;
  auto delay = backoff_delay(std::max<std::uint32_t>(l.streak, 1), false,
                             st.cfg.reconnect_backoff_base, st.cfg.reconnect_backoff_cap, st.rng);
  self->delayed_send(self, delay, dial_atom_v, static_cast<std::uint64_t>(i), ++l.generation);
}

void link_up(peer_link& l, const std::string& id) {
  l.dialing = false;
  l.streak = 0;
  ++l.generation; // a pending dial timer is stale
  l.stats.node_id = id;
  if (l.stats.up)
    return;
  l.stats.up = true;
  ++l.stats.connects;
  l.stats.since = std::chrono::system_clock::now();
}

/// Admits the node of `hello` (at `node`) as a member, or refuses it (the error).
caf::error admit(cluster_ptr self, cluster_hello& hello, const caf::node_id& node) {
  auto& st = self->state;
  auto refuse = [&](const std::string& why) {
    log().error("cluster: refused node '{}' ({}): {}", hello.node_id, hello.listen, why);
    return make_caf_error(errc::invalid_argument, "cluster: " + why);
  };
  if (hello.node_id == st.cfg.node_id)
    return refuse("duplicate node id: it is this node's own");
  if (!hello.cluster || !hello.supervisor || node == caf::node_id{} || node == self->node())
    return refuse("a hello without its handles");
  // The handles must be the sender's own: another node's (this one's included) would make
  // this node send that node's users' calls where the sender chooses (to itself: a loop).
  if (hello.cluster.node() != node || hello.supervisor.node() != node)
    return refuse("a hello with handles of another node");
  if (auto it = st.members.find(hello.node_id); it != st.members.end()) {
    if (it->second.node != node)
      return refuse("duplicate node id: a live member of another process has it");
    return caf::none; // known already (both sides dialed)
  }
  // One member per process: a second id would give it a second share of the users.
  for (auto& [id, m] : st.members)
    if (m.node == node)
      return refuse("its process is member '" + id + "' already");
  auto& m = st.members[hello.node_id];
  m.address = hello.listen;
  m.node = node;
  m.supervisor = hello.supervisor;
  m.cluster = hello.cluster;
  m.claims = {hello.claims.begin(), hello.claims.end()};
  self->monitor(m.cluster);
  arm_deadline(self, hello.node_id, m);
  auto* l = link_of_address(self, hello.listen);
  if (!l) { // a node that dialed in and is not configured here
    st.links.emplace_back();
    l = &st.links.back();
    l->stats.address = hello.listen;
    l->dials = false;
  }
  link_up(*l, hello.node_id);
  ++st.membership_changes;
  log().info("cluster: node '{}' ({}) joined; members {}", hello.node_id, hello.listen,
             text::join(member_ids(self), ","));
  send_view(self);
  return caf::none;
}

/// Drops member `id`: it left (a drain) or was lost (`why`).
void drop(cluster_ptr self, const std::string& id, bool left, const std::string& why) {
  auto& st = self->state;
  auto it = st.members.find(id);
  if (it == st.members.end())
    return;
  auto address = it->second.address;
  self->demonitor(it->second.cluster.address());
  st.members.erase(it);
  ++st.membership_changes;
  if (left)
    log().info("cluster: node '{}' left; members {}", id, text::join(member_ids(self), ","));
  else
    log().warn("cluster: node '{}' lost ({}); members {}", id, why,
               text::join(member_ids(self), ","));
  for (std::size_t i = 0; i < st.links.size(); ++i) {
    auto& l = st.links[i];
    if (l.stats.address != address && l.stats.node_id != id)
      continue;
    if (l.stats.up) {
      l.stats.up = false;
      l.stats.since = std::chrono::system_clock::now();
      if (!left)
        ++l.stats.failures;
    }
    l.streak = 1;
    l.dialing = false;
    schedule_dial(self, i);
  }
  send_view(self);
}

/// A dial of link `i` (generation `generation`) failed.
void dial_failed(cluster_ptr self, std::size_t i, std::uint64_t generation,
                 const std::string& why) {
  auto& l = self->state.links[i];
  if (generation != l.generation || l.stats.up)
    return;
  l.dialing = false;
  ++l.stats.failures;
  if (l.streak++ == 0)
    log().warn("cluster: cannot join {}: {} (retrying with backoff)", l.stats.address, why);
  else
    log().debug("cluster: cannot join {}: {}", l.stats.address, why);
  schedule_dial(self, i);
}

/// Connects to link `i` through the OpenSSL middleman, then says hello.
void dial(cluster_ptr self, std::size_t i) {
  auto& st = self->state;
  auto& l = st.links[i];
  if (st.leaving || l.stats.up || l.dialing || !l.dials)
    return;
  l.dialing = true;
  auto generation = l.generation;
  auto timeout = caf::timespan{st.cfg.heartbeat_timeout};
  auto render = [self](const caf::error& err) { return self->system().render(err); };
  self->request(st.middleman, timeout, caf::connect_atom_v, l.where.host, l.where.port)
      .then(
          [=](caf::node_id& node, caf::strong_actor_ptr& ptr, std::set<std::string>&) {
            if (!ptr)
              return dial_failed(self, i, generation, "no cluster node published there");
            auto peer = caf::actor_cast<cluster_peer_actor>(std::move(ptr));
            self->request(peer, timeout, hello_atom_v, own_hello(self))
                .then(
                    [=](cluster_hello& hello) {
                      if (generation != self->state.links[i].generation)
                        return;
                      if (auto err = admit(self, hello, node))
                        return dial_failed(self, i, generation, render(err));
                      link_up(self->state.links[i], hello.node_id);
                    },
                    [=](caf::error& err) { dial_failed(self, i, generation, render(err)); });
          },
          [=](caf::error& err) { dial_failed(self, i, generation, render(err)); });
}

/// Answers a request for nothing (CAF 0.17.6's typed promise of void takes no unit).
void deliver_void(caf::typed_response_promise<void>& rp) {
  static_cast<caf::response_promise&>(rp).deliver(caf::unit);
}

/// The engine drains: every member is told (and drops this node at once); `rp` gets the
/// answer once all acknowledged, or after heartbeat_timeout.
void leave(cluster_ptr self, caf::typed_response_promise<void> rp) {
  auto& st = self->state;
  st.leaving = true;
  log().info("cluster: node '{}' leaves the cluster (drain)", st.cfg.node_id);
  if (st.members.empty())
    return deliver_void(rp);
  auto pending = std::make_shared<std::size_t>(st.members.size());
  auto done = [pending, rp]() mutable {
    if (--*pending == 0)
      deliver_void(rp);
  };
  for (auto& [id, m] : st.members)
    self->request(m.cluster, caf::timespan{st.cfg.heartbeat_timeout}, leave_atom_v, st.cfg.node_id)
        .then([done]() mutable { done(); }, [done](caf::error&) mutable { done(); });
}

cluster_actor::behavior_type cluster_behavior(cluster_ptr self, cluster_config cfg,
                                              supervisor_actor supervisor, view_sink views) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.supervisor = std::move(supervisor);
  st.views = std::move(views);
  st.middleman = self->system().openssl_manager().actor_handle();
  for (auto& address : st.cfg.peers) {
    peer_link l;
    l.stats.address = address;
    l.where = *parse_host_port(address); // validated
    st.links.push_back(std::move(l));
  }
  install_exception_handler(self, [](const std::string&) {});
  // An error message (e.g. a receiver that did not expect what this actor sent) must not
  // end the node's membership: logged, not fatal.
  self->set_error_handler(
      [self](caf::error& err) { log().warn("cluster: {}", self->system().render(err)); });
  self->set_down_handler([self](caf::down_msg& msg) {
    for (auto& [id, m] : self->state.members)
      if (m.cluster.address() == msg.source) {
        auto id_copy = id; // drop() erases the entry
        return drop(self, id_copy, false, "connection closed");
      }
  });
  send_view(self); // the first view: this node alone
  return {
      // -- peers ----------------------------------------------------------------------------
      [self](hello_atom, cluster_hello& hello) -> caf::result<cluster_hello> {
        if (self->state.leaving)
          return make_caf_error(errc::shutting_down, "the node is leaving the cluster");
        auto& sender = self->current_sender();
        if (auto err = admit(self, hello, sender ? sender->node() : caf::node_id{}))
          return err;
        return own_hello(self);
      },
      [self](ping_atom) {
        if (auto peer = caf::actor_cast<cluster_peer_actor>(self->current_sender()))
          self->send(peer, pong_atom_v, self->state.cfg.node_id);
      },
      [self](pong_atom, const std::string& id) {
        auto it = self->state.members.find(id);
        auto& sender = self->current_sender();
        if (it != self->state.members.end() && sender && sender->node() == it->second.node)
          arm_deadline(self, id, it->second);
      },
      [self](claim_atom, const std::string& node, const std::string& user, bool on) {
        auto it = self->state.members.find(node);
        auto& sender = self->current_sender();
        if (it == self->state.members.end() || !sender || sender->node() != it->second.node)
          return;
        auto& claims = it->second.claims;
        if (on ? claims.insert(user).second : claims.erase(user) > 0)
          send_view(self);
      },
      [self](leave_atom, const std::string& id) {
        auto it = self->state.members.find(id);
        auto& sender = self->current_sender();
        if (it != self->state.members.end() && sender && sender->node() == it->second.node)
          drop(self, id, true, "left");
      },
      // -- this node ------------------------------------------------------------------------
      [self](claim_atom, const std::string& user, bool on) {
        auto& st = self->state;
        if (!from_here(self) ||
            !(on ? st.own_claims.insert(user).second : st.own_claims.erase(user) > 0))
          return;
        for (auto& [id, m] : st.members)
          self->send(m.cluster, claim_atom_v, st.cfg.node_id, user, on);
        send_view(self);
      },
      [self](listen_atom) -> caf::result<std::uint16_t> {
        auto& st = self->state;
        if (!from_here(self) || st.listening)
          return make_caf_error(errc::invalid_argument, "cluster: listen_atom not expected");
        auto rp = self->make_response_promise<std::uint16_t>();
        auto where = *parse_host_port(st.cfg.listen); // validated
        self->request(st.middleman, caf::infinite, caf::publish_atom_v, where.port,
                      caf::actor_cast<caf::strong_actor_ptr>(self), std::set<std::string>{},
                      where.host, true)
            .then(
                [self, rp](std::uint16_t port) mutable {
                  auto& st = self->state;
                  st.listening = true;
                  log().info("cluster: node '{}' listening on {} (port {}, mutual TLS)",
                             st.cfg.node_id, st.cfg.listen, port);
                  self->send(self, beat_atom_v);
                  for (std::size_t i = 0; i < st.links.size(); ++i)
                    dial(self, i);
                  rp.deliver(port);
                },
                [self, rp](caf::error& err) mutable {
                  rp.deliver(make_caf_error(errc::invalid_argument,
                                            "cluster.listen " + self->state.cfg.listen +
                                                ": cannot listen: " + self->system().render(err)));
                });
        return rp;
      },
      [self](stats_atom) -> caf::result<cluster_stats> {
        if (!from_here(self))
          return make_caf_error(errc::invalid_argument, "cluster: stats of this node only");
        auto& st = self->state;
        cluster_stats out;
        out.node_id = st.cfg.node_id;
        out.members = member_ids(self);
        for (auto& l : st.links)
          out.peers.push_back(l.stats);
        out.membership_changes = st.membership_changes;
        out.directory = directory(self);
        out.claims = out.directory.size();
        return out;
      },
      [self](leave_atom) -> caf::result<void> {
        if (!from_here(self))
          return make_caf_error(errc::invalid_argument, "cluster: leave of this node only");
        auto rp = self->make_response_promise<void>();
        if (self->state.leaving)
          deliver_void(rp);
        else
          leave(self, rp);
        return rp;
      },
      [self](dial_atom, std::uint64_t i, std::uint64_t generation) {
        auto& links = self->state.links;
        if (from_here(self) && i < links.size() && links[i].generation == generation)
          dial(self, i);
      },
      [self](beat_atom) {
        auto& st = self->state;
        if (!from_here(self) || st.leaving)
          return;
        for (auto& [id, m] : st.members)
          self->send(m.cluster, ping_atom_v);
        self->delayed_send(self, st.cfg.heartbeat_interval, beat_atom_v);
      },
      [self](deadline_atom, const std::string& id, std::uint64_t beat) {
        auto& st = self->state;
        auto it = st.members.find(id);
        if (!from_here(self) || st.leaving || it == st.members.end() || it->second.beat != beat)
          return;
        drop(self, id, false,
             "no heartbeat answer within " + std::to_string(st.cfg.heartbeat_timeout.count()) +
                 " ms");
      },
  };
}

} // namespace

cluster_actor spawn_cluster(caf::actor_system& sys, cluster_config cfg, supervisor_actor supervisor,
                            view_sink views) {
  return sys.spawn(cluster_behavior, std::move(cfg), std::move(supervisor), std::move(views));
}

} // namespace sshpool
