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
  opts.listen = cfg.listen;
  opts.host_key_file = cfg.host_key_file;
  opts.login_grace = cfg.login_grace;
  opts.max_startups = cfg.max_startups;
  opts.max_startups_per_source = cfg.max_startups_per_source;
  opts.max_auth_tries = cfg.max_auth_tries;
  auto started = ssh::agent_listener::start(
      std::move(opts), [this](const std::string& user) { return lookup(user); },
      [supervisor](ssh::agent_handle agent) {
        // The listener's thread: hand it on, never wait.
        auto user = agent.user();
        caf::anon_send(supervisor, agent_atom_v, agent_offer{std::move(user), std::move(agent)});
      });
  if (!started)
    return started.error();
  listener_ = std::move(*started);
  return {};
}

void agent_intake::stop() {
  if (listener_)
    listener_->stop();
}

std::optional<agent_listener_status> agent_intake::status() const {
  if (!listener_)
    return std::nullopt;
  return agent_listener_status{listener_->port(), listener_->fingerprint(), listener_->public_key(),
                               listener_->stats()};
}

} // namespace sshpool
