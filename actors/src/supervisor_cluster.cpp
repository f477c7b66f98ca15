// The supervisor's cluster side (see supervisor_state.hpp): with no view of the cluster
// actor every call is served here, as on a single node. With a view, a call for a user from
// a local sender goes to the user's owner (its claim, else rendezvous hashing: routing.hpp);
// calls from other nodes' supervisors are always served here (the sender decided that this
// node owns the user: no ping-pong).
//
// A remote acquire:
//   sent to the owner ── lease ──► a relay for its connection, the lessee gets the relay
//        │ ── error ──► the owner's error, errc kept (no answer within the acquire
//        │              deadline: timeout)
//        └─ the owner's node leaves the view ──► sent once more to the new owner if the
//           deadline allows (this node included), else connection_lost
//
// A relayed lease's release goes to its owner and retires its relay at once (the relay
// finishes what was sent before, then quits; a second release finds no relay: not_leased).
// Leases served to another node are kept per that node's supervisor, which is monitored:
// when it goes down (also when the connection to its node is lost), its leases go back to
// their pools.
//
// Claims: a pool tells when its user's agents go 0→1 (claim) and 1→0 (unclaim). On a new
// view, users this node still has leases or waiters for but no longer owns by hashing are
// claimed, and re-checked every hold_tick until idle, then unclaimed:
//   owned ── view: hashed elsewhere, busy ──► held (claimed) ── idle, or hashed here ──► let go
#include <algorithm>

#include <caf/all.hpp>

#include "rendezvous.hpp"
#include "routing.hpp"
#include "sshpool/ssh/log.hpp"
#include "supervisor_state.hpp"

