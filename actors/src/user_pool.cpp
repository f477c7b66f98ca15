// The user_pool actor: one user's SSH connections, leases and waiters.
//
// Connection entries:
//                 spawn_atom reply        conn_up
//   (spawning) ─────────────────► connecting ──────► ready ──┐ lease / release
//        │ error                    │ conn_down        │ ◄───┘ (leases <= max_channels)
//        ▼                          ▼                  │ conn_down / close
//   handshake failed ◄──────────────┘                  ▼
//                                                   removed (stops counting at once)
//
// get_connection (acquire) gives, in this order: an idle ready connection (no lease); else,
// while the user is under max_connections_per_user (spawning + connecting + ready), a new
// connection whose handshake the caller waits for; else the ready connection with the
// fewest leases below max_channels_per_connection; else a place in a FIFO of at most
// max_waiters_per_user callers, each bounded by acquire_timeout (then pool_exhausted).
// Handshakes never outnumber the callers waiting for them and never exceed the cap, so
// concurrent first calls cannot start a storm or orphan a connection.
#include "user_pool.hpp"

#include <algorithm>
#include <deque>
#include <unordered_map>
#include <vector>

#include <caf/all.hpp>

#include "handlers.hpp"
#include "sshpool/ssh/log.hpp"

namespace sshpool {

namespace {

using time_point = caf::actor_clock::time_point;

/// The supervisor answers spawn requests at once; this only bounds a stuck supervisor.
constexpr auto spawn_timeout = std::chrono::seconds(30);

struct conn_entry {
  connection_actor handle;
  std::uint64_t id = 0;
  bool ready = false;
  std::uint32_t leases = 0;
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
  bool stopped = false;
  user_stats stats;
};

using self_ptr = user_pool_actor::stateful_pointer<user_pool_state>;

std::size_t pending_handshakes(const user_pool_state& st) {
  return st.spawning + static_cast<std::size_t>(std::count_if(st.conns.begin(), st.conns.end(),
                                                              [](auto& c) { return !c.ready; }));
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

conn_entry* idle_ready(user_pool_state& st) {
  for (auto& c : st.conns)
    if (c.ready && c.leases == 0)
      return &c;
  return nullptr;
}

conn_entry* least_leased(user_pool_state& st) {
  conn_entry* best = nullptr;
  for (auto& c : st.conns)
    if (c.ready && c.leases < st.ctx->pool.max_channels_per_connection &&
        (best == nullptr || c.leases < best->leases))
      best = &c;
  return best;
}

lease make_lease(user_pool_state& st, conn_entry& c) {
  ++c.leases;
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

void handshake_failed(self_ptr self, const error& err);
void serve_waiters(self_ptr self, bool may_connect = true);

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
            if (st.stopped || st.discard_spawns > 0) {
              // Asked for before a close or stop: it must not appear afterwards.
              if (st.discard_spawns > 0)
                --st.discard_spawns;
              self->send(conn, close_atom_v);
              serve_waiters(self);
              return;
            }
            self->monitor(conn);
            st.conns.push_back(conn_entry{conn, conn.id(), false, 0});
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

/// Serves waiters in FIFO order; starts handshakes only for waiters no pending handshake
/// covers (when `may_connect`).
void serve_waiters(self_ptr self, bool may_connect) {
  auto& st = self->state;
  while (!st.waiters.empty()) {
    conn_entry* c = idle_ready(st);
    if (c == nullptr) {
      auto pending = pending_handshakes(st);
      if (st.waiters.size() <= pending)
        return; // every remaining waiter has a handshake coming
      if (may_connect && total_connections(st) < st.ctx->pool.max_connections_per_user) {
        start_handshake(self);
        continue;
      }
      c = least_leased(st);
      if (c == nullptr)
        return;
    }
    auto w = std::move(st.waiters.front());
    st.waiters.pop_front();
    w.rp.deliver(make_lease(st, *c));
  }
  if (!st.waiters.empty())
    expire_waiters(self); // coverage by handshakes may have shrunk
}

void handshake_failed(self_ptr self, const error& err) {
  auto& st = self->state;
  ++st.stats.handshake_failures;
  if (st.stopped)
    return;
  // Waiters beyond what remaining handshakes and ready connections can serve get the
  // handshake's error now rather than waiting for acquire_timeout. No new handshake is
  // started here: a failing server is not hammered (backoff is the cleanup issue's).
  serve_waiters(self, false);
  bool any_ready = std::any_of(st.conns.begin(), st.conns.end(), [](auto& c) { return c.ready; });
  if (any_ready)
    return;
  auto covered = pending_handshakes(st);
  while (st.waiters.size() > covered) {
    st.waiters.front().rp.deliver(make_caf_error(err));
    st.waiters.pop_front();
  }
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
  install_exception_handler(self, [self](const std::string& what) {
    for (auto& w : self->state.waiters)
      w.rp.deliver(make_caf_error(errc::internal, what));
    self->state.waiters.clear();
  });
  self->set_down_handler([self](const caf::down_msg& dm) {
    // A connection actor ended without conn_down (e.g. it crashed): drop it.
    auto& st = self->state;
    auto i = std::find_if(st.conns.begin(), st.conns.end(),
                          [&](auto& c) { return c.handle.address() == dm.source; });
    if (i == st.conns.end())
      return;
    bool was_ready = i->ready;
    st.conns.erase(i);
    if (was_ready)
      serve_waiters(self);
    else
      handshake_failed(self, from_caf_error(dm.reason, errc::connection_lost));
  });
  return {
      [self](acquire_atom, const std::string&) -> caf::result<lease> {
        auto& st = self->state;
        if (st.stopped)
          return make_caf_error(errc::shutting_down, "the engine is stopping");
        if (st.waiters.empty()) {
          if (auto* c = idle_ready(st))
            return make_lease(st, *c);
          if (total_connections(st) >= st.ctx->pool.max_connections_per_user)
            if (auto* c = least_leased(st))
              return make_lease(st, *c);
        }
        if (st.waiters.size() >= st.ctx->pool.max_waiters_per_user) {
          ++st.stats.acquire_timeouts;
          return make_caf_error(errc::pool_exhausted, "too many callers waiting for user '" +
                                                          st.user + "': " + describe(st));
        }
        auto rp = self->make_response_promise<lease>();
        auto deadline = self->clock().now() + st.ctx->pool.acquire_timeout;
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
        if (auto* c = find_conn(st, i->second))
          --c->leases;
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
          if (c.ready && c.leases == 0)
            ++result.idle;
        }
        result.waiters = static_cast<std::uint32_t>(st.waiters.size());
        return result;
      },
      [self](endpoint_atom, endpoint& ep) { self->state.ep = std::move(ep); },
      [self](stop_atom) {
        auto& st = self->state;
        st.stopped = true;
        for (auto& w : st.waiters)
          w.rp.deliver(make_caf_error(errc::shutting_down, "the engine is stopping"));
        st.waiters.clear();
        for (auto& c : st.conns)
          self->send(c.handle, close_atom_v);
        st.conns.clear();
        self->quit();
      },
      [self](conn_up_atom, std::uint64_t id) {
        auto& st = self->state;
        if (auto* c = find_conn(st, id)) {
          c->ready = true;
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
        bool was_ready = i->ready;
        st.conns.erase(i); // stops counting against the cap at once
        auto err = from_caf_error(reason, errc::connection_lost);
        if (was_ready) {
          log().warn("connection #{} of '{}' lost: {}", id, st.user, err.to_string());
          serve_waiters(self);
        } else {
          handshake_failed(self, err);
        }
      },
      [self](timeout_atom, std::uint64_t generation) {
        auto& st = self->state;
        if (generation != st.timer_generation)
          return;
        st.timer_at = time_point::max();
        expire_waiters(self);
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
