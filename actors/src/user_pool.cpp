// The user_pool actor: one user's SSH connections, leases and waiters. It owns its
// connection actors: it spawns each after a permit from the supervisor (which keeps the
// global connection cap and the handshake rate), monitors it, and gives the permit back
// once the actor is down. The mechanism (phases, leases, the waiter FIFO, selection,
// counts) is pool_book's; this actor keeps the handlers, the timers and the policy:
// backoff, lifetime, validation, eviction, drain and retirement.
//
// Connections (phases of pool_book):
//           granted              conn_up            idle > validation threshold
//   asked ─────────► connecting ────────► ready ◄─────────────────────────────► validating
//     │ refused          │ conn_down       │ ▲ lease / release          alive │ no answer
//     ▼                  ▼                 │ └───┘                            ▼
//   handshake failed ◄───┘                 ├── evict_atom ──► evicting ──► closing (evicted;
//   (backoff, fast-fail)                   │                                  kept: ready)
//                                          ├── past max_lifetime (or its endpoint replaced)
//                                          │   and idle, drain ──────────────────► draining
//                                          └── close_atom (disconnect_atom to it),
//                                              conn_down ──────────────────────────► closing
//   draining, closing ── actor down: removed, its permit given back to the supervisor.
//   close, drain and stop withdraw the permits asked; a grant that comes late goes back.
//   Drain, eviction, lifetime and stop: user_pool_drain.cpp. The pool is internal as a whole
//   (user_pool_actor, internal_messages.hpp): only the supervisor and its connections talk
//   to it; its timers are acquire_timeout_atom (one deadline_timer) and retry_atom.
//
// Agent mode (reverse: the user's machine dials in; endpoint_mode::agent): nothing is
// asked nor dialed, no backoff. An agent comes with a permit the supervisor took for it:
//
//   agent_atom ──► below max_connections_per_user: a connection actor adopts its session
//                  ──► connecting ──► ready (conn_up, at once) ... as above, but never
//                  evicted nor retired for its lifetime (it could not come back by itself);
//              └─► at the cap, draining or stopped: refused (told why), permit given back
//
// With no agent, waiters wait up to acquire_timeout for one, then get agent_offline; an
// agent arriving serves them at once in FIFO order. Probes still close dead agents. The
// supervisor learns when the user's agents go 0→1 and 1→0 (claim_atom: a cluster node
// claims a user while its agent is connected there).
//
// get_connection (acquire) gives, in this order: an idle ready connection (no lease; one
// unused for longer than validation_idle_threshold is probed first); else, while the user
// is under max_connections_per_user (permits asked and connections connecting, ready,
// validating or evicting), a new connection whose handshake the caller waits for; else the
// ready connection with the fewest leases below max_channels_per_connection; else a place
// in a FIFO of at most max_waiters_per_user callers, each bounded by acquire_timeout (then
// pool_exhausted). Handshakes never outnumber the callers waiting for them and never exceed
// the cap, so concurrent first calls cannot start a storm. A failed handshake starts a
// per-user backoff with full jitter; until it ends, callers that nothing can serve (no
// ready connection, no handshake in progress) get the failure at once instead of a new
// handshake; the others keep waiting and the failed slot is retried at its end. A pool
// left with nothing offers to retire, so memory does not grow with users ever seen.
#include "user_pool.hpp"

#include <algorithm>
#include <random>
#include <vector>

#include <caf/all.hpp>

#include "backoff.hpp"
#include "connection.hpp"
#include "handlers.hpp"
#include "sshpool/ssh/log.hpp"
#include "user_pool_state.hpp"

