// The user_pool actor: one user's SSH connections, leases and waiters.
//
// Connection entries:
//                 spawn reply          conn_up               idle > validation threshold
//   (spawning) ─────────────► connecting ─────► ready ◄──────────────────────► validating
//        │ error                │ conn_down      │ ▲ lease / release      alive │ no answer
//        ▼                      ▼                │ └───┘                       ▼
//   handshake failed ◄──────────┘  evict_atom    │ idle > max_idle     conn_down: removed
//   (backoff, fast-fail)          ┌──────────────┤ past max_lifetime and idle: drained
//                                 ▼              │ conn_down / close: removed at once
//                              evicting ── closed: removed (counted by cleanup)
//
// get_connection (acquire) gives, in this order: an idle ready connection (no lease; one
// unused for longer than validation_idle_threshold is probed first); else, while the user
// is under max_connections_per_user (spawning + connecting + validating + ready), a new
// connection whose handshake the caller waits for; else the ready connection with the
// fewest leases below max_channels_per_connection; else a place in a FIFO of at most
// max_waiters_per_user callers, each bounded by acquire_timeout (then pool_exhausted).
// Handshakes never outnumber the callers waiting for them and never exceed the cap, so
// concurrent first calls cannot start a storm or orphan a connection. A failed handshake
// starts a per-user backoff with full jitter; until it ends, callers that nothing can
// serve (no ready connection, no handshake in progress) get the failure at once instead of
// a new handshake; the others keep waiting and the failed slot is retried at its end. A
// pool left with nothing offers to retire, so memory does not grow with users ever seen.
#include "user_pool.hpp"

#include <algorithm>
#include <deque>
#include <random>
#include <unordered_map>
#include <vector>

#include <caf/all.hpp>

#include "handlers.hpp"
#include "sshpool/ssh/log.hpp"

namespace sshpool {

namespace {

using time_point = caf::actor_clock::time_point;

/// The supervisor answers spawn requests at once (or after the handshake-rate limit); this
/// only bounds a stuck supervisor.
constexpr auto spawn_timeout = std::chrono::seconds(30);

enum class conn_phase { connecting, ready, validating, evicting };

struct conn_entry {
  connection_actor handle;
  std::uint64_t id = 0;
  conn_phase phase = conn_phase::connecting;
  std::uint32_t leases = 0;
  /// Retired (when idle) from here: created + max_lifetime minus up to 2.5 %.
  time_point expires;
  /// When it was last leased or released.
  time_point last_used;
};

struct waiter {
  caf::typed_response_promise<lease> rp;
  time_point deadline;
};

struct user_pool_state {
  static inline const char* name = "sshpool.user_pool";