namespace sshpool {

namespace {

using self_ptr = supervisor_ptr;

/// How often users held after a rebalance are re-checked.
constexpr auto hold_tick = std::chrono::milliseconds(250);
/// How long a close or a release may take on the owner node.
constexpr auto remote_call_timeout = std::chrono::seconds(30);

cluster_state& cluster(self_ptr self) {
  auto& st = self->state;
  if (!st.cluster)
    st.cluster = std::make_unique<cluster_state>();
  return *st.cluster;
}

/// The supervisor of live member `node`; null if it is not (or no longer) in the view.
supervisor_actor supervisor_of(self_ptr self, const std::string& node) {
  auto& view = *self->state.cluster->view;
  auto i = view.supervisors.find(node);
  return i != view.supervisors.end() ? i->second : supervisor_actor{};
}

/// Gives leases served to another node back to their pools.
void return_leases(self_ptr self, const std::vector<lease>& leases) {
  for (auto& l : leases)
    if (auto pool = self->state.pools.find(l.user); pool != self->state.pools.end())
      self->request(pool->second, caf::infinite, release_atom_v, l.user, l)
          .then([] {}, [](caf::error&) {});
}

void send_claim(self_ptr self, const std::string& user, bool claimed) {
  auto& cl = *self->state.cluster;
  if (cl.view && cl.view->cluster)
    self->send(cl.view->cluster, claim_atom_v, user, claimed);
}

void arm_hold_tick(self_ptr self) {
  auto& cl = *self->state.cluster;
  if (cl.held.empty() || cl.hold_tick_armed)
    return;
  cl.hold_tick_armed = true;
  self->delayed_send(self, hold_tick, claim_atom_v);
}

// -- remote acquires --------------------------------------------------------------------------

void fail_acquire(self_ptr self, std::uint64_t seq, caf::error err) {
  auto& cl = *self->state.cluster;
  auto i = cl.acquires.find(seq);
  if (i == cl.acquires.end())
    return;
  ++cl.remote_acquire_failures;
  i->second.rp.deliver(std::move(err));
  cl.acquires.erase(i);
}

/// The owner granted a lease: the lessee gets it with a relay as its connection.
void granted(self_ptr self, std::uint64_t seq, std::uint32_t attempt, supervisor_actor owner,
             lease& l) {
  auto& cl = *self->state.cluster;
  auto i = cl.acquires.find(seq);
  if (i == cl.acquires.end() || i->second.attempt != attempt) {
    // Nobody waits for it any more (failed over, or the engine stops): it goes back.
    self->request(owner, remote_call_timeout, release_atom_v, l.user, l)
        .then([] {}, [](caf::error&) {});
    return;
  }
  auto& a = i->second;
  auto relay = spawn_relay(self, l.connection, l.user, a.node);
  self->monitor(relay);
  auto local = l;
  local.connection = caf::actor_cast<connection_actor>(relay);
  local.connection_id = relay.id();
  cl.relays.emplace(relay.address(), relayed_lease{a.node, std::move(l), relay});
  a.rp.deliver(std::move(local));
  cl.acquires.erase(i);
}

/// Sends (again) the acquire `seq` to its owner node, with what is left of its deadline.
void send_acquire(self_ptr self, std::uint64_t seq) {
  auto& a = self->state.cluster->acquires.at(seq);
  auto owner = supervisor_of(self, a.node);
  if (!owner) {
    fail_acquire(self, seq,
                 make_caf_error(errc::connection_lost, "node " + a.node + " is unreachable"));
    return;
  }
  auto left = a.deadline - self->clock().now();
  if (left <= caf::timespan::zero()) {
    fail_acquire(self, seq,
                 make_caf_error(errc::timeout,
                                "no lease from node " + a.node + " within the acquire deadline"));
    return;
  }
  auto attempt = a.attempt;
  self->request(owner, left, acquire_atom_v, a.user)
      .then([self, seq, attempt, owner](lease& l) { granted(self, seq, attempt, owner, l); },
            [self, seq, attempt](caf::error& err) {
              auto& cl = *self->state.cluster;
              auto i = cl.acquires.find(seq);
              if (i != cl.acquires.end() && i->second.attempt == attempt)
                fail_acquire(self, seq, relayed_error(err));
            });
}

/// Acquires of a node that left: once more on the new owner if the deadline allows.
void fail_over_acquires(self_ptr self, const std::vector<std::string>& gone) {
  auto& cl = *self->state.cluster;
  auto& view = *cl.view;
  std::vector<std::uint64_t> affected;
  for (auto& [seq, a] : cl.acquires)
    if (std::binary_search(gone.begin(), gone.end(), a.node))
      affected.push_back(seq);
  auto now = self->clock().now();
  for (auto seq : affected) {
    auto& a = cl.acquires.at(seq);
    auto owner = routing::owner(a.user, view.members, view.claims);
    if (a.attempt > 0 || now >= a.deadline || !owner) {
      fail_acquire(self, seq,
                   make_caf_error(errc::connection_lost, "node " + a.node + " left the cluster"));
      continue;
    }
    log().info("acquire of '{}': node {} left, asking {}", a.user, a.node, *owner);
    ++a.attempt;
    if (*owner == view.self) {
      auto rp = std::move(a.rp);
      auto user = std::move(a.user);
      cl.acquires.erase(seq);
      hold_or_route(self, user, std::move(rp), [self, user](caf::typed_response_promise<lease>& p) {
        acquire_into(self, user, p);
      });
    } else {
      a.node = *owner;
      send_acquire(self, seq);
    }
  }
}

/// An acquire from another node: served here, the lease kept on that node's books.
caf::result<lease> serve_acquire(self_ptr self, const std::string& user) {
  auto& cl = *self->state.cluster;
  auto requester = caf::actor_cast<caf::actor_addr>(self->current_sender());
  if (cl.lessees.count(requester) == 0) {
    self->monitor(requester);
    cl.lessees.emplace(requester, std::vector<lease>{});
  }
  ++cl.served_acquires;
  auto route = [self, user, requester](caf::typed_response_promise<lease>& rp) {
    auto& st = self->state;
    if (st.draining || st.stopping) {
      rp.deliver(make_caf_error(not_admitting(st)));
      return;
    }
    auto pool = pool_for(self, user);
    if (!pool) {
      rp.deliver(make_caf_error(pool.error()));
      return;
    }
    self->request(*pool, caf::infinite, acquire_atom_v, user)
        .then(
            [self, rp, requester, pool = *pool](lease& l) mutable {
              auto& cl = *self->state.cluster;
              auto i = cl.lessees.find(requester);
              if (i == cl.lessees.end()) {
                // Its node went down meanwhile: the lease goes straight back.
                self->request(pool, caf::infinite, release_atom_v, l.user, l)
                    .then([] {}, [](caf::error&) {});
                rp.deliver(make_caf_error(errc::connection_lost, "the requesting node is gone"));
                return;
              }
              i->second.push_back(l);
              rp.deliver(std::move(l));
            },
            [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  };
  return hold_or_route(self, user, self->make_response_promise<lease>(), route);
}

// -- calls routed to the owner ----------------------------------------------------------------

/// The owner of `user` when it is another node and the sender is local; else none.
std::optional<std::string> remote_owner(self_ptr self, const std::string& user) {
  auto& view = *self->state.cluster->view;
  auto owner = routing::owner(user, view.members, view.claims);
  if (!owner || *owner == view.self || from_remote(self))
    return std::nullopt;
  return owner;
}

/// Sends a call about `user` to its owner node and answers with its reply.
template <class T, class... Ts>
std::optional<caf::result<T>> to_owner(self_ptr self, const std::string& user,
                                       caf::timespan timeout, Ts... xs) {
  auto owner = remote_owner(self, user);
  if (!owner)
    return std::nullopt;
  auto sup = supervisor_of(self, *owner);
  if (!sup)
    return caf::result<T>{
        make_caf_error(errc::connection_lost, "node " + *owner + " is unreachable")};
  auto rp = self->make_response_promise<T>();
  self->request(sup, timeout, std::move(xs)...)
      .then([rp](T& value) mutable { rp.deliver(std::move(value)); },
            [rp](caf::error& err) mutable { rp.deliver(relayed_error(err)); });
  return caf::result<T>{rp};
}

// -- views ------------------------------------------------------------------------------------

/// Claims the users this node no longer owns by hashing but still serves (until idle).
void hold_busy_users(self_ptr self) {
  auto& cl = *self->state.cluster;
  auto& view = *cl.view;
  for (auto& [user, pool] : self->state.pools) {
    if (cl.held.count(user) > 0 || cl.agent_users.count(user) > 0 ||
        !routing::must_hold(user, view.self, view.members, view.claims))
      continue;
    self->request(pool, hold_tick * 4, stats_atom_v)
        .then(
            [self, user = user](user_stats& us) {
              auto& cl = *self->state.cluster;
              if (us.leases + us.waiters == 0 || !cl.held.insert(user).second)
                return;
              log().info("user '{}' moved to another node: held here until idle", user);
              send_claim(self, user, true);
              arm_hold_tick(self);
            },
            [](caf::error&) {});
  }
}

void let_go(self_ptr self, const std::string& user) {
  auto& cl = *self->state.cluster;
  if (cl.held.erase(user) == 0)
    return;
  if (cl.agent_users.count(user) == 0) {
    log().info("user '{}' is idle here: handed to its owner", user);
    send_claim(self, user, false);
  }
}

} // namespace

bool from_remote(supervisor_ptr self) {
  auto& sender = self->current_sender();
  return sender && sender->node() != self->node();
}

bool from_peer(supervisor_ptr self) {
  if (!self->state.cluster || !from_remote(self))
    return false;
  log().warn("supervisor: refused a local-only call from node {}",
             caf::to_string(self->current_sender()->node()));
  return true;
}

caf::error local_only() {
  return make_caf_error(errc::invalid_argument, "a call of this node only");
}

std::optional<caf::result<lease>> cluster_acquire(supervisor_ptr self, const std::string& user) {
  auto& st = self->state;
  auto& cl = *st.cluster;
  if (from_remote(self))
    return serve_acquire(self, user);
  auto& view = *cl.view;
  auto owner = routing::owner(user, view.members, view.claims);
  if (!owner || *owner == view.self)
    return std::nullopt;
  if (st.draining || st.stopping)
    return caf::result<lease>{make_caf_error(not_admitting(st))};
  ++cl.remote_acquires;
  auto rp = self->make_response_promise<lease>();
  auto seq = ++cl.next_acquire;
  auto deadline = self->clock().now() + st.ctx->pool.acquire_timeout + st.ctx->pool.connect_timeout;
  cl.acquires.emplace(seq, remote_acquire{user, rp, std::move(*owner), deadline, 0});
  send_acquire(self, seq);
  return caf::result<lease>{rp};
}

std::optional<caf::result<void>> cluster_release(supervisor_ptr self, const std::string& user,
                                                 const lease& l) {
  auto& cl = *self->state.cluster;
  if (from_remote(self)) {
    // A served lease comes back: off that node's books (the pool answers as today).
    auto served = cl.lessees.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
    if (served != cl.lessees.end() && l.user == user) {
      auto& leases = served->second;
      leases.erase(std::remove_if(leases.begin(), leases.end(),
                                  [&](const lease& x) {
                                    return x.id == l.id && x.connection_id == l.connection_id;
                                  }),
                   leases.end());
    }
    return std::nullopt;
  }
  auto i = cl.relays.find(l.connection.address());
  if (i == cl.relays.end())
    return std::nullopt;
  if (l.user != user)
    return caf::result<void>{make_caf_error(
        errc::wrong_user, "the lease belongs to user '" + l.user + "', not to '" + user + "'")};
  auto relayed = std::move(i->second);
  cl.relays.erase(i);
  self->demonitor(relayed.relay.address());
  self->send(relayed.relay, retire_atom_v);
  auto owner = supervisor_of(self, relayed.node);
  if (!owner)
    return caf::result<void>{caf::unit}; // its node left: the lease went with it
  auto rp = self->make_response_promise<void>();
  self->request(owner, remote_call_timeout, release_atom_v, user, relayed.remote)
      .then([rp]() mutable { static_cast<caf::response_promise&>(rp).deliver(caf::unit); },
            [rp](caf::error& err) mutable { rp.deliver(relayed_error(err)); });
  return caf::result<void>{rp};
}

std::optional<caf::result<std::uint64_t>> cluster_close(supervisor_ptr self,
                                                        const std::string& user) {
  return to_owner<std::uint64_t>(self, user, remote_call_timeout, close_atom_v, user);
}

std::optional<caf::result<shutdown_report>> cluster_drain(supervisor_ptr self,
                                                          const std::string& user) {
  auto timeout = caf::timespan{self->state.ctx->pool.shutdown_grace_period} + remote_call_timeout;
  return to_owner<shutdown_report>(self, user, timeout, drain_atom_v, user);
}

void on_view(supervisor_ptr self, cluster_view& view) {
  auto& cl = cluster(self);
  auto old = std::move(cl.view);
  bool new_cluster_actor = !old || old->cluster != view.cluster;
  cl.view = std::move(view);
  // Acquires waiting for a node that left go to the new owner. Relays and the leases served
  // to other nodes are left alone: they follow their monitors (CAF kills a node's proxies
  // when the connection to it is lost; the cluster's middleman heartbeat closes a silent one
  // within the heartbeat deadline), so a node that left to drain finishes its calls.
  if (old) {
    auto gone = routing::departed(old->members, cl.view->members);
    if (!gone.empty())
      fail_over_acquires(self, gone);
  }
  if (new_cluster_actor) {
    for (auto& user : cl.agent_users)
      send_claim(self, user, true);
    for (auto& user : cl.held)
      send_claim(self, user, true);
  }
  hold_busy_users(self);
}

void on_agents(supervisor_ptr self, const std::string& user, bool present) {
  auto& cl = cluster(self);
  if (present) {
    if (cl.agent_users.insert(user).second)
      send_claim(self, user, true);
  } else if (cl.agent_users.erase(user) > 0 && cl.held.count(user) == 0) {
    send_claim(self, user, false);
  }
}

void check_held(supervisor_ptr self) {
  auto& cl = *self->state.cluster;
  cl.hold_tick_armed = false;
  if (!cl.view)
    return;
  auto& view = *cl.view;
  auto held = cl.held;
  for (auto& user : held) {
    auto hashed = rendezvous::owner(user, view.members);
    auto pool = self->state.pools.find(user);
    if (!hashed || *hashed == view.self || pool == self->state.pools.end()) {
      let_go(self, user);
      continue;
    }
    self->request(pool->second, hold_tick * 4, stats_atom_v)
        .then(
            [self, user](user_stats& us) {
              if (us.leases + us.waiters == 0)
                let_go(self, user);
            },
            [](caf::error&) {});
  }
  // Answers come before the next tick (each within 4 ticks, or the user is checked again).
  arm_hold_tick(self);
}

bool cluster_down(supervisor_ptr self, const caf::down_msg& dm) {
  auto& cl = *self->state.cluster;
  // A relay that broke (its remote connection or node gone) before its lessee released it:
  // the entry stays until that release, which still goes to the owner, as the lease of a
  // lost local connection is still released to its pool.
  if (cl.relays.count(dm.source) > 0)
    return true;
  auto served = cl.lessees.find(dm.source);
  if (served == cl.lessees.end())
    return false;
  if (!served->second.empty())
    log().info("a node's supervisor is down: {} leases it held go back", served->second.size());
  return_leases(self, served->second);
  cl.lessees.erase(served);
  return true;
}

void cluster_stop(supervisor_ptr self) {
  auto& cl = *self->state.cluster;
  auto err = make_caf_error(not_admitting(self->state));
  auto acquires = std::move(cl.acquires);
  cl.acquires.clear();
  for (auto& [seq, a] : acquires)
    a.rp.deliver(err);
  for (auto& [addr, r] : cl.relays) {
    self->send(r.relay, lost_atom_v, err);
    self->send(r.relay, retire_atom_v);
  }
}

} // namespace sshpool