namespace sshpool {

namespace {

using time_point = caf::actor_clock::time_point;

// -- queries ----------------------------------------------------------------------------------

lease make_lease(const user_pool_state& st, pool_book::grant g) {
  return lease{st.user, g.lease, g.connection, st.conns.at(g.connection)};
}

bool agent_mode(const user_pool_state& st) {
  return st.ep.mode == endpoint_mode::agent;
}

// -- actions ----------------------------------------------------------------------------------

void handshake_failed(pool_ptr self, const error& err);

/// Arms the retry tick (the end of a backoff, or of the time a failure is remembered) in
/// `delay`, unless one is armed.
void arm_retry(pool_ptr self, caf::timespan delay) {
  auto& st = self->state;
  if (st.retry_armed)
    return;
  st.retry_armed = true;
  self->delayed_send(self, delay, retry_atom_v, ++st.retry_generation);
}

/// Spawns the connection a permit was granted for, monitors it and starts its handshake.
void open_connection(pool_ptr self) {
  auto& st = self->state;
  auto conn =
      spawn_connection(self, st.user, st.ep, caf::actor_cast<user_pool_actor>(self), st.ctx);
  self->monitor(conn);
  auto now = self->clock().now();
  std::uniform_real_distribution<double> shorten{0.0, 0.025};
  auto expires = now + std::chrono::duration_cast<caf::timespan>(st.ctx->pool.max_lifetime *
                                                                 (1.0 - shorten(st.rng)));
  st.book.permit_granted(conn.id(), now, expires);
  st.conns.emplace(conn.id(), conn);
  self->send(conn, connect_atom_v);
}

/// Asks the supervisor for the permit the book just counted as asked.
void ask_permit(pool_ptr self) {
  auto& st = self->state;
  ++st.stats.handshakes;
  auto generation = st.permit_generation;
  self->request(st.supervisor, caf::infinite, permit_atom_v)
      .then(
          [self, generation]() {
            auto& st = self->state;
            if (generation != st.permit_generation) {
              self->send(st.supervisor, return_atom_v); // withdrawn meanwhile: not needed
              return;
            }
            open_connection(self);
          },
          [self, generation](caf::error& err) {
            auto& st = self->state;
            if (generation != st.permit_generation)
              return; // withdrawn: answered as such
            st.book.permit_refused();
            handshake_failed(self, from_caf_error(err, errc::shutting_down));
          });
}

void arm_timer(pool_ptr self, time_point deadline) {
  self->state.deadlines.arm(self, deadline, acquire_timeout_atom_v);
}

void start_validation(pool_ptr self, std::uint64_t id);

/// Carries out what the book decides for the waiters.
class pool_effects final : public pool_book::effects {
public:
  explicit pool_effects(pool_ptr self) : self_(self) {}

  void granted(std::uint64_t waiter, pool_book::grant g) override {
    auto& st = self_->state;
    auto i = st.promises.find(waiter);
    auto rp = std::move(i->second);
    st.promises.erase(i);
    rp.deliver(make_lease(st, g));
  }

  void validate(std::uint64_t id) override { start_validation(self_, id); }

  void connect() override { ask_permit(self_); }

