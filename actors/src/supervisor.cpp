// The supervisor actor: routes calls to one user_pool per user (spawned on demand and
// monitored), hands out the permits the pools need to create connections (the global
// connection cap and the handshake rate apply here, in one place; each pool spawns and
// monitors its own connection actors), and fans out stats, eviction and drains.
//
//            drain_atom                     every pool drained        stop_atom
//   running ───────────► draining ─────────────────────────► drained ──────────► stopped
//     │ acquire / release / close / stats / evict / permit       (acquire and permit get
//     │ idle_atom(user) ──► retiring(user) ──► retired or kept    shutting_down from draining)
//     └──► (routes; calls for a retiring user wait until its pool answered)
//
// Users: endpoint_atom sets or replaces one (the pool retires the old endpoint's
// connections); remove_atom forgets it at once and drains its pool out of the routing:
//   known ── remove_atom ──► unknown (calls: unknown_user), its pool draining ── drained ──►
//   pool stopped, the report to the caller (at the grace period the pool is forced)
//
// Permits:      permit_atom                 a token (max_handshakes_per_second; token_atom
//   pool ─────────────────────► queued ──────────────────────────────────────────► granted
//                  withdraw_atom │ pool down  when the next one is due) and below        │
//                                ▼            max_connections_total, else refused        │
//                      (dropped, answered)                       return_atom or pool down ▼
//                                                                               (given back)
//
// Agents (reverse mode): the listener's thread sends agent_atom; the supervisor refuses the
// agent (told why) if the user has no agent endpoint, the engine drains or stops, or
// max_connections_total permits are held; else it takes a permit for it at once (its
// handshake is done: no token of the handshake rate, which paces the engine's own dialing;
// the listener bounds its handshakes with max_startups) and routes it to the user's pool,
// spawned if needed, which makes it a connection or refuses it and gives the permit back.
//
//   agent_atom ──► refused ─ or ─► permit held ──► pool: connection ─ or ─► refused,
//                                                        return_atom
//
// Pool retirement: a pool left with nothing sends idle_atom; the supervisor asks it to
// retire and holds that user's calls meanwhile, so no call ever reaches a pool that quit.
//
// Cluster (supervisor_cluster.cpp): without a view (view_atom from the cluster actor) every
// call is served here, at a single node's cost (one pointer test). With one, acquire,
// release, close and drain of a user from a local sender go to the user's owner node:
//   no view ──► local          view ──► owner is this node, or the sender is another node
//                                       ──► local (another node's leases tracked)
//                                  └──► owner elsewhere ──► its supervisor; leases via relays
// Every other call from another node is refused (from_peer: invalid_argument).
// Services see supervisor_actor (sshpool/messages.hpp); the pools' messages and the token
// timer are supervisor_impl's (internal_messages.hpp).
#include "supervisor.hpp"

#include <algorithm>

#include <caf/all.hpp>

#include "handlers.hpp"
#include "sshpool/ssh/log.hpp"
#include "supervisor_state.hpp"
#include "user_pool.hpp"

