// The book of one user's pool: its connections and their phases, the leases, the FIFO of
// waiters, which connection a caller gets, and counts kept as they change (never rescanned).
// Mechanism only, plain C++ (no CAF, no timers): the user_pool actor keeps the policy
// (backoff, lifetime, validation, eviction, drain, retirement), the actor handles and the
// response promises, keyed by the ids used here.
//
// One phase per connection, changed by transition() alone:
//
//   permit asked ── permit_granted() ──► connecting ──► ready ◄──► validating
//        │ permit_refused(),                              ▲
//        │ withdraw_permits()                             └──► evicting
//        ▼
//    (no entry)      connecting, ready, validating, evicting ──► draining or closing
//                    draining, closing (any phase, for a crash) ── remove(): the actor is down
//
// An agent (reverse mode: the user's machine dialed in) enters as connecting without a
// permit asked (adopt()), and moves like any other connection, except that it never
// expires and is never proposed for eviction (expired_idle() and unused_for() skip it): it
// could not come back by itself.
//
// Counted against max_connections: permits asked + connecting + ready + validating +
// evicting. A lease is only ever made on a ready connection that has not expired.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace sshpool {

/// The phase of one connection of a pool.
enum class conn_phase : std::uint8_t {
  /// Spawned, its handshake running.
  connecting,
  /// Up; leasable until it expires.
  ready,
  /// Idle for long: probed before its next lease.
  validating,
  /// Asked whether it is idle enough to close (not leasable while it decides).
  evicting,
  /// Finishing what is in flight, then closing (a drain, or past its lifetime).
  draining,
  /// Closed or lost; gone once its actor is down.
  closing,
};

/// How many phases there are.
inline constexpr std::size_t conn_phase_count = 6;

/// Whether a connection in phase `p` counts against max_connections.
constexpr bool counts_against_cap(conn_phase p) {
  return p == conn_phase::connecting || p == conn_phase::ready || p == conn_phase::validating ||
         p == conn_phase::evicting;
}

/// Whether a connection in phase `p` drains.
constexpr bool is_draining(conn_phase p) {
  return p == conn_phase::draining;
}

/// Whether a connection in phase `p` is on its way to a ready state (handshake or probe).
constexpr bool is_pending(conn_phase p) {
  return p == conn_phase::connecting || p == conn_phase::validating;
}

/// The connections, leases and waiters of one pool.
class pool_book {
public:
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;

  struct limits {
    /// Connections counted against the cap (max_connections_per_user).
    std::size_t max_connections = 1;
    /// Leases per connection (max_channels_per_connection).
    std::size_t max_channels = 1;
    /// Callers in the FIFO (max_waiters_per_user).
    std::size_t max_waiters = 1;
    /// An idle connection unused for longer is probed before its next lease.
    duration validation_idle_threshold{};
  };

  struct entry {
    std::uint64_t id = 0;
    conn_phase phase = conn_phase::connecting;
    /// An agent that dialed in (see adopt()).
    bool agent = false;
    std::uint32_t leases = 0;
    /// Not leasable from here on.
    time_point expires;
    /// When it was last leased, released or found alive.
    time_point last_used;
  };

  struct waiter {
    std::uint64_t id = 0;
    time_point deadline;
  };

  /// A lease made: its id and its connection's.
  struct grant {
    std::uint64_t lease = 0;
    std::uint64_t connection = 0;
  };

  /// Whether serve() may ask for a new connection.
  enum class connect_rule {
    /// Yes.
    now,
    /// Not yet (a reconnect backoff): serve() says it would have.
    later,
    /// No (a drain).
    never,
  };

  /// What serve() and expire() decided, carried out by the owner. Called while the book
  /// works: an implementation may read the book but not change it.
  class effects {
  public:
    virtual ~effects() = default;
    /// Waiter `waiter` left the FIFO with lease `g`.
    virtual void granted(std::uint64_t waiter, grant g) = 0;
    /// Connection `id` is now validating: probe it.
    virtual void validate(std::uint64_t id) = 0;
    /// A permit for one more connection is now asked: ask the supervisor.
    virtual void connect() = 0;
    /// Waiter `waiter` passed its deadline; it leaves the FIFO after this call.
    virtual void expired(std::uint64_t waiter) = 0;
  };

  pool_book() = default;
  explicit pool_book(limits lim) : limits_(lim) {}

  const limits& limit() const { return limits_; }

  // -- connections ----------------------------------------------------------------------

  /// A permit asked by serve() came: connection `id` enters as connecting.
  void permit_granted(std::uint64_t id, time_point now, time_point expires);
  /// Agent `id` dialed in: it enters as connecting, never expires and is never evicted.
  void adopt(std::uint64_t id, time_point now);
  /// A permit asked by serve() was refused.
  void permit_refused();
  /// Forgets every permit asked and not answered yet; returns how many.
  std::size_t withdraw_permits();

  /// The connection `id`, or null.
  const entry* find(std::uint64_t id) const;
  /// Moves connection `id` to phase `to`; throws std::logic_error for an unknown id or a
  /// move the diagram above does not have.
  void transition(std::uint64_t id, conn_phase to);
  /// Connection `id` was used (or found alive) at `now`.
  void touch(std::uint64_t id, time_point now);
  /// Makes every connection but the agents expire by `now` (their endpoint changed): none is
  /// leased again, idle ones are for expired_idle(), leased ones once released.
  void expire_all(time_point now);
  /// Forgets connection `id` (its actor is down); returns the phase it had, if it was known.
  std::optional<conn_phase> remove(std::uint64_t id);