  std::string user;
  endpoint ep;
  supervisor_actor supervisor;
  std::shared_ptr<const actor_context> ctx;
  std::vector<conn_entry> conns;
  /// Spawn requests sent to the supervisor and not answered yet.
  std::size_t spawning = 0;
  /// Of those, how many were asked for before a close: closed as soon as they arrive.
  std::size_t discard_spawns = 0;
  /// Live leases: lease id -> connection id (the connection may be gone meanwhile).
  std::unordered_map<std::uint64_t, std::uint64_t> leases;
  std::deque<waiter> waiters;
  std::uint64_t next_lease = 0;
  std::uint64_t timer_generation = 0;
  time_point timer_at = time_point::max();
  /// Reconnection: consecutive handshake failures, the end of the backoff, the last
  /// failure (given at once to callers nothing can serve until then) and the retry tick.
  std::uint32_t failures = 0;
  time_point failed_at;
  time_point retry_at;
  error last_failure;
  std::uint64_t retry_generation = 0;
  bool retry_armed = false;
  /// Drain of this user: who waits for the report, and its counts.
  bool draining = false;
  std::vector<caf::typed_response_promise<shutdown_report>> drain_rps;
  shutdown_report drain;
  std::size_t drains_pending = 0;
  time_point drain_started;
  /// Connections being drained or retired (max_lifetime), no longer in `conns`: monitored
  /// until they closed; drains include them and force_atom cuts them.
  std::vector<connection_actor> draining_conns;
  /// Evictions waiting for their connections' answers (answered on stop, too).
  std::vector<caf::typed_response_promise<std::uint64_t>> evictions;
  bool stopped = false;
  bool retire_offered = false;
  std::minstd_rand rng;
  user_stats stats;
};

using self_ptr = user_pool_actor::stateful_pointer<user_pool_state>;

// -- queries ----------------------------------------------------------------------------------

std::size_t pending_handshakes(const user_pool_state& st) {
  return st.spawning +
         static_cast<std::size_t>(std::count_if(st.conns.begin(), st.conns.end(), [](auto& c) {
           return c.phase == conn_phase::connecting || c.phase == conn_phase::validating;
         }));
}

std::size_t total_connections(const user_pool_state& st) {
  return st.spawning + st.conns.size();
}

conn_entry* find_conn(user_pool_state& st, std::uint64_t id) {
  for (auto& c : st.conns)
    if (c.id == id)
      return &c;
  return nullptr;
}

bool leasable(const conn_entry& c, time_point now) {
  return c.phase == conn_phase::ready && now < c.expires;
}

bool any_leasable(const user_pool_state& st, time_point now) {
  return std::any_of(st.conns.begin(), st.conns.end(), [now](auto& c) { return leasable(c, now); });
}

/// An idle leasable connection used recently enough not to need a probe.
conn_entry* idle_ready(user_pool_state& st, time_point now) {
  for (auto& c : st.conns)
    if (leasable(c, now) && c.leases == 0 &&
        now - c.last_used <= st.ctx->pool.validation_idle_threshold)
      return &c;
  return nullptr;
}

/// An idle leasable connection unused for longer than the validation threshold.
conn_entry* stale_idle(user_pool_state& st, time_point now) {
  for (auto& c : st.conns)
    if (leasable(c, now) && c.leases == 0)
      return &c;
  return nullptr;
}

/// The leasable connection with the fewest leases below the channel cap (an unused one
/// only if recently used: a stale one is validated first).
conn_entry* least_leased(user_pool_state& st, time_point now) {
  conn_entry* best = nullptr;
  for (auto& c : st.conns) {
    bool stale = c.leases == 0 && now - c.last_used > st.ctx->pool.validation_idle_threshold;
    if (leasable(c, now) && !stale && c.leases < st.ctx->pool.max_channels_per_connection &&
        (best == nullptr || c.leases < best->leases))
      best = &c;
  }
  return best;
}

lease make_lease(user_pool_state& st, conn_entry& c, time_point now) {
  ++c.leases;
  c.last_used = now;
  auto id = ++st.next_lease;
  st.leases.emplace(id, c.id);
  return lease{st.user, id, c.id, c.handle};
}

std::string describe(const user_pool_state& st) {
  std::size_t leases = 0;
  for (auto& c : st.conns)
    leases += c.leases;
  return std::to_string(total_connections(st)) + "/" +
         std::to_string(st.ctx->pool.max_connections_per_user) + " connections (" +
         std::to_string(pending_handshakes(st)) + " connecting), " + std::to_string(leases) +
         " leases of at most " + std::to_string(st.ctx->pool.max_channels_per_connection) +
         " per connection, " + std::to_string(st.waiters.size()) + " waiting";
}

bool fatal(errc code) {
  return code == errc::auth_failed || code == errc::host_key_unknown ||
         code == errc::host_key_mismatch || code == errc::host_key_revoked ||
         code == errc::invalid_argument;
}

// -- actions ----------------------------------------------------------------------------------

void handshake_failed(self_ptr self, const error& err);
void serve_waiters(self_ptr self);

void remove_conn(user_pool_state& st, std::uint64_t id) {
  st.conns.erase(
      std::remove_if(st.conns.begin(), st.conns.end(), [id](auto& c) { return c.id == id; }),
      st.conns.end());
}

/// Offers to retire once nothing is left: no connection (being drained included), lease,
/// waiter, handshake or drain, and no failure remembered for backoff (a fresh pool would
/// forget it: the backoff would never grow). Failures are remembered until one backoff cap
/// after the last one.
void maybe_offer_retirement(self_ptr self) {
  auto& st = self->state;
  if (st.retire_offered || st.stopped || !st.conns.empty() || !st.draining_conns.empty() ||
      st.spawning > 0 || !st.waiters.empty() || !st.leases.empty() || st.drains_pending > 0)
    return;
  auto now = self->clock().now();
  auto hold = st.failures > 0
                  ? std::max(st.retry_at, st.failed_at + st.ctx->pool.reconnect_backoff_cap)
                  : st.retry_at;
  if (now < hold) {
    if (!st.retry_armed) {
      st.retry_armed = true;
      self->delayed_send(self, hold - now, retry_atom_v, ++st.retry_generation);
    }
    return;
  }
  st.retire_offered = true;
  self->send(st.supervisor, idle_atom_v, st.user);
}

void start_handshake(self_ptr self) {
  auto& st = self->state;
  ++st.spawning;
  ++st.stats.handshakes;
  self->request(st.supervisor, spawn_timeout, spawn_atom_v, st.user, st.ep,
                caf::actor_cast<user_pool_actor>(self))
      .then(
          [self](connection_actor& conn) {
            auto& st = self->state;
            --st.spawning;
            if (st.stopped || st.draining || st.discard_spawns > 0) {
              // Asked for before a close, drain or stop: it must not appear afterwards.
              if (st.discard_spawns > 0)
                --st.discard_spawns;
              self->send(conn, close_atom_v);
              serve_waiters(self);
              maybe_offer_retirement(self);
              return;
            }
            self->monitor(conn);
            conn_entry entry;
            entry.handle = conn;
            entry.id = conn.id();
            auto now = self->clock().now();
            std::uniform_real_distribution<double> shorten{0.0, 0.025};
            entry.expires = now + std::chrono::duration_cast<caf::timespan>(
                                      st.ctx->pool.max_lifetime * (1.0 - shorten(st.rng)));
            entry.last_used = now;
            st.conns.push_back(entry);
            self->send(conn, connect_atom_v);
          },
          [self](caf::error& err) {
            auto& st = self->state;
            --st.spawning;
            if (st.discard_spawns > 0)
              --st.discard_spawns;
            handshake_failed(self, from_caf_error(err, errc::shutting_down));
          });
}

void arm_timer(self_ptr self, time_point deadline) {
  auto& st = self->state;
  if (deadline >= st.timer_at)
    return;
  st.timer_at = deadline;
  auto delay = deadline - self->clock().now();
  self->delayed_send(self, std::max(delay, decltype(delay){0}), timeout_atom_v,
                     ++st.timer_generation);
}

/// Fails waiters whose acquire_timeout passed. The first waiters, as many as handshakes are
/// in progress, are waiting for those: they are bounded by the handshake's own deadline
/// (connect_timeout) and get its result, so a slow handshake does not turn into
/// pool_exhausted. Arms the timer for the earliest remaining deadline.
void expire_waiters(self_ptr self) {
  auto& st = self->state;
  auto now = self->clock().now();
  auto covered = pending_handshakes(st);
  auto next = time_point::max();
  std::size_t position = 0;
  for (auto i = st.waiters.begin(); i != st.waiters.end();) {
    if (position < covered) {
      ++position;
      ++i;
    } else if (i->deadline <= now) {
      ++st.stats.acquire_timeouts;
      i->rp.deliver(make_caf_error(errc::pool_exhausted,
                                   "no connection for user '" + st.user + "' within " +
                                       std::to_string(st.ctx->pool.acquire_timeout.count()) +
                                       " ms: " + describe(st)));
      i = st.waiters.erase(i);
    } else {
      next = std::min(next, i->deadline);
      ++position;
      ++i;
    }
  }
  if (next != time_point::max())
    arm_timer(self, next);
}

/// Drains idle connections past their lifetime: no longer leasable nor counted against the
/// cap, but tracked (and monitored) until they closed, so a request still in flight on one
/// (a stream whose lease was released early) finishes, and drains and stops include it.
void retire_expired(self_ptr self, time_point now) {
  auto& st = self->state;
  for (auto i = st.conns.begin(); i != st.conns.end();) {
    if (i->phase == conn_phase::ready && i->leases == 0 && now >= i->expires) {
      log().info("connection #{} of '{}' reached its max_lifetime: retired", i->id, st.user);
      st.draining_conns.push_back(i->handle);
      self->request(i->handle, caf::infinite, drain_atom_v)
          .then([](const shutdown_report&) {}, [](caf::error&) {});
      i = st.conns.erase(i);
    } else {
      ++i;
    }
  }
}

void start_validation(self_ptr self, conn_entry& c) {
  auto& st = self->state;
  c.phase = conn_phase::validating;
  auto id = c.id;
  // The connection answers within keepalive_timeout (or closes); the margin only guards
  // against a lost reply.
  self->request(c.handle, st.ctx->pool.keepalive_timeout * 2, validate_atom_v)
      .then(
          [self, id](bool) {
            if (auto* c = find_conn(self->state, id); c && c->phase == conn_phase::validating) {
              c->phase = conn_phase::ready;
              c->last_used = self->clock().now();
            }
            serve_waiters(self);
          },
          [self, id](caf::error&) {
            // It closed itself (or its reply got lost: close it), and stops counting now.
            if (auto* c = find_conn(self->state, id))
              self->send(c->handle, close_atom_v);
            remove_conn(self->state, id);
            serve_waiters(self);
          });
}

/// Serves waiters in FIFO order; starts handshakes only for waiters no pending handshake
/// (or validation) covers, and not during a reconnect backoff (the retry tick comes at its
/// end).
void serve_waiters(self_ptr self) {
  auto& st = self->state;
  auto now = self->clock().now();
  retire_expired(self, now);
  while (!st.waiters.empty()) {
    conn_entry* c = idle_ready(st, now);
    if (c == nullptr) {
      if (auto* stale = stale_idle(st, now)) {
        start_validation(self, *stale);
        continue;
      }
      if (st.waiters.size() <= pending_handshakes(st))
        break; // every remaining waiter has a handshake coming
      if (!st.draining && total_connections(st) < st.ctx->pool.max_connections_per_user) {
        if (now >= st.retry_at) {
          start_handshake(self);
          continue;
        }
        if (!st.retry_armed) {
          st.retry_armed = true;
          self->delayed_send(self, st.retry_at - now, retry_atom_v, ++st.retry_generation);
        }
      }
      c = least_leased(st, now);
      if (c == nullptr)
        break;
    }
    auto w = std::move(st.waiters.front());
    st.waiters.pop_front();
    w.rp.deliver(make_lease(st, *c, now));
  }
  if (!st.waiters.empty())
    expire_waiters(self); // coverage by handshakes may have shrunk
  maybe_offer_retirement(self);
}

void handshake_failed(self_ptr self, const error& err) {
  auto& st = self->state;
  ++st.stats.handshake_failures;
  if (st.stopped)
    return;
  // Backoff with full jitter: random in [0, min(cap, base * 2^(failures - 1))]; for a
  // refusal (auth, host key), that will not change by retrying: in [cap / 2, cap].
  ++st.failures;
  st.failed_at = self->clock().now();
  auto base =
      std::chrono::duration_cast<std::chrono::milliseconds>(st.ctx->pool.reconnect_backoff_base);
  auto ceiling = std::min<std::chrono::milliseconds>(
      st.ctx->pool.reconnect_backoff_cap,
      base * (1LL << std::min<std::uint32_t>(st.failures - 1, 20)));
  auto floor = fatal(err.code()) ? st.ctx->pool.reconnect_backoff_cap.count() / 2 : 0;
  if (fatal(err.code()))
    ceiling = st.ctx->pool.reconnect_backoff_cap;
  std::uniform_int_distribution<long long> jitter{floor, ceiling.count()};
  auto backoff = std::chrono::milliseconds{jitter(st.rng)};
  st.retry_at = self->clock().now() + backoff;
  st.retry_armed = false;
  ++st.retry_generation;
  st.last_failure = err;
  log().info("handshake for '{}' failed ({} in a row): {}; next attempt in {} ms{}", st.user,
             st.failures, err.to_string(), backoff.count(),
             fatal(err.code()) ? " (a refusal)" : "");
  // Waiters get the error only when nothing can serve them: no ready connection and no
  // handshake in progress (a connection serves up to max_channels_per_connection of them).
  // Otherwise they wait, bounded by acquire_timeout, for those connections, for released
  // leases and for the retry of this handshake's slot once the backoff ends.
  if (!any_leasable(st, self->clock().now()) && pending_handshakes(st) == 0) {
    for (auto& w : st.waiters)
      w.rp.deliver(make_caf_error(err));
    st.waiters.clear();
  }
  serve_waiters(self);
}

// -- drain ------------------------------------------------------------------------------------

/// Answers everyone still waiting on this pool (stop, exception): no promise is dropped.
void deliver_all(self_ptr self, const caf::error& err) {
  auto& st = self->state;
  for (auto& w : st.waiters)
    w.rp.deliver(err);
  st.waiters.clear();
  for (auto& rp : st.drain_rps)
    rp.deliver(st.drain);
  st.drain_rps.clear();
  for (auto& rp : st.evictions)
    if (rp.pending())
      rp.deliver(std::uint64_t{0});
  st.evictions.clear();
}

void finish_drain_if_done(self_ptr self) {
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

user_pool_actor::behavior_type user_pool_impl(self_ptr self, std::string user, endpoint ep,
                                              supervisor_actor supervisor,
                                              std::shared_ptr<const actor_context> ctx) {
  auto& st = self->state;
  st.user = std::move(user);
  st.ep = std::move(ep);
  st.supervisor = std::move(supervisor);
  st.ctx = std::move(ctx);
  st.stats.user = st.user;
  st.rng.seed(static_cast<std::minstd_rand::result_type>(self->id() * 2654435761u + 1));
  install_exception_handler(self, [self](const std::string& what) {
    deliver_all(self, make_caf_error(errc::internal, what));
  });
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& st = self->state;
    auto d = std::find_if(st.draining_conns.begin(), st.draining_conns.end(),
                          [&](auto& c) { return c.address() == dm.source; });
    if (d != st.draining_conns.end()) {
      st.draining_conns.erase(d); // a drained (or lifetime-retired) connection closed
      maybe_offer_retirement(self);
      return;
    }
    // A connection actor ended without conn_down (e.g. it crashed): drop it.
    auto i = std::find_if(st.conns.begin(), st.conns.end(),
                          [&](auto& c) { return c.handle.address() == dm.source; });
    if (i == st.conns.end())
      return;
    bool connecting = i->phase == conn_phase::connecting;
    st.conns.erase(i);
    if (connecting)
      handshake_failed(self, from_caf_error(dm.reason, errc::connection_lost));
    else
      serve_waiters(self);
  });
  return {
      [self](acquire_atom, const std::string&) -> caf::result<lease> {
        auto& st = self->state;
        if (st.stopped)
          return make_caf_error(errc::shutting_down, "the engine is stopping");
        if (st.draining)
          return make_caf_error(errc::shutting_down, "user '" + st.user + "' is draining");
        st.retire_offered = false;
        auto now = self->clock().now();
        if (st.waiters.empty()) {
          if (auto* c = idle_ready(st, now))
            return make_lease(st, *c, now);
          if (total_connections(st) >= st.ctx->pool.max_connections_per_user)
            if (auto* c = least_leased(st, now))
              return make_lease(st, *c, now);
          // During a reconnect backoff, a caller that nothing can serve gets the last
          // failure at once instead of a new handshake (no storm against a failing server).
          if (now < st.retry_at && !any_leasable(st, now) && pending_handshakes(st) == 0)
            return make_caf_error(
                st.last_failure.code(),
                st.last_failure.message() + " (next attempt in " +
                    std::to_string(
                        std::chrono::duration_cast<std::chrono::milliseconds>(st.retry_at - now)
                            .count()) +
                    " ms)");
        }
        if (st.waiters.size() >= st.ctx->pool.max_waiters_per_user) {
          ++st.stats.acquire_timeouts;
          return make_caf_error(errc::pool_exhausted, "too many callers waiting for user '" +
                                                          st.user + "': " + describe(st));
        }
        auto rp = self->make_response_promise<lease>();
        auto deadline = now + st.ctx->pool.acquire_timeout;
        st.waiters.push_back(waiter{rp, deadline});
        arm_timer(self, deadline);
        serve_waiters(self);
        return rp;
      },
      [self](release_atom, const std::string& user, const lease& l) -> caf::result<void> {
        auto& st = self->state;
        if (l.user != user)
          return make_caf_error(errc::wrong_user, "the lease belongs to user '" + l.user +
                                                      "', not to '" + user + "'");
        auto i = st.leases.find(l.id);
        if (i == st.leases.end() || i->second != l.connection_id)
          return make_caf_error(errc::not_leased, "lease " + std::to_string(l.id) + " of user '" +
                                                      user + "' is not held (released twice?)");
        if (auto* c = find_conn(st, i->second)) {
          --c->leases;
          c->last_used = self->clock().now();
        }
        st.leases.erase(i);
        serve_waiters(self);
        return caf::unit;
      },
      [self](close_atom, const std::string&) -> std::uint64_t {
        auto& st = self->state;
        auto n = st.conns.size();
        st.discard_spawns = st.spawning;
        for (auto& c : st.conns) {
          self->demonitor(c.handle.address());
          self->send(c.handle, close_atom_v);
        }
        st.conns.clear();
        log().info("closed {} connections of '{}'", n, st.user);
        serve_waiters(self);
        return n;
      },
      [self](stats_atom) {
        auto& st = self->state;
        auto result = st.stats;
        result.connections = static_cast<std::uint32_t>(total_connections(st));
        result.connecting = static_cast<std::uint32_t>(pending_handshakes(st));
        result.idle = 0;
        result.leases = 0;
        for (auto& c : st.conns) {
          result.leases += c.leases;
          if (c.phase == conn_phase::ready && c.leases == 0)
            ++result.idle;
        }
        result.waiters = static_cast<std::uint32_t>(st.waiters.size());
        return result;
      },
      [self](endpoint_atom, endpoint& ep) {
        // A new endpoint deserves a new attempt: the backoff of the old one is over.
        auto& st = self->state;
        st.ep = std::move(ep);
        st.failures = 0;
        st.retry_at = time_point{};
        st.last_failure = error{};
      },
      [self](stop_atom) {
        auto& st = self->state;
        st.stopped = true;
        st.drain.forced = true; // a drain still running ends here
        deliver_all(self, make_caf_error(errc::shutting_down, "the engine is stopping"));
        for (auto& c : st.conns)
          self->send(c.handle, close_atom_v);
        st.conns.clear();
        for (auto& c : st.draining_conns)
          self->send(c, force_atom_v);
        self->quit();
      },
      [self](evict_atom, caf::timespan max_idle) -> caf::result<std::uint64_t> {
        auto& st = self->state;
        auto now = self->clock().now();
        retire_expired(self, now);
        std::vector<conn_entry*> candidates;
        for (auto& c : st.conns)
          if (c.phase == conn_phase::ready && c.leases == 0 && now - c.last_used >= max_idle)
            candidates.push_back(&c);
        if (candidates.empty()) {
          maybe_offer_retirement(self);
          return std::uint64_t{0};
        }
        auto rp = self->make_response_promise<std::uint64_t>();
        st.evictions.erase(std::remove_if(st.evictions.begin(), st.evictions.end(),
                                          [](auto& e) { return !e.pending(); }),
                           st.evictions.end());
        st.evictions.push_back(rp);
        auto remaining = std::make_shared<std::size_t>(candidates.size());
        auto closed = std::make_shared<std::uint64_t>(0);
        for (auto* c : candidates) {
          // Not leasable while the connection decides (it sees requests in flight that a
          // released lease may have left behind).
          c->phase = conn_phase::evicting;
          auto id = c->id;
          auto done = [self, rp, remaining, closed]() mutable {
            if (--*remaining == 0 && rp.pending()) {
              rp.deliver(*closed);
              serve_waiters(self);
            }
          };
          self->request(c->handle, std::chrono::seconds(10), evict_atom_v, max_idle)
              .then(
                  [self, id, closed, done](bool evicted) mutable {
                    auto* c = find_conn(self->state, id);
                    if (evicted) {
                      ++*closed;
                      if (c != nullptr) {
                        self->demonitor(c->handle.address());
                        remove_conn(self->state, id);
                      }
                    } else if (c != nullptr && c->phase == conn_phase::evicting) {
                      c->phase = conn_phase::ready;
                    }
                    done();
                  },
                  [self, id, done](caf::error&) mutable {
                    if (auto* c = find_conn(self->state, id);
                        c != nullptr && c->phase == conn_phase::evicting)
                      c->phase = conn_phase::ready;
                    done();
                  });
        }
        return rp;
      },
      [self](drain_atom) -> caf::result<shutdown_report> {
        auto& st = self->state;
        auto rp = self->make_response_promise<shutdown_report>();
        st.drain_rps.push_back(rp);
        if (st.draining) {
          finish_drain_if_done(self);
          return rp;
        }
        st.draining = true;
        st.drain = shutdown_report{};
        st.drain_started = self->clock().now();
        for (auto& w : st.waiters)
          w.rp.deliver(make_caf_error(errc::shutting_down, "user '" + st.user + "' is draining"));
        st.waiters.clear();
        st.discard_spawns = st.spawning;
        // Every connection drains, those already draining (max_lifetime) included: they join.
        for (auto& c : st.conns)
          st.draining_conns.push_back(c.handle);
        st.conns.clear();
        for (auto& handle : st.draining_conns) {
          ++st.drains_pending;
          self->request(handle, caf::infinite, drain_atom_v)
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
        finish_drain_if_done(self);
        return rp;
      },
      [self](force_atom) {
        for (auto& c : self->state.draining_conns)
          self->send(c, force_atom_v);
      },
      [self](retire_atom) {
        auto& st = self->state;
        bool empty = st.conns.empty() && st.draining_conns.empty() && st.spawning == 0 &&
                     st.waiters.empty() && st.leases.empty() && st.drains_pending == 0;
        st.retire_offered = false;
        if (empty)
          self->quit();
        return empty;
      },
      [self](conn_up_atom, std::uint64_t id) {
        auto& st = self->state;
        if (auto* c = find_conn(st, id)) {
          c->phase = conn_phase::ready;
          c->last_used = self->clock().now();
          st.failures = 0;
          st.retry_at = time_point{};
          st.last_failure = error{};
          serve_waiters(self);
        }
      },
      [self](conn_down_atom, std::uint64_t id, const caf::error& reason) {
        auto& st = self->state;
        auto i =
            std::find_if(st.conns.begin(), st.conns.end(), [id](auto& c) { return c.id == id; });
        if (i == st.conns.end())
          return;
        self->demonitor(i->handle.address());
        bool connecting = i->phase == conn_phase::connecting;
        st.conns.erase(i); // stops counting against the cap at once
        auto err = from_caf_error(reason, errc::connection_lost);
        if (connecting) {
          handshake_failed(self, err);
        } else {
          log().warn("connection #{} of '{}' lost: {}", id, st.user, err.to_string());
          serve_waiters(self);
        }
      },
      [self](timeout_atom, std::uint64_t generation) {
        auto& st = self->state;
        if (generation != st.timer_generation)
          return;
        st.timer_at = time_point::max();
        expire_waiters(self);
      },
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

user_pool_actor spawn_user_pool(caf::local_actor* parent, std::string user, endpoint ep,
                                supervisor_actor supervisor,
                                std::shared_ptr<const actor_context> ctx) {
  return parent->spawn(user_pool_impl, std::move(user), std::move(ep), std::move(supervisor),
                       std::move(ctx));
}

} // namespace sshpool
