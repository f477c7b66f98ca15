// The connection actor: one SSH connection of one user.
#pragma once

#include <memory>
#include <string>

#include "context.hpp"
#include "internal_messages.hpp"

namespace sshpool {

/// Spawns a connection actor for `user`, owned by `pool` (`parent` is the pool itself): it
/// reports to the pool only and ends when the pool does. It connects on `connect_atom`: it
/// dials `ep`, or, given an `agent` (reverse mode), adopts its session. Its lessees get it
/// as a connection_actor.
connection_impl spawn_connection(caf::local_actor* parent, std::string user, endpoint ep,
                                 user_pool_actor pool, std::shared_ptr<const actor_context> ctx,
                                 agent_offer agent = {});

} // namespace sshpool
