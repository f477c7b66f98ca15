#include "pool_book.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>

namespace sshpool {

namespace {

/// Whether the diagram in pool_book.hpp has a move from `from` to `to`.
bool allowed(conn_phase from, conn_phase to) {
  switch (from) {
  case conn_phase::connecting:
    return to == conn_phase::ready || to == conn_phase::draining || to == conn_phase::closing;
  case conn_phase::ready:
    return to != conn_phase::ready && to != conn_phase::connecting;
  case conn_phase::validating:
  case conn_phase::evicting:
    return to == conn_phase::ready || to == conn_phase::draining || to == conn_phase::closing;
  case conn_phase::draining:
  case conn_phase::closing:
    return false;
  }
  return false;
}

const char* name(conn_phase p) {
  static constexpr std::array<const char*, 6> names = {"connecting", "ready",    "validating",
                                                       "evicting",   "draining", "closing"};
  auto i = static_cast<std::size_t>(p);
  return i < names.size() ? names[i] : "?";
}

} // namespace

// -- connections ----------------------------------------------------------------------------

void pool_book::permit_granted(std::uint64_t id, time_point now, time_point expires) {
  if (asked_ == 0)
    throw std::logic_error("pool_book: a permit came that was not asked for");
  if (find(id) != nullptr)
    throw std::logic_error("pool_book: connection " + std::to_string(id) + " exists");
  --asked_;
  --counted_;
  --pending_;
  entry c;
  c.id = id;
  c.expires = expires;
  c.last_used = now;
  entries_.push_back(c);
  account(entries_.back(), +1);
}

void pool_book::adopt(std::uint64_t id, time_point now) {
  if (find(id) != nullptr)
    throw std::logic_error("pool_book: connection " + std::to_string(id) + " exists");
  entry c;
  c.id = id;
  c.agent = true;
  c.expires = time_point::max();
  c.last_used = now;
  entries_.push_back(c);
  account(entries_.back(), +1);
}

void pool_book::permit_refused() {
  if (asked_ == 0)
    throw std::logic_error("pool_book: a refusal came for a permit not asked for");
  --asked_;
  --counted_;
  --pending_;
}

std::size_t pool_book::withdraw_permits() {
  auto n = asked_;
  asked_ = 0;
  counted_ -= n;
  pending_ -= n;
  return n;
}

const pool_book::entry* pool_book::find(std::uint64_t id) const {
  for (auto& c : entries_)
    if (c.id == id)
      return &c;
  return nullptr;
}

pool_book::entry* pool_book::find_mutable(std::uint64_t id) {
  return const_cast<entry*>(find(id));
}

void pool_book::transition(std::uint64_t id, conn_phase to) {
  auto* c = find_mutable(id);
  if (c == nullptr)
    throw std::logic_error("pool_book: no connection " + std::to_string(id));
  if (!allowed(c->phase, to))
    throw std::logic_error("pool_book: connection " + std::to_string(id) + " cannot go from " +
                           name(c->phase) + " to " + name(to));
  account(*c, -1);
  c->phase = to;
  account(*c, +1);
}

void pool_book::touch(std::uint64_t id, time_point now) {
  if (auto* c = find_mutable(id))
    c->last_used = now;
}

std::optional<conn_phase> pool_book::remove(std::uint64_t id) {
  auto i = std::find_if(entries_.begin(), entries_.end(), [id](auto& c) { return c.id == id; });
  if (i == entries_.end())
    return std::nullopt;
  auto was = i->phase;
  account(*i, -1);
  entries_.erase(i);
  return was;
}

std::vector<std::uint64_t> pool_book::ids_where(bool (*pred)(conn_phase)) const {
  std::vector<std::uint64_t> ids;
  for (auto& c : entries_)
    if (pred(c.phase))
      ids.push_back(c.id);
  return ids;
}

void pool_book::expire_all(time_point now) {
  for (auto& c : entries_)
    if (!c.agent)
      c.expires = std::min(c.expires, now);
}

std::vector<std::uint64_t> pool_book::expired_idle(time_point now) const {
  std::vector<std::uint64_t> ids;
  for (auto& c : entries_)
    if (c.phase == conn_phase::ready && !c.agent && c.leases == 0 && now >= c.expires)
      ids.push_back(c.id);
  return ids;
}

std::vector<std::uint64_t> pool_book::unused_for(time_point now, duration idle) const {
  std::vector<std::uint64_t> ids;
  for (auto& c : entries_)
    if (c.phase == conn_phase::ready && !c.agent && c.leases == 0 && now - c.last_used >= idle)
      ids.push_back(c.id);
  return ids;
}

bool pool_book::any_leasable(time_point now) const {
  return std::any_of(entries_.begin(), entries_.end(),
                     [this, now](auto& c) { return leasable(c, now); });
}

std::string pool_book::describe() const {
  return std::to_string(counted_) + "/" + std::to_string(limits_.max_connections) +
         " connections (" + std::to_string(pending_) + " connecting), " +
         std::to_string(active_leases_) + " leases of at most " +
         std::to_string(limits_.max_channels) + " per connection, " +
         std::to_string(waiters_.size()) + " waiting";
}

void pool_book::add_leases(entry& c, int by) {
  // Only the lease counts move: the phase stays (see account()).
  if (counts_against_cap(c.phase))
    active_leases_ = by > 0 ? active_leases_ + 1 : active_leases_ - 1;
  bool was_idle = c.phase == conn_phase::ready && c.leases == 0;
  c.leases = by > 0 ? c.leases + 1 : c.leases - 1;
  bool is_idle = c.phase == conn_phase::ready && c.leases == 0;
  if (was_idle != is_idle)
    idle_ = is_idle ? idle_ + 1 : idle_ - 1;
}

void pool_book::account(const entry& c, int sign) {
  auto add = [sign](std::size_t& n, std::size_t by) { n = sign > 0 ? n + by : n - by; };
  add(in_phase_[index(c.phase)], 1);
  if (counts_against_cap(c.phase)) {
    add(counted_, 1);
    add(agents_, c.agent ? 1 : 0);
    add(active_leases_, c.leases);
  }
  if (is_pending(c.phase))
    add(pending_, 1);
  if (c.phase == conn_phase::ready && c.leases == 0)
    add(idle_, 1);
}

// -- selection and leases -------------------------------------------------------------------

pool_book::entry* pool_book::idle_ready(time_point now) {
  if (idle_ == 0)
    return nullptr;
  for (auto& c : entries_)
    if (leasable(c, now) && c.leases == 0 && !stale(c, now))
      return &c;
  return nullptr;
}

pool_book::entry* pool_book::stale_idle(time_point now) {
  for (auto& c : entries_)
    if (leasable(c, now) && c.leases == 0)
      return &c;
  return nullptr;
}

pool_book::entry* pool_book::least_leased(time_point now) {
  entry* best = nullptr;
  for (auto& c : entries_)
    if (leasable(c, now) && !stale(c, now) && c.leases < limits_.max_channels &&
        (best == nullptr || c.leases < best->leases))
      best = &c;
  return best;
}

pool_book::grant pool_book::lease(entry& c, time_point now) {
  add_leases(c, +1);
  c.last_used = now;
  auto id = ++next_lease_;
  leases_.emplace(id, c.id);
  return {id, c.id};
}

std::optional<pool_book::grant> pool_book::lease_now(time_point now) {
  if (!waiters_.empty())
    return std::nullopt;
  if (auto* c = idle_ready(now))
    return lease(*c, now);
  if (counted_ >= limits_.max_connections)
    if (auto* c = least_leased(now))
      return lease(*c, now);
  return std::nullopt;
}

bool pool_book::release(std::uint64_t lease, std::uint64_t connection, time_point now) {
  auto i = leases_.find(lease);
  if (i == leases_.end() || i->second != connection)
    return false;
  if (auto* c = find_mutable(connection)) {
    add_leases(*c, -1);
    c->last_used = now;
  }
  leases_.erase(i);
  return true;
}

// -- waiters --------------------------------------------------------------------------------

std::uint64_t pool_book::enqueue(time_point deadline) {
  auto id = ++next_waiter_;
  waiters_.push_back(waiter{id, deadline});
  return id;
}

std::vector<std::uint64_t> pool_book::take_waiters() {
  std::vector<std::uint64_t> ids;
  ids.reserve(waiters_.size());
  for (auto& w : waiters_)
    ids.push_back(w.id);
  waiters_.clear();
  return ids;
}

bool pool_book::serve(time_point now, connect_rule rule, effects& fx) {
  bool deferred = false;
  while (!waiters_.empty()) {
    entry* c = idle_ready(now);
    if (c == nullptr) {
      if (auto* probe = stale_idle(now)) {
        transition(probe->id, conn_phase::validating);
        fx.validate(probe->id);
        continue;
      }
      if (waiters_.size() <= pending_)
        break; // every remaining waiter has a handshake or probe coming
      if (rule != connect_rule::never && counted_ < limits_.max_connections) {
        if (rule == connect_rule::now) {
          ++asked_;
          ++counted_;
          ++pending_;
          fx.connect();
          continue;
        }
        deferred = true;
      }
      c = least_leased(now);
      if (c == nullptr)
        break;
    }
    auto w = waiters_.front();
    waiters_.pop_front();
    fx.granted(w.id, lease(*c, now));
  }
  return deferred;
}

pool_book::time_point pool_book::expire(time_point now, effects& fx) {
  auto covered = pending_;
  auto next = time_point::max();
  std::size_t position = 0;
  for (auto i = waiters_.begin(); i != waiters_.end();) {
    if (position < covered) {
      ++position;
      ++i;
    } else if (i->deadline <= now) {
      fx.expired(i->id);
      i = waiters_.erase(i);
    } else {
      next = std::min(next, i->deadline);
      ++position;
      ++i;
    }
  }
  return next;
}

} // namespace sshpool
