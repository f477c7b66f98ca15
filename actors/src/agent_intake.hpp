// The engine's side of reverse mode's door: the agent users' policies (their authorized keys
// and the port their agents may forward), which the agent listener's thread looks up, and
// the listener itself, whose agents it hands to the supervisor (agent_atom) without
// waiting. The supervisor routes each to its user's pool or refuses it (supervisor.cpp).
//
//   engine::set_endpoint(agent) ── load_policy (caller's thread, blocking) ──► set(user)
//   listener thread: lookup(user) ──► policy or nullptr (unknown, or a dial user)
//                    on_agent(handle) ──► agent_offer ──► supervisor (anon_send)
//   engine shutdown: stop() first, then the actors
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "internal_messages.hpp"
#include "sshpool/config.hpp"
#include "sshpool/engine.hpp"

namespace sshpool {

/// The agent users' policies and the agent listener of one engine. Thread-safe.
class agent_intake {
public:
  agent_intake() = default;
  /// Stops the listener.
  ~agent_intake();
  agent_intake(const agent_intake&) = delete;
  agent_intake& operator=(const agent_intake&) = delete;

  /// The policy of an agent endpoint: the keys of its authorized_keys file (read here,
  /// blocking) and its target_port as the one port its agents may forward.
  /// `invalid_argument` if the file cannot be read or holds no usable key (with the
  /// reasons of the lines skipped).
  static expected<std::shared_ptr<const ssh::agent_policy>> load_policy(const endpoint& ep);

  /// Sets the policy of `user`; nullptr removes it (its agents no longer authenticate).
  void set(const std::string& user, std::shared_ptr<const ssh::agent_policy> policy);

  /// Starts the listener of `cfg`, whose agents go to `supervisor`. Once only.
  expected<void> start(const agent_listener_config& cfg, supervisor_impl supervisor);

  /// Stops the listener (idempotent): no new agent; those handed on are not affected.
  void stop();

  /// The listener's port, host key and counters; nullopt without a listener.
  std::optional<agent_listener_status> status() const;

private:
  std::shared_ptr<const ssh::agent_policy> lookup(const std::string& user) const;

  mutable std::mutex mx_;
  std::unordered_map<std::string, std::shared_ptr<const ssh::agent_policy>> policies_;
  /// Last: destroyed (stopped) first, while the policies it looks up still exist.
  std::unique_ptr<ssh::agent_listener> listener_;
};

} // namespace sshpool
