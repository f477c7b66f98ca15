// The user_pool actor, continued (user_pool.cpp has its connections' phases): how its
// connections leave. close_atom closes them at once; past max_lifetime an idle one drains;
// evict_atom closes those idle for long enough; drain_atom drains this user; stop_atom ends
// the pool.
//
//              drain_atom                        every connection's report
//   admitting ────────────► draining (waiters: ─────────────────────────────► admitting
//      │                    shutting_down)      (each caller gets the report)
//      │                        │ force_atom: the connections cut what remains
//      │ stop_atom              │ stop_atom
//      ▼                        ▼
//   stopped: waiters, drains and evictions answered, permits asked withdrawn, connections
//            closed (draining ones cut); the actor quits once their actors are down
#include <algorithm>
#include <memory>

#include <caf/all.hpp>

#include "sshpool/ssh/log.hpp"
#include "user_pool_state.hpp"

namespace sshpool {

namespace {

using time_point = caf::actor_clock::time_point;

/// Moves every connection that counts against the cap to `to`; returns their ids.
std::vector<std::uint64_t> move_counted(pool_ptr self, conn_phase to) {
  auto ids = self->state.book.ids_where(counts_against_cap);
  for (auto id : ids)
    self->state.book.transition(id, to);
  return ids;
}

void finish_drain_if_done(pool_ptr self) {
  auto& st = self->state;
  if (!st.draining || st.drains_pending > 0 || st.drain_rps.empty())
    return;
  st.drain.duration =
      std::chrono::duration_cast<std::chrono::milliseconds>(self->clock().now() - st.drain_started);
  for (auto& rp : st.drain_rps)
    rp.deliver(st.drain);
  st.drain_rps.clear();
  st.draining = false; // the user is admitted again
  log().info("user '{}' drained: {} connections closed, {} of {} requests completed, {} cut",
             st.user, st.drain.connections_closed, st.drain.completed_during_drain,
             st.drain.in_flight_at_start, st.drain.cut);
  maybe_offer_retirement(self);
}

/// Starts the drain of this user: every connection drains (those already draining past
/// their lifetime join), waiters get shutting_down, permits asked are withdrawn.
void start_drain(pool_ptr self) {
  auto& st = self->state;
  st.draining = true;
  st.drain = shutdown_report{};
  st.drain_started = self->clock().now();
  fail_waiters(self, make_caf_error(errc::shutting_down, "user '" + st.user + "' is draining"));
  withdraw_permits(self);
  move_counted(self, conn_phase::draining);
  for (auto id : st.book.ids_where(is_draining)) {
    ++st.drains_pending;
    self->request(st.conns.at(id), caf::infinite, drain_atom_v)
        .then(
            [self](const shutdown_report& part) {
              auto& st = self->state;
              st.drain.connections_closed += part.connections_closed;
              st.drain.in_flight_at_start += part.in_flight_at_start;
              st.drain.completed_during_drain += part.completed_during_drain;
              st.drain.cut += part.cut;
              st.drain.forced = st.drain.forced || part.forced;
              --st.drains_pending;
              finish_drain_if_done(self);
            },
            [self](caf::error&) {
              --self->state.drains_pending; // gone meanwhile: nothing was left to drain
              finish_drain_if_done(self);
            });
  }
}

/// Asks the connections unused for `max_idle` whether they are idle enough to close;
/// `rp` gets how many closed.
void start_eviction(pool_ptr self, const std::vector<std::uint64_t>& candidates,
                    caf::timespan max_idle, caf::typed_response_promise<std::uint64_t> rp) {
  auto& st = self->state;
  auto remaining = std::make_shared<std::size_t>(candidates.size());
  auto closed = std::make_shared<std::uint64_t>(0);
  for (auto id : candidates) {
    // Not leasable while the connection decides (it sees requests in flight that a
    // released lease may have left behind).
    st.book.transition(id, conn_phase::evicting);
    auto done = [self, rp, remaining, closed]() mutable {
      if (--*remaining == 0 && rp.pending()) {
        rp.deliver(*closed);
        serve_waiters(self);
      }
    };
    // Back to ready unless it closed or a drain or close took it meanwhile.
    auto back = [self, id](bool evicted) {
      auto& book = self->state.book;
      if (auto* c = book.find(id); c && c->phase == conn_phase::evicting)
        book.transition(id, evicted ? conn_phase::closing : conn_phase::ready);
    };
    self->request(st.conns.at(id), std::chrono::seconds(10), evict_atom_v, max_idle)
        .then(
            [closed, done, back](bool evicted) mutable {
              if (evicted)
                ++*closed;
              back(evicted);
              done();
            },
            [done, back](caf::error&) mutable {
              back(false);
              done();
            });
  }
}

} // namespace

std::size_t close_all(pool_ptr self, const std::string& reason) {
  auto& st = self->state;
  withdraw_permits(self);
  auto closed = move_counted(self, conn_phase::closing);
  for (auto id : closed)
    self->send(st.conns.at(id), disconnect_atom_v, reason);
  return closed.size();
}

/// Drains idle connections past their lifetime (or whose endpoint was replaced): no longer leasable
/// nor counted against the cap, but monitored until their actors are down, so a request still in
/// flight on one (a stream whose lease was released early) finishes, and drains and stops include
/// it.
void retire_expired(pool_ptr self, time_point now) {
  auto& st = self->state;
  if (st.book.idle() == 0)
    return; // only an idle connection retires (the usual case under load: no scan)
  for (auto id : st.book.expired_idle(now)) {
    log().info("connection #{} of '{}' expired (max_lifetime, or a new endpoint): retired", id,
               st.user);
    st.book.transition(id, conn_phase::draining);
    self->request(st.conns.at(id), caf::infinite, drain_atom_v)
        .then([](const shutdown_report&) {}, [](caf::error&) {});
  }
}

void deliver_all(pool_ptr self, const caf::error& err) {
  auto& st = self->state;
  fail_waiters(self, err);
  for (auto& rp : st.drain_rps)
    rp.deliver(st.drain);
  st.drain_rps.clear();
  for (auto& rp : st.evictions)
    if (rp.pending())
      rp.deliver(std::uint64_t{0});
  st.evictions.clear();
}

caf::result<std::uint64_t> evict(pool_ptr self, caf::timespan max_idle) {
  auto& st = self->state;
  auto now = self->clock().now();
  retire_expired(self, now);
  auto candidates = st.book.unused_for(now, max_idle);
  if (candidates.empty()) {
    maybe_offer_retirement(self);
    return std::uint64_t{0};
  }
  auto rp = self->make_response_promise<std::uint64_t>();
  st.evictions.erase(std::remove_if(st.evictions.begin(), st.evictions.end(),
                                    [](auto& e) { return !e.pending(); }),
                     st.evictions.end());
  st.evictions.push_back(rp);
  start_eviction(self, candidates, max_idle, rp);
  return rp;
}

caf::result<shutdown_report> drain(pool_ptr self) {
  auto& st = self->state;
  if (st.stopped)
    return make_caf_error(errc::shutting_down, "the engine is stopping");
  auto rp = self->make_response_promise<shutdown_report>();
  st.drain_rps.push_back(rp);
  if (!st.draining)
    start_drain(self);
  finish_drain_if_done(self);
  return rp;
}

void force(pool_ptr self) {
  auto& st = self->state;
  for (auto id : st.book.ids_where(is_draining))
    self->send(st.conns.at(id), force_atom_v);
}

void stop(pool_ptr self) {
  auto& st = self->state;
  st.stopped = true;
  st.drain.forced = true; // a drain still running ends here
  deliver_all(self, make_caf_error(errc::shutting_down, "the engine is stopping"));
  close_all(self, agent_goodbye);
  force(self);
  if (st.book.entries().empty())
    self->quit(); // else once the last connection actor is down
}

} // namespace sshpool
