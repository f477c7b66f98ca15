// The bridge's leases (see upstream.cpp for the bridge and its calls).
//
// A lease:
//               acquire_atom                   its call ends, or has its whole body: to the
//   the pool ─────────────────► held by a call ─► user's first queued call (held again),
//      ▲                            ▲             else kept
//      │                            │                  │
//      │                            └── a new call of ─┤
//      │                                the user       │
//      └─ release_atom: kept and unused for keep_idle ─┘ (or, as its call ends, held since
//         its grant for max_hold; or its connection refused a stream or went down)
//
// Leases are kept per user, not per client connection: a lease freed by one request serves
// the user's next one, whichever client sent it, so no acquire and no release per request
// (the pool's FIFO would otherwise see them all), and an idle keep-alive client holds
// nothing. Calls that wait for a lease wait here, in order, and take the first one freed or
// granted; an acquire is asked only for a waiting call that no acquire in flight covers.
// Kept leases go back within keep_idle + keep_tick once the user's requests stop, and every
// lease at least once per max_hold, so that the pool still balances connections, ends them
// at their lifetime and evicts idle ones; the pool's metrics count kept leases as leases.
// When the bridge ends (upstream_bridge's destructor), every lease it holds or keeps goes
// back to the pool.
#include <algorithm>

#include "gateway/upstream_state.hpp"

namespace sshpool::gateway::upstream_detail {

namespace {

void arm_tick(self_ptr self) {
  auto& st = self->state;
  if (st.tick_armed)
    return;
  st.tick_armed = true;
  self->delayed_send(self, keep_tick, keep_tick_atom_v);
}

/// Drops the cancelled calls at the head of `u`'s queue; false if none is left.
bool first_queued(self_ptr self, user_leases& u) {
  while (!u.queued.empty() && self->state.calls.count(u.queued.front().id) == 0)
    u.queued.pop_front();
  return !u.queued.empty();
}

/// Drops the cancelled calls at the tail of `u`'s queue; false if none is left.
bool last_queued(self_ptr self, user_leases& u) {
  while (!u.queued.empty() && self->state.calls.count(u.queued.back().id) == 0)
    u.queued.pop_back();
  return !u.queued.empty();
}

/// Returns to the pool the kept leases of `u` that `stays` does not keep (in their order).
template <class Stays>
void return_kept(self_ptr self, user_leases& u, Stays stays) {
  auto gone = std::stable_partition(u.kept.begin(), u.kept.end(), stays);
  for (auto i = gone; i != u.kept.end(); ++i)
    release(self, i->held.granted);
  u.kept.erase(gone, u.kept.end());
}

} // namespace

void release(self_ptr self, const lease& l) {
  caf::anon_send(self->state.supervisor, release_atom_v, l.user, l);
}

void free_lease(self_ptr self, held_lease held) {
  auto& u = self->state.users[held.granted.user];
  auto now = self->clock().now();
  if (now - held.since >= max_hold) {
    release(self, held.granted);
    if (first_queued(self, u) && u.asked < u.queued.size())
      acquire(self, held.granted.user);
    return;
  }
  if (first_queued(self, u)) {
    auto id = u.queued.front().id;
    u.queued.pop_front();
    open_stream(self, id, std::move(held));
    return;
  }
  u.kept.push_back(kept_lease{std::move(held), now});
  arm_tick(self);
}

void drop_kept(self_ptr self, caf::actor_id cid) {
  for (auto& [user, u] : self->state.users)
    return_kept(self, u,
                [cid](const kept_lease& k) { return k.held.granted.connection.id() != cid; });
}

namespace {

/// An acquire failed. The pool refused it at once (pool_exhausted before acquire_timeout:
/// its waiters are full): the newest queued call, whose arrival asked for it, fails.
/// Otherwise the first queued call fails with its error, unless the acquire timed out
/// (pool_exhausted after acquire_timeout) while that call has waited for less: the acquire
/// was asked for an earlier call, which a freed lease served meanwhile; one is asked again
/// for this call.
void acquire_failed(self_ptr self, const std::string& user, const caf::error& err,
                    time_point asked_at) {
  auto& st = self->state;
  auto& u = st.users[user];
  --u.asked;
  if (!first_queued(self, u))
    return;
  auto failure = from_caf_error(err, errc::shutting_down);
  auto now = self->clock().now();
  if (failure.code() == errc::pool_exhausted && now - asked_at < st.acquire_timeout &&
      last_queued(self, u)) {
    auto id = u.queued.back().id;
    u.queued.pop_back();
    end_call(self, id, std::move(failure));
    return;
  }
  if (failure.code() == errc::pool_exhausted && now - u.queued.front().since < st.acquire_timeout) {
    acquire(self, user);
    return;
  }
  auto id = u.queued.front().id;
  u.queued.pop_front();
  end_call(self, id, std::move(failure));
}

} // namespace

void acquire(self_ptr self, const std::string& user) {
  ++self->state.users[user].asked;
  // No CAF timeout (each would wake CAF's clock thread): the pool answers an acquire within
  // acquire_timeout + connect_timeout.
  self->request(self->state.supervisor, caf::infinite, acquire_atom_v, user)
      .then(
          [self, user](lease& l) {
            --self->state.users[user].asked;
            free_lease(self, held_lease{std::move(l), self->clock().now()});
          },
          [self, user, asked_at = self->clock().now()](caf::error& err) {
            acquire_failed(self, user, err, asked_at);
          });
}

void look_at_kept(self_ptr self) {
  auto& st = self->state;
  st.tick_armed = false;
  auto now = self->clock().now();
  bool any = false;
  for (auto& [user, u] : st.users) {
    return_kept(self, u, [now](const kept_lease& k) {
      return now - k.unused_since < keep_idle && now - k.held.since < max_hold;
    });
    any = any || !u.kept.empty();
  }
  if (any)
    arm_tick(self);
}

void release_all(self_ptr self) {
  auto& st = self->state;
  for (auto& [id, c] : st.calls)
    if (c.held)
      release(self, c.held->granted);
  st.calls.clear();
  st.streams.clear();
  for (auto& [user, u] : st.users)
    for (auto& k : u.kept)
      release(self, k.held.granted);
  st.users.clear();
}

} // namespace sshpool::gateway::upstream_detail
