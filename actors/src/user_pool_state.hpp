// The state of a user_pool actor and the steps its two source files share: user_pool.cpp
// (leases, waiters, permits, handshakes, retirement) and user_pool_drain.cpp (how
// connections leave: close, lifetime, eviction, drain, stop).
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/actor_clock.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "context.hpp"
#include "deadline_timer.hpp"
#include "internal_messages.hpp"
#include "pool_book.hpp"

namespace sshpool {

struct user_pool_state {
  using time_point = caf::actor_clock::time_point;

  static inline const char* name = "sshpool.user_pool";

  std::string user;
  endpoint ep;
  supervisor_impl supervisor;
  std::shared_ptr<const actor_context> ctx;
  pool_book book;
  /// The actors of the book's connections and the promises of its waiters, by their ids.
  std::unordered_map<std::uint64_t, connection_impl> conns;
  std::unordered_map<std::uint64_t, caf::typed_response_promise<lease>> promises;
  /// Permit requests carry this generation; a withdrawal moves it on, so that a grant for a
  /// withdrawn request is given back and its refusal ignored.
  std::uint64_t permit_generation = 0;
  /// One timer at the earliest waiter deadline.
  deadline_timer deadlines;
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
  /// Evictions waiting for their connections' answers (answered on stop, too).
  std::vector<caf::typed_response_promise<std::uint64_t>> evictions;
  bool stopped = false;
  bool retire_offered = false;
  /// Agent connections alive (reverse mode): the supervisor learns when they go 0→1 and
  /// 1→0 (a cluster node claims the user while its agent is connected here).
  std::size_t agents_alive = 0;
  std::minstd_rand rng;
  user_stats stats;
};

using pool_ptr = user_pool_actor::stateful_pointer<user_pool_state>;

// -- user_pool.cpp ----------------------------------------------------------------------------

/// Serves the waiters in FIFO order (see pool_book::serve), as the drain and the backoff
/// allow; offers to retire if nothing is left.
void serve_waiters(pool_ptr self);

/// Offers to retire once nothing is left (see user_pool.cpp).
void maybe_offer_retirement(pool_ptr self);

/// Answers the waiters (and forgets them) with `err`.
void fail_waiters(pool_ptr self, const caf::error& err);

/// Withdraws the permits asked and not granted yet (close, drain, stop).
void withdraw_permits(pool_ptr self);

// -- user_pool_drain.cpp ----------------------------------------------------------------------

/// Closes every connection that counts against the cap with `reason` (an agent's ssh prints
/// it); returns how many.
std::size_t close_all(pool_ptr self, const std::string& reason);

/// Drains idle connections past their lifetime.
void retire_expired(pool_ptr self, caf::actor_clock::time_point now);

/// Answers everyone still waiting on this pool (stop, exception): no promise is dropped.
void deliver_all(pool_ptr self, const caf::error& err);

/// The handlers of evict_atom, drain_atom, force_atom and stop_atom.
caf::result<std::uint64_t> evict(pool_ptr self, caf::timespan max_idle);
caf::result<shutdown_report> drain(pool_ptr self);
void force(pool_ptr self);
void stop(pool_ptr self);

} // namespace sshpool