namespace sshpool {

namespace {

using time_point = caf::actor_clock::time_point;
using self_ptr = supervisor_ptr;

void maybe_finish_stop(self_ptr self) {
  auto& st = self->state;
  // A pool quits once its connection actors are down.
  if (!st.stopping || !st.pools.empty())
    return;
  for (auto& rp : st.stop_promises)
    static_cast<caf::response_promise&>(rp).deliver(caf::unit);
  st.stop_promises.clear();
  self->quit();
}

/// Fans a request out to every pool and folds the answers into one reply.
template <class Result, class Part, class Timeout, class Fold, class... Ts>
caf::result<Result> fan_out(self_ptr self, Timeout timeout, Result init, Fold fold, Ts... xs) {
  auto& st = self->state;
  auto rp = self->make_response_promise<Result>();
  if (st.pools.empty()) {
    rp.deliver(std::move(init));
    return rp;
  }
  auto acc = std::make_shared<Result>(std::move(init));
  auto remaining = std::make_shared<std::size_t>(st.pools.size());
  auto done = [rp, acc, remaining]() mutable {
    if (--*remaining == 0)
      rp.deliver(std::move(*acc));
  };
  for (auto& [user, pool] : st.pools)
    self->request(pool, timeout, xs...)
        .then(
            [acc, fold, done](Part& part) mutable {
              fold(*acc, part);
              done();
            },
            [done](caf::error&) mutable { done(); });
  return rp;
}

/// Tells an agent why it is not taken.
void refuse_agent(agent_offer& offer, const std::string& why) {
  log().warn("agent of '{}' refused: {}", offer.user(), why);
  offer.refuse(why);
}

/// An agent of `offer.user()` dialed in: a permit for it and its pool, or a refusal.
void admit_agent(self_ptr self, agent_offer& offer) {
  auto& st = self->state;
  auto& user = offer.user();
  auto ep = st.endpoints.find(user);
  if (st.draining || st.stopping)
    return refuse_agent(offer, agent_goodbye);
  if (ep == st.endpoints.end() || ep->second.mode != endpoint_mode::agent)
    return refuse_agent(offer, "user " + user + " is not an agent user");
  if (st.permits_held >= st.ctx->pool.max_connections_total)
    return refuse_agent(offer, "the gateway holds its maximum of " +
                                   std::to_string(st.ctx->pool.max_connections_total) +
                                   " connections");
  auto pool = pool_for(self, user);
  if (!pool)
    return refuse_agent(offer, pool.error().message());
  ++st.permits[pool->address()];
  ++st.permits_held;
  self->send(*pool, agent_atom_v, std::move(offer));
}

/// Forgets `user`'s endpoint and takes its pool out of the routing at once (later calls find
/// neither: unknown_user), then drains that pool (cut at the grace period if the engine
/// forces) and stops it; `rp` gets the drain's report.
void remove_user(self_ptr self, const std::string& user,
                 caf::typed_response_promise<shutdown_report>& rp) {
  auto& st = self->state;
  if (st.endpoints.erase(user) == 0) {
    rp.deliver(make_caf_error(errc::unknown_user, "no endpoint is set for user '" + user + "'"));
    return;
  }
  auto pool = st.pools.find(user);
  if (pool == st.pools.end()) {
    log().info("user '{}' removed (no connection)", user);
    rp.deliver(shutdown_report{});
    return;
  }
  // pool_users keeps it: its down message still gives its permits back.
  auto handle = pool->second;
  st.pools.erase(pool);
  log().info("user '{}' removed: draining its pool", user);
  if (st.ctx->pool.force_after_grace_period)
    self->delayed_send(handle, st.ctx->pool.shutdown_grace_period, force_atom_v);
  self->request(handle, caf::infinite, drain_atom_v)
      .then(
          [self, handle, rp](shutdown_report& report) mutable {
            self->send(handle, stop_atom_v);
            rp.deliver(std::move(report));
          },
          [self, handle, rp](caf::error& err) mutable {
            self->send(handle, stop_atom_v);
            rp.deliver(std::move(err));
          });
}

void add_report(shutdown_report& acc, const shutdown_report& part) {
  acc.connections_closed += part.connections_closed;
  acc.in_flight_at_start += part.in_flight_at_start;
  acc.completed_during_drain += part.completed_during_drain;
  acc.cut += part.cut;
  acc.forced = acc.forced || part.forced;
}

// -- handshake rate ---------------------------------------------------------------------------

void refill(self_ptr self) {
  auto& st = self->state;
  auto now = self->clock().now();
  auto rate = static_cast<double>(st.ctx->pool.max_handshakes_per_second);
  auto elapsed = std::chrono::duration<double>(now - st.refilled).count();
  st.tokens = std::min(rate, st.tokens + elapsed * rate);
  st.refilled = now;
}

/// Answers `p`: a permit for one more connection, unless the engine stops admitting or holds
/// max_connections_total of them.
void grant(self_ptr self, permit_request& p) {
  auto& st = self->state;
  if (st.draining || st.stopping) {
    p.rp.deliver(make_caf_error(not_admitting(st)));
    return;
  }
  if (st.permits_held >= st.ctx->pool.max_connections_total) {
    p.rp.deliver(make_caf_error(errc::pool_exhausted,
                                "the engine holds its maximum of " +
                                    std::to_string(st.ctx->pool.max_connections_total) +
                                    " connections (max_connections_total)"));
    return;
  }
  ++st.permits[p.pool];
  ++st.permits_held;
  static_cast<caf::response_promise&>(p.rp).deliver(caf::unit);
}

/// Answers the queued requests of `pool` (or every one, if null) with `err`.
void drop_requests(self_ptr self, const caf::actor_addr& pool, const error& err) {
  auto& q = self->state.permit_queue;
  auto keep =
      std::stable_partition(q.begin(), q.end(), [&](auto& p) { return pool && p.pool != pool; });
  for (auto i = keep; i != q.end(); ++i)
    i->rp.deliver(make_caf_error(err));
  q.erase(keep, q.end());
}

/// Takes back the permits `pool` holds (all of them: `all`; else one).
void give_back(self_ptr self, const caf::actor_addr& pool, bool all) {
  auto& st = self->state;
  auto i = st.permits.find(pool);
  if (i == st.permits.end())
    return;
  auto n = all ? i->second : 1;
  st.permits_held -= n;
  i->second -= n;
  if (i->second == 0)
    st.permits.erase(i);
}

/// Grants queued permits as tokens allow; arms a tick for the next token.
void run_permit_queue(self_ptr self) {
  auto& st = self->state;
  refill(self);
  while (!st.permit_queue.empty() && st.tokens >= 1.0) {
    st.tokens -= 1.0;
    auto p = std::move(st.permit_queue.front());
    st.permit_queue.pop_front();
    grant(self, p);
  }
  if (!st.permit_queue.empty() && !st.tick_armed) {
    st.tick_armed = true;
    auto wait = std::chrono::duration<double>(
        (1.0 - st.tokens) / static_cast<double>(st.ctx->pool.max_handshakes_per_second));
    // Rounded up, so that the tick finds a whole token.
    self->delayed_send(
        self, std::chrono::duration_cast<caf::timespan>(wait) + std::chrono::microseconds(1),
        token_atom_v);
  }
}

supervisor_impl::behavior_type supervisor_behavior(self_ptr self,
                                                   std::shared_ptr<const actor_context> ctx) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.tokens = static_cast<double>(st.ctx->pool.max_handshakes_per_second);
  st.refilled = self->clock().now();
  install_exception_handler(self, [self](const std::string& what) {
    drop_requests(self, {}, error{errc::internal, what}); // pools waiting for permits learn it
    for (auto& rp : self->state.stop_promises)
      rp.deliver(make_caf_error(errc::internal, what));
    self->state.stop_promises.clear();
  });
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& st = self->state;
    if (st.cluster && cluster_down(self, dm))
      return;
    auto i = st.pool_users.find(dm.source);
    if (i != st.pool_users.end()) {
      auto p = st.pools.find(i->second);
      if (p != st.pools.end() && p->second.address() == dm.source)
        st.pools.erase(p);
      if (dm.reason && dm.reason != caf::exit_reason::user_shutdown)
        log().error("pool of '{}' ended: {}", i->second, caf::to_string(dm.reason));
      st.pool_users.erase(i);
    }
    // What the pool asked for or held goes with it (its connections end with it).
    drop_requests(self, dm.source, error{errc::shutting_down, "the pool is gone"});
    give_back(self, dm.source, true);
    maybe_finish_stop(self);
  });
  return {
      [self](acquire_atom, const std::string& user) -> caf::result<lease> {
        if (auto ok = validate_user(user); !ok)
          return make_caf_error(ok.error());
        if (routing_on(self->state))
          if (auto routed = cluster_acquire(self, user))
            return std::move(*routed);
        auto route = [self, user](caf::typed_response_promise<lease>& rp) {
          acquire_into(self, user, rp);
        };
        return hold_or_route(self, user, self->make_response_promise<lease>(), route);
      },
      [self](release_atom, const std::string& user, const lease& l) -> caf::result<void> {
        if (routing_on(self->state))
          if (auto routed = cluster_release(self, user, l))
            return std::move(*routed);
        auto route = [self, user, l](caf::typed_response_promise<void>& rp) {
          auto& st = self->state;
          auto pool = st.pools.find(user);
          if (pool != st.pools.end())
            rp.delegate(pool->second, release_atom_v, user, l);
          else if (l.user != user)
            rp.deliver(make_caf_error(errc::wrong_user, "the lease belongs to user '" + l.user +
                                                            "', not to '" + user + "'"));
          else
            rp.deliver(make_caf_error(errc::not_leased, "user '" + user + "' holds no lease"));
        };
        return hold_or_route(self, user, self->make_response_promise<void>(), route);
      },
      [self](close_atom, const std::string& user) -> caf::result<std::uint64_t> {
        if (routing_on(self->state))
          if (auto routed = cluster_close(self, user))
            return std::move(*routed);
        auto route = [self, user](caf::typed_response_promise<std::uint64_t>& rp) {
          auto pool = self->state.pools.find(user);
          if (pool == self->state.pools.end())
            rp.deliver(std::uint64_t{0});
          else
            rp.delegate(pool->second, close_atom_v, user);
        };
        return hold_or_route(self, user, self->make_response_promise<std::uint64_t>(), route);
      },
      [self](stats_atom) -> caf::result<pool_stats> {
        if (from_peer(self))
          return local_only();
        pool_stats init;
        init.user_count = self->state.pools.size();
        return fan_out<pool_stats, user_stats>(
            self, std::chrono::seconds(5), std::move(init),
            [](pool_stats& acc, user_stats& us) {
              acc.total_connections += us.connections;
              acc.connecting += us.connecting;
              acc.idle += us.idle;
              acc.leases += us.leases;
              acc.waiters += us.waiters;
              acc.users.push_back(std::move(us));
            },
            stats_atom_v);
      },
      [self](endpoint_atom, const std::string& user, endpoint& ep) -> caf::result<void> {
        if (from_peer(self))
          return local_only();
        auto& st = self->state;
        if (auto ok = validate_user(user); !ok)
          return make_caf_error(ok.error());
        if (auto ok = validate(ep); !ok)
          return make_caf_error(ok.error());
        auto& known = st.endpoints[user];
        if (known == ep)
          return caf::unit; // the same again: its connections stay
        if (auto pool = st.pools.find(user); pool != st.pools.end())
          self->send(pool->second, endpoint_atom_v, ep);
        known = std::move(ep);
        return caf::unit;
      },
      [self](remove_atom, const std::string& user) -> caf::result<shutdown_report> {
        if (from_peer(self))
          return local_only();
        auto route = [self, user](caf::typed_response_promise<shutdown_report>& rp) {
          remove_user(self, user, rp);
        };
        return hold_or_route(self, user, self->make_response_promise<shutdown_report>(), route);
      },
      [self](stop_atom) -> caf::result<void> {
        if (from_peer(self))
          return local_only();
        auto& st = self->state;
        auto rp = self->make_response_promise<void>();
        st.stop_promises.push_back(rp);
        if (!st.stopping) {
          st.stopping = true;
          log().info("stopping: {} pools, {} connections", st.pools.size(), st.permits_held);
          drop_requests(self, {}, not_admitting(st));
          if (st.cluster)
            cluster_stop(self);
          for (auto& [user, held] : st.retiring)
            for (auto& route : held)
              route(); // routes see `stopping` and answer shutting_down
          st.retiring.clear();
          for (auto& [user, pool] : st.pools)
            self->send(pool, stop_atom_v);
        }
        maybe_finish_stop(self);
        return rp;
      },
      [self](evict_atom, caf::timespan max_idle) -> caf::result<std::uint64_t> {
        if (from_peer(self))
          return local_only();
        return fan_out<std::uint64_t, std::uint64_t>(
            self, std::chrono::seconds(30), std::uint64_t{0},
            [](std::uint64_t& acc, std::uint64_t n) { acc += n; }, evict_atom_v, max_idle);
      },
      [self](drain_atom) -> caf::result<shutdown_report> {
        if (from_peer(self))
          return local_only();
        auto& st = self->state;
        if (!st.draining) {
          st.draining = true;
          log().info("draining: {} pools, {} connections", st.pools.size(), st.permits_held);
          drop_requests(self, {}, not_admitting(st));
        }
        // Calls held for retiring pools run once those answer; they then see `draining`.
        return fan_out<shutdown_report, shutdown_report>(self, caf::infinite, shutdown_report{},
                                                         add_report, drain_atom_v);
      },
      [self](force_atom) {
        if (from_peer(self))
          return;
        for (auto& [user, pool] : self->state.pools)
          self->send(pool, force_atom_v);
      },
      [self](drain_atom, const std::string& user) -> caf::result<shutdown_report> {
        if (routing_on(self->state))
          if (auto routed = cluster_drain(self, user))
            return std::move(*routed);
        auto route = [self, user](caf::typed_response_promise<shutdown_report>& rp) {
          auto pool = self->state.pools.find(user);
          if (pool == self->state.pools.end())
            rp.deliver(shutdown_report{});
          else
            rp.delegate(pool->second, drain_atom_v);
        };
        return hold_or_route(self, user, self->make_response_promise<shutdown_report>(), route);
      },
      [self](permit_atom) -> caf::result<void> {
        if (from_peer(self))
          return local_only();
        // The sender first: the promise takes it from the message.
        auto pool = caf::actor_cast<caf::actor_addr>(self->current_sender());
        auto rp = self->make_response_promise<void>();
        self->state.permit_queue.push_back(permit_request{rp, std::move(pool)});
        run_permit_queue(self);
        return rp;
      },
      [self](withdraw_atom) {
        if (from_peer(self))
          return;
        drop_requests(self, caf::actor_cast<caf::actor_addr>(self->current_sender()),
                      error{errc::shutting_down, "withdrawn"});
      },
      [self](return_atom) {
        if (from_peer(self))
          return;
        give_back(self, caf::actor_cast<caf::actor_addr>(self->current_sender()), false);
      },
      [self](idle_atom, const std::string& user) {
        if (from_peer(self))
          return;
        auto& st = self->state;
        auto pool = st.pools.find(user);
        if (pool == st.pools.end() || st.retiring.count(user) > 0 || st.stopping)
          return;
        st.retiring.emplace(user, std::vector<std::function<void()>>{});
        auto handle = pool->second;
        auto flush = [self, user] {
          auto& st = self->state;
          auto held = std::move(st.retiring[user]);
          st.retiring.erase(user);
          for (auto& route : held)
            route();
        };
        self->request(handle, std::chrono::seconds(10), retire_atom_v)
            .then(
                [self, user, handle, flush](bool retired) {
                  auto& st = self->state;
                  if (retired) {
                    // Forget it now: held and later calls spawn a fresh pool if needed.
                    if (auto p = st.pools.find(user); p != st.pools.end() && p->second == handle)
                      st.pools.erase(p);
                    log().debug("pool of '{}' retired", user);
                  }
                  flush();
                },
                [flush](caf::error&) { flush(); });
      },
      [self](agent_atom, agent_offer& offer) {
        if (from_peer(self))
          return;
        // As the calls: held while the user's pool is asked to retire.
        if (auto held = self->state.retiring.find(offer.user()); held != self->state.retiring.end())
          held->second.push_back([self, offer]() mutable { admit_agent(self, offer); });
        else
          admit_agent(self, offer);
      },
      [self](token_atom) {
        if (from_peer(self))
          return;
        self->state.tick_armed = false;
        run_permit_queue(self);
      },
      [self](view_atom, cluster_view& view) {
        if (from_peer(self))
          return;
        on_view(self, view);
      },
      [self](claim_atom, const std::string& user, bool present) {
        if (from_peer(self))
          return;
        on_agents(self, user, present);
      },
      [self](claim_atom) {
        if (from_peer(self))
          return;
        check_held(self);
      },
      [self](view_atom) -> caf::result<std::uint64_t, std::uint64_t, std::uint64_t, std::uint64_t> {
        if (from_peer(self))
          return local_only();
        auto* cl = self->state.cluster.get();
        if (!cl)
          return {std::uint64_t{0}, std::uint64_t{0}, std::uint64_t{0}, std::uint64_t{0}};
        std::uint64_t served = 0;
        for (auto& [node, leases] : cl->lessees)
          served += leases.size();
        return {cl->remote_acquires, cl->remote_acquire_failures, cl->served_acquires, served};
      },
  };
}

} // namespace

