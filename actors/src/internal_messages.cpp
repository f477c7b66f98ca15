// Registration of every message type an engine needs: the public block (messages/), the
// internal one (internal_messages.hpp) and the cluster protocol's (cluster_messages.hpp); the
// agent offer's members.
#include "internal_messages.hpp"

#include <caf/actor_system_config.hpp>

#include "cluster_messages.hpp"

#include "sshpool/engine.hpp"

namespace sshpool {

agent_offer::agent_offer(std::string user, ssh::agent_handle handle)
    : user_(std::move(user)), shared_(std::make_shared<shared>()) {
  shared_->handle = std::move(handle);
}

ssh::agent_handle agent_offer::take() {
  if (!shared_)
    return {};
  return std::move(shared_->handle);
}

void agent_offer::refuse(const std::string& reason) {
  if (!shared_)
    return;
  shared_->refusal = reason;
  shared_->handle.refuse(reason);
}

const std::string& agent_offer::refusal() const {
  static const std::string none;
  return shared_ ? shared_->refusal : none;
}

void add_message_types(caf::actor_system_config& cfg) {
  detail::add_public_message_types(cfg);
  cfg.add_message_types<caf::id_block::sshpool_internal>();
  cfg.add_message_types<caf::id_block::sshpool_cluster>();
}

} // namespace sshpool
