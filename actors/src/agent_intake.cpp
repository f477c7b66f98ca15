#include "agent_intake.hpp"

#include <caf/send.hpp>

#include "sshpool/ssh/log.hpp"

namespace sshpool {

agent_intake::~agent_intake() {
  stop();
}

expected<std::shared_ptr<const ssh::agent_policy>> agent_intake::load_policy(const endpoint& ep) {
  auto keys = ssh::load_authorized_keys(ep.authorized_keys_file);
  if (!keys)
    return keys.error();
  std::string skipped;
  for (auto& line : keys->skipped)
    skipped += "; " + line;
  if (keys->keys.empty())
    return error{errc::invalid_argument, "authorized_keys_file " + ep.authorized_keys_file +
                                             " holds no usable key" + skipped};
  if (!skipped.empty())
    log().warn("authorized_keys_file {}: lines skipped{}", ep.authorized_keys_file, skipped);
  auto policy = std::make_shared<ssh::agent_policy>();
  policy->keys = std::move(keys->keys);
  policy->allowed_ports = {ep.target_port};
  return std::shared_ptr<const ssh::agent_policy>{std::move(policy)};
}

void agent_intake::set(const std::string& user, std::shared_ptr<const ssh::agent_policy> policy) {
  std::lock_guard<std::mutex> guard{mx_};
  if (policy)
    policies_[user] = std::move(policy);
  else
    policies_.erase(user);
}

std::shared_ptr<const ssh::agent_policy> agent_intake::lookup(const std::string& user) const {
  std::lock_guard<std::mutex> guard{mx_};
  auto i = policies_.find(user);
  return i == policies_.end() ? nullptr : i->second;
}

expected<void> agent_intake::start(const agent_listener_config& cfg, supervisor_impl supervisor) {
  ssh::agent_listener_options opts;
  static_cast<agent_listener_config&>(opts) = cfg;
  {
    std::lock_guard<std::mutex> guard{mx_};
    supervisor_ = std::move(supervisor);
  }
  auto started = ssh::agent_listener::start(
      std::move(opts), [this](const std::string& user) { return lookup(user); },
      [this](ssh::agent_handle agent) { hand_on(std::move(agent)); });
  if (!started)
    return started.error();
  listener_ = std::move(*started);
  return {};
}

void agent_intake::hand_on(ssh::agent_handle agent) {
  supervisor_impl supervisor;
  {
    std::lock_guard<std::mutex> guard{mx_};
    supervisor = supervisor_;
  }
  if (!supervisor)
    return agent.refuse(agent_goodbye);
  auto user = agent.user();
  caf::anon_send(supervisor, agent_atom_v, agent_offer{std::move(user), std::move(agent)});
}

void agent_intake::stop() {
  if (listener_)
    listener_->stop();
  // No handle of an actor outlives the engine's actor system in here.
  std::lock_guard<std::mutex> guard{mx_};
  supervisor_ = nullptr;
}

std::optional<agent_listener_status> agent_intake::status() const {
  if (!listener_)
    return std::nullopt;
  return agent_listener_status{listener_->port(), listener_->fingerprint(), listener_->public_key(),
                               listener_->stats()};
}

} // namespace sshpool