error not_admitting(const supervisor_state& st) {
  return {errc::shutting_down, st.draining ? "the engine is draining" : "the engine is stopping"};
}

expected<user_pool_actor> pool_for(supervisor_ptr self, const std::string& user) {
  auto& st = self->state;
  if (auto pool = st.pools.find(user); pool != st.pools.end())
    return pool->second;
  auto ep = st.endpoints.find(user);
  if (ep == st.endpoints.end())
    return error{errc::unknown_user, "no endpoint is set for user '" + user + "'"};
  auto handle =
      spawn_user_pool(self, user, ep->second, caf::actor_cast<supervisor_impl>(self), st.ctx);
  self->monitor(handle);
  st.pool_users.emplace(handle.address(), user);
  st.pools.emplace(user, handle);
  return handle;
}

void acquire_into(supervisor_ptr self, const std::string& user,
                  caf::typed_response_promise<lease>& rp) {
  auto& st = self->state;
  if (st.draining || st.stopping) {
    rp.deliver(make_caf_error(not_admitting(st)));
    return;
  }
  // The common case first: the pool exists (no handle copied, no expected built).
  if (auto known = st.pools.find(user); known != st.pools.end()) {
    rp.delegate(known->second, acquire_atom_v, user);
    return;
  }
  auto pool = pool_for(self, user);
  if (!pool) {
    rp.deliver(make_caf_error(pool.error()));
    return;
  }
  rp.delegate(*pool, acquire_atom_v, user);
}

