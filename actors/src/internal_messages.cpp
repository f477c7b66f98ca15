// Registration of every message type an engine needs: the public block (messages/) and the
// internal one (internal_messages.hpp).
#include "internal_messages.hpp"

#include <caf/actor_system_config.hpp>

#include "sshpool/engine.hpp"

namespace sshpool {

void add_message_types(caf::actor_system_config& cfg) {
  detail::add_public_message_types(cfg);
  cfg.add_message_types<caf::id_block::sshpool_internal>();
}

} // namespace sshpool