  void expired(std::uint64_t waiter) override {
    auto& st = self_->state;
    ++st.stats.acquire_timeouts;
    auto i = st.promises.find(waiter);
    auto waited = std::to_string(st.ctx->pool.acquire_timeout.count()) + " ms";
    if (agent_mode(st) && st.book.agents() == 0)
      i->second.deliver(make_caf_error(errc::agent_offline, "no agent of user '" + st.user +
                                                                "' dialed in within " + waited));
    else
      i->second.deliver(make_caf_error(errc::pool_exhausted, "no connection for user '" + st.user +
                                                                 "' within " + waited + ": " +
                                                                 st.book.describe()));
    st.promises.erase(i);
  }

private:
  pool_ptr self_;
};

/// Fails waiters whose acquire_timeout passed. The first waiters, as many as handshakes are
/// in progress, are waiting for those: they are bounded by the handshake's own deadline
/// (connect_timeout) and get its result, so a slow handshake does not turn into
/// pool_exhausted. Arms the timer for the earliest remaining deadline.
void expire_waiters(pool_ptr self) {
  pool_effects fx{self};
  auto next = self->state.book.expire(self->clock().now(), fx);
  if (next != time_point::max())
    arm_timer(self, next);
}

void start_validation(pool_ptr self, std::uint64_t id) {
  auto& st = self->state;
  // The connection answers within keepalive_timeout (or closes); the margin only guards
  // against a lost reply.
  self->request(st.conns.at(id), st.ctx->pool.keepalive_timeout * 2, validate_atom_v)
      .then(
          [self, id](bool) {
            auto& book = self->state.book;
            if (auto* c = book.find(id); c && c->phase == conn_phase::validating) {
              book.transition(id, conn_phase::ready);
              book.touch(id, self->clock().now());
            }
            serve_waiters(self);
          },
          [self, id](caf::error&) {
            // It closed itself (or its reply got lost: close it), and stops counting now.
            auto& st = self->state;
            if (auto* c = st.book.find(id); c && counts_against_cap(c->phase)) {
              self->send(st.conns.at(id), disconnect_atom_v, std::string{"no answer to a probe"});
              st.book.transition(id, conn_phase::closing);
            }
            serve_waiters(self);
          });
}

void handshake_failed(pool_ptr self, const error& err) {
  auto& st = self->state;
  ++st.stats.handshake_failures;
  if (st.stopped)
    return;
  // Backoff with full jitter (backoff.hpp); a refusal (auth, host key), that will not
  // change by retrying, waits between cap / 2 and cap.
  ++st.failures;
  auto now = self->clock().now();
  st.failed_at = now;
  auto backoff =
      backoff_delay(st.failures, is_refusal(err.code()), st.ctx->pool.reconnect_backoff_base,
                    st.ctx->pool.reconnect_backoff_cap, st.rng);
  st.retry_at = now + backoff;
  st.retry_armed = false;
  ++st.retry_generation;
  st.last_failure = err;
  log().info("handshake for '{}' failed ({} in a row): {}; next attempt in {} ms{}", st.user,
             st.failures, err.to_string(), backoff.count(),
             is_refusal(err.code()) ? " (a refusal)" : "");
  // Waiters get the error only when nothing can serve them: no ready connection and no
  // handshake in progress (a connection serves up to max_channels_per_connection of them).
  // Otherwise they wait, bounded by acquire_timeout, for those connections, for released
  // leases and for the retry of this handshake's slot once the backoff ends.
  if (!st.book.any_leasable(now) && st.book.pending() == 0)
    fail_waiters(self, make_caf_error(err));
  serve_waiters(self);
}

/// An agent dialed in with a permit the supervisor took for it: it becomes a connection,
/// unless the user is at max_connections_per_user, draining, stopped or no longer an agent
/// user (then it is told why and the permit goes back).
void admit_agent(pool_ptr self, agent_offer& offer) {
  auto& st = self->state;
  std::string refusal;
  if (st.stopped || st.draining)
    refusal = agent_goodbye;
  else if (!agent_mode(st))
    refusal = "user " + st.user + " is not an agent user";
  else if (st.book.counted() >= st.ctx->pool.max_connections_per_user) {
    ++st.stats.agents_refused;
    refusal = "user " + st.user + " has " + std::to_string(st.book.counted()) +
              " agents connected already";
  }
  if (!refusal.empty()) {
    log().warn("agent of '{}' refused: {}", st.user, refusal);
    offer.refuse(refusal);
    self->send(st.supervisor, return_atom_v);
    maybe_offer_retirement(self);
    return;
  }
  auto conn = spawn_connection(self, st.user, st.ep, caf::actor_cast<user_pool_actor>(self), st.ctx,
                               std::move(offer));
  self->monitor(conn);
  st.book.adopt(conn.id(), self->clock().now());
  st.conns.emplace(conn.id(), conn);
  st.retire_offered = false;
  if (st.agents_alive++ == 0)
    self->send(st.supervisor, claim_atom_v, st.user, true);
  log().info("agent of '{}' is connection #{}", st.user, conn.id());
  self->send(conn, connect_atom_v);
}

/// A connection actor is down: it leaves the book and its permit goes back.
void connection_down(pool_ptr self, const caf::down_msg& dm) {
  auto& st = self->state;
  auto id = dm.source.id();
  auto* entry = st.book.find(id);
  bool agent = entry != nullptr && entry->agent;
  auto was = st.book.remove(id);
  if (!was)
    return;
  st.conns.erase(id);
  self->send(st.supervisor, return_atom_v);
  if (agent && --st.agents_alive == 0)
    self->send(st.supervisor, claim_atom_v, st.user, false);
  if (st.stopped) {
    if (st.book.entries().empty())
      self->quit();
    return;
  }
  // One that ended without conn_down (e.g. it crashed) stops counting here.
  if (*was == conn_phase::connecting && !agent)
    handshake_failed(self, from_caf_error(dm.reason, errc::connection_lost));
  else if (counts_against_cap(*was))
    serve_waiters(self);
  else
    maybe_offer_retirement(self);
}

user_pool_actor::behavior_type user_pool_behavior(pool_ptr self, std::string user, endpoint ep,
                                                  supervisor_impl supervisor,
                                                  std::shared_ptr<const actor_context> ctx) {
  auto& st = self->state;
  st.user = std::move(user);
  st.ep = std::move(ep);
  st.supervisor = std::move(supervisor);
  st.ctx = std::move(ctx);
  st.book = pool_book{pool_book::limits{
      st.ctx->pool.max_connections_per_user, st.ctx->pool.max_channels_per_connection,
      st.ctx->pool.max_waiters_per_user, st.ctx->pool.validation_idle_threshold}};
  st.stats.user = st.user;
  st.rng.seed(static_cast<std::minstd_rand::result_type>(self->id() * 2654435761u + 1));
  install_exception_handler(self, [self](const std::string& what) {
    deliver_all(self, make_caf_error(errc::internal, what));
  });
  self->set_down_handler([self](const caf::down_msg& dm) { connection_down(self, dm); });
  return {
      [self](acquire_atom, const std::string&) -> caf::result<lease> {
        auto& st = self->state;
        if (st.stopped)
          return make_caf_error(errc::shutting_down, "the engine is stopping");
        if (st.draining)
          return make_caf_error(errc::shutting_down, "user '" + st.user + "' is draining");
        st.retire_offered = false;
        auto now = self->clock().now();
        if (auto g = st.book.lease_now(now))
          return make_lease(st, *g);
        // During a reconnect backoff, a caller that nothing can serve gets the last failure
        // at once instead of a new handshake (no storm against a failing server).
        if (st.book.waiting() == 0 && now < st.retry_at && !st.book.any_leasable(now) &&
            st.book.pending() == 0)
          return make_caf_error(
              st.last_failure.code(),
              st.last_failure.message() + " (next attempt in " +
                  std::to_string(
                      std::chrono::duration_cast<std::chrono::milliseconds>(st.retry_at - now)
                          .count()) +
                  " ms)");
        if (st.book.waiters_full()) {
          ++st.stats.acquire_timeouts;
          return make_caf_error(errc::pool_exhausted, "too many callers waiting for user '" +
                                                          st.user + "': " + st.book.describe());
        }
        auto rp = self->make_response_promise<lease>();
        auto deadline = now + st.ctx->pool.acquire_timeout;
        st.promises.emplace(st.book.enqueue(deadline), rp);
        arm_timer(self, deadline);
        serve_waiters(self);
        return rp;
      },
      [self](release_atom, const std::string& user, const lease& l) -> caf::result<void> {
        auto& st = self->state;
        if (l.user != user)
          return make_caf_error(errc::wrong_user, "the lease belongs to user '" + l.user +
                                                      "', not to '" + user + "'");
        if (!st.book.release(l.id, l.connection_id, self->clock().now()))
          return make_caf_error(errc::not_leased, "lease " + std::to_string(l.id) + " of user '" +
                                                      user + "' is not held (released twice?)");
        serve_waiters(self);
        return caf::unit;
      },
      [self](close_atom, const std::string&) -> std::uint64_t {
        auto closed = close_all(self, "closed");
        log().info("closed {} connections of '{}'", closed, self->state.user);
        serve_waiters(self);
        return closed;
      },
      [self](stats_atom) {
        auto& st = self->state;
        auto result = st.stats;
        result.connections = static_cast<std::uint32_t>(st.book.counted());
        result.connecting = static_cast<std::uint32_t>(st.book.pending());
        result.idle = static_cast<std::uint32_t>(st.book.idle());
        result.leases = static_cast<std::uint32_t>(st.book.active_leases());
        result.waiters = static_cast<std::uint32_t>(st.book.waiting());
        result.agents = static_cast<std::uint32_t>(st.book.agents());
        return result;
      },
      [self](endpoint_atom, endpoint& ep) {
        // A new endpoint deserves a new attempt: the backoff of the old one is over. The
        // connections to the old one expire: idle ones retire now, leased ones once released
        // (what is in flight on them finishes); new ones dial the new endpoint.
        auto& st = self->state;
        st.ep = std::move(ep);
        st.failures = 0;
        st.retry_at = time_point{};
        st.last_failure = error{};
        st.book.expire_all(self->clock().now());
        serve_waiters(self);
      },
      [self](stop_atom) { stop(self); },
      [self](evict_atom, caf::timespan max_idle) { return evict(self, max_idle); },
      [self](drain_atom) { return drain(self); },
      [self](force_atom) { force(self); },
      [self](retire_atom) {
        auto& st = self->state;
        bool empty = st.book.empty() && st.drains_pending == 0;
        st.retire_offered = false;
        if (empty)
          self->quit();
        return empty;
      },
      [self](conn_up_atom, std::uint64_t id) {
        auto& st = self->state;
        auto* c = st.book.find(id);
        if (c == nullptr || c->phase != conn_phase::connecting)
          return;
        st.book.transition(id, conn_phase::ready);
        st.book.touch(id, self->clock().now());
        st.failures = 0;
        st.retry_at = time_point{};
        st.last_failure = error{};
        serve_waiters(self);
      },
      [self](conn_down_atom, std::uint64_t id, const caf::error& reason) {
        auto& st = self->state;
        auto* c = st.book.find(id);
        if (c == nullptr || !counts_against_cap(c->phase))
          return; // draining or closing: its actor's down ends it
        bool connecting = c->phase == conn_phase::connecting && !c->agent;
        st.book.transition(id, conn_phase::closing); // stops counting against the cap at once
        auto err = from_caf_error(reason, errc::connection_lost);
        if (connecting) {
          handshake_failed(self, err);
        } else {
          log().warn("connection #{} of '{}' lost: {}", id, st.user, err.to_string());
          serve_waiters(self);
        }
      },
      [self](acquire_timeout_atom, std::uint64_t generation) {
        if (self->state.deadlines.fire(generation))
          expire_waiters(self);
      },
      [self](agent_atom, agent_offer& offer) { admit_agent(self, offer); },
      [self](retry_atom, std::uint64_t generation) {
        auto& st = self->state;
        if (generation != st.retry_generation)
          return;
        st.retry_armed = false;
        serve_waiters(self);
      },
  };
}

} // namespace

/// Offers to retire once nothing is left: no connection (closing ones included), permit
/// asked, lease, waiter or drain, and no failure remembered for backoff (a fresh pool would
/// forget it: the backoff would never grow). Failures are remembered until one backoff cap
/// after the last one.
void maybe_offer_retirement(pool_ptr self) {
  auto& st = self->state;
  if (st.retire_offered || st.stopped || !st.book.empty() || st.drains_pending > 0)
    return;
  auto now = self->clock().now();
  auto hold = st.failures > 0
                  ? std::max(st.retry_at, st.failed_at + st.ctx->pool.reconnect_backoff_cap)
                  : st.retry_at;
  if (now < hold) {
    arm_retry(self, hold - now);
    return;
  }
  st.retire_offered = true;
  self->send(st.supervisor, idle_atom_v, st.user);
}

/// Withdraws the permits asked and not granted yet (close, drain, stop).
void withdraw_permits(pool_ptr self) {
  auto& st = self->state;
  if (st.book.withdraw_permits() == 0)
    return;
  ++st.permit_generation;
  self->send(st.supervisor, withdraw_atom_v);
}

/// Answers the waiters (and forgets them) with `err`.
void fail_waiters(pool_ptr self, const caf::error& err) {
  auto& st = self->state;
  for (auto id : st.book.take_waiters())
    st.promises.at(id).deliver(err);
  st.promises.clear();
}

/// Serves waiters in FIFO order (see pool_book::serve); asks for new connections only for
/// waiters no pending handshake (or validation) covers, never during a drain nor in agent
/// mode, and not during a reconnect backoff (the retry tick comes at its end).
void serve_waiters(pool_ptr self) {
  auto& st = self->state;
  auto now = self->clock().now();
  retire_expired(self, now);
  if (st.book.waiting() > 0) { // else serve() has nothing to do (every release comes here)
    auto rule = st.draining || agent_mode(st) ? pool_book::connect_rule::never
                : now >= st.retry_at          ? pool_book::connect_rule::now
                                              : pool_book::connect_rule::later;
    pool_effects fx{self};
    if (st.book.serve(now, rule, fx))
      arm_retry(self, st.retry_at - now);
    if (st.book.waiting() > 0)
      expire_waiters(self); // coverage by handshakes may have shrunk
  }
  maybe_offer_retirement(self);
}

user_pool_actor spawn_user_pool(caf::local_actor* parent, std::string user, endpoint ep,
                                supervisor_impl supervisor,
                                std::shared_ptr<const actor_context> ctx) {
  return parent->spawn(user_pool_behavior, std::move(user), std::move(ep), std::move(supervisor),
                       std::move(ctx));
}

} // namespace sshpool