supervisor_actor spawn_supervisor(caf::actor_system& sys,
                                  std::shared_ptr<const actor_context> ctx) {
  return sys.spawn(supervisor_behavior, std::move(ctx));
}

expected<void> validate_user(const std::string& user) {
  if (user.empty())
    return {errc::invalid_argument, "the user id is empty"};
  if (user.size() > 1024)
    return {errc::invalid_argument,
            "the user id is " + std::to_string(user.size()) + " bytes long (at most 1024)"};
  // Ids are opaque bytes (any encoding, '/' and ".." included: they name map entries, never
  // paths), but they appear in log lines: control characters could forge or split them.
  for (unsigned char c : user) {
    if (c < 0x20 || c == 0x7f)
      return {errc::invalid_argument, "the user id holds a control character (byte " +
                                          std::to_string(static_cast<int>(c)) + ")"};
  }
  return {};
}

expected<void> validate(const endpoint& ep) {
  auto missing = [](const char* what) {
    return expected<void>{errc::invalid_argument, std::string{"endpoint: "} + what + " is missing"};
  };
  if (ep.mode == endpoint_mode::agent) {
    // The agent dials in: no server, credentials or target host of the engine's own.
    if (ep.authorized_keys_file.empty())
      return missing("authorized_keys_file");
    if (ep.target_port == 0)
      return missing("target_port");
    return {};
  }
  if (ep.host.empty())
    return missing("host");
  if (ep.port == 0)
    return missing("port");
  if (ep.username.empty())
    return missing("username");
  if (ep.identity_file.empty())
    return missing("identity_file");
  if (ep.known_hosts_file.empty())
    return missing("known_hosts_file");
  if (ep.target_host.empty())
    return missing("target_host");
  if (ep.target_port == 0)
    return missing("target_port");
  return {};
}

} // namespace sshpool
