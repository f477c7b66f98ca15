// The agent listener's admission of TCP connections, before any SSH byte: how many sessions
// may be unauthenticated at once in total and per source, and which sources are refused for
// a while because their sessions kept failing (like sshd's MaxStartups and
// PerSourcePenalties). Plain C++ with time passed in, so it is tested without sockets.
//
// A source is an IPv4 address, or the /64 prefix of an IPv6 address (as sshd groups them:
// one host usually holds a whole /64).
//
// Penalties are a debt of time per source: each failed session adds its penalty to the
// source's debt, which runs down in real time. A source whose debt reaches `min` is refused
// until the debt is paid (at most `max` ahead). A source that fails now and then, slower
// than its debt runs down, is never refused. The table holds at most `max_sources`
// entries: when full, paid-up entries go first, then the one whose debt ends soonest.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "sshpool/ssh/agent_listener.hpp"

namespace sshpool::ssh {

class agent_gate {
public:
  using clock = std::chrono::steady_clock;

  agent_gate(std::size_t max_startups, std::size_t max_per_source, agent_penalties penalties);

  /// A new TCP connection from `source` (see `source_key`): counted as a startup, or the
  /// refusal (`max_startups`, `max_startups_per_source`, `penalized_source`).
  std::optional<agent_refusal> admit(const std::string& source, clock::time_point now);

  /// A startup of `source` ended (handed on or failed); `penalty` (zero: none) adds to its
  /// debt.
  void finish(const std::string& source, std::chrono::milliseconds penalty, clock::time_point now);

  /// Startups now (sessions not yet handed on).
  std::size_t startups() const noexcept { return startups_; }
  /// Sources refused now.
  std::size_t penalized(clock::time_point now) const;
  /// Entries of the penalty table (at most `max_sources`).
  std::size_t tracked_sources() const noexcept { return debts_.size(); }

private:
  struct debt {
    clock::time_point paid_at;
    clock::time_point refused_until;
  };

  void make_room(clock::time_point now);

  std::size_t max_startups_;
  std::size_t max_per_source_;
  agent_penalties penalties_;
  std::size_t startups_ = 0;
  std::unordered_map<std::string, std::size_t> per_source_;
  std::unordered_map<std::string, debt> debts_;
};

/// The source of a numeric peer address: the address itself for IPv4 (an IPv4-mapped IPv6
/// address counts as IPv4), the /64 prefix ("2001:db8:1:2::/64") for IPv6.
std::string source_key(std::string_view address);

} // namespace sshpool::ssh
