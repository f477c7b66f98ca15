// The supervisor actor: the root of an engine's actor tree.
#pragma once

#include <memory>

#include "context.hpp"
#include "internal_messages.hpp"

namespace sshpool {

/// Spawns the supervisor of one engine; services get it as a supervisor_actor.
supervisor_actor spawn_supervisor(caf::actor_system& sys, std::shared_ptr<const actor_context> ctx);

/// Checks that an endpoint names a server, a user, key files and a target (agent mode: an
/// authorized_keys file and the port its agents forward).
expected<void> validate(const endpoint& ep);

/// Checks a user id: non-empty, at most 1024 bytes, no control characters.
expected<void> validate_user(const std::string& user);

} // namespace sshpool
