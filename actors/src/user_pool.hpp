// The user_pool actor: the connections, leases and waiters of one user.
#pragma once

#include <memory>
#include <string>

#include "context.hpp"
#include "internal_messages.hpp"

namespace sshpool {

/// Spawns the pool of `user`; it spawns its own connection actors, each after a permit from
/// `supervisor`.
user_pool_actor spawn_user_pool(caf::local_actor* parent, std::string user, endpoint ep,
                                supervisor_impl supervisor,
                                std::shared_ptr<const actor_context> ctx);

} // namespace sshpool