  /// The connections in phases for which `pred` holds.
  std::vector<std::uint64_t> ids_where(bool (*pred)(conn_phase)) const;
  /// The ready connections without a lease that expired by `now` (never an agent).
  std::vector<std::uint64_t> expired_idle(time_point now) const;
  /// The ready connections without a lease unused for at least `idle` (never an agent).
  std::vector<std::uint64_t> unused_for(time_point now, duration idle) const;
  /// Every connection, in the order they came.
  const std::vector<entry>& entries() const { return entries_; }

  // -- leases ---------------------------------------------------------------------------

  /// A lease for a caller arriving at `now`, without waiting: none if others wait; else an
  /// idle connection used recently, else (at the cap) the least leased one below the
  /// channel cap.
  std::optional<grant> lease_now(time_point now);
  /// Ends lease `lease` of connection `connection`; false if it is not held.
  bool release(std::uint64_t lease, std::uint64_t connection, time_point now);

  // -- waiters --------------------------------------------------------------------------

  /// Whether the FIFO is full.
  bool waiters_full() const { return waiters_.size() >= limits_.max_waiters; }
  /// Appends a waiter until `deadline`; returns its id.
  std::uint64_t enqueue(time_point deadline);
  /// Empties the FIFO; returns its waiters in order.
  std::vector<std::uint64_t> take_waiters();
  /// The FIFO, head first.
  const std::deque<waiter>& waiters() const { return waiters_; }

  /// Serves the FIFO in order: each head gets an idle connection used recently; else an
  /// idle one unused for long is validated first; else, unless every remaining waiter has a
  /// pending handshake (or probe) coming, a new connection below the cap as `rule` allows;
  /// else the least leased connection below the channel cap; else the head waits. Returns
  /// true if it would have asked for a connection but `rule` said later.
  bool serve(time_point now, connect_rule rule, effects& fx);

  /// Removes waiters whose deadline passed by `now`, except the first ones, as many as
  /// handshakes and probes are pending: they wait for those (bounded by their deadlines).
  /// Returns the earliest deadline left (time_point::max() if none).
  time_point expire(time_point now, effects& fx);

  // -- counts (kept, O(1)) --------------------------------------------------------------

  /// Permits asked and not answered.
  std::size_t permits_asked() const { return asked_; }
  /// Connections in phase `p`.
  std::size_t count(conn_phase p) const { return in_phase_[index(p)]; }
  /// Permits asked + connections counted against the cap.
  std::size_t counted() const { return counted_; }
  /// Agents counted against the cap.
  std::size_t agents() const { return agents_; }
  /// Permits asked + connections connecting or validating.
  std::size_t pending() const { return pending_; }
  /// Leases on connections counted against the cap.
  std::size_t active_leases() const { return active_leases_; }
  /// Ready connections without a lease.
  std::size_t idle() const { return idle_; }
  /// Leases held, on any connection (gone ones included).
  std::size_t lease_records() const { return leases_.size(); }
  /// Callers waiting.
  std::size_t waiting() const { return waiters_.size(); }
  /// Whether nothing is left: no connection, permit asked, lease or waiter.
  bool empty() const {
    return entries_.empty() && asked_ == 0 && leases_.empty() && waiters_.empty();
  }

  /// Whether some ready connection has not expired by `now`.
  bool any_leasable(time_point now) const;

  /// The counts in words, for error messages.
  std::string describe() const;

private:
  static constexpr std::size_t index(conn_phase p) { return static_cast<std::size_t>(p); }

  entry* find_mutable(std::uint64_t id);
  bool leasable(const entry& c, time_point now) const {
    return c.phase == conn_phase::ready && now < c.expires;
  }
  bool stale(const entry& c, time_point now) const {
    return c.leases == 0 && now - c.last_used > limits_.validation_idle_threshold;
  }
  entry* idle_ready(time_point now);
  entry* stale_idle(time_point now);
  entry* least_leased(time_point now);
  /// Adds `c` to (sign +1) or takes it from (-1) every count.
  void account(const entry& c, int sign);
  /// One lease more (by +1) or less (-1) on `c`, and the counts that follow; the phase stays.
  /// What account() before and after would do, at a fraction of its cost (every lease and
  /// release comes here).
  void add_leases(entry& c, int by);
  grant lease(entry& c, time_point now);

  limits limits_;
  std::vector<entry> entries_;
  std::deque<waiter> waiters_;
  /// Lease id -> connection id (the connection may be gone meanwhile).
  std::unordered_map<std::uint64_t, std::uint64_t> leases_;
  std::uint64_t next_lease_ = 0;
  std::uint64_t next_waiter_ = 0;
  std::size_t asked_ = 0;
  std::array<std::size_t, conn_phase_count> in_phase_{};
  std::size_t counted_ = 0;
  std::size_t agents_ = 0;
  std::size_t pending_ = 0;
  std::size_t active_leases_ = 0;
  std::size_t idle_ = 0;
};

} // namespace sshpool
