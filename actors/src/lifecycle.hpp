// The cleanup and shutdown actors of an engine.
#pragma once

#include "internal_messages.hpp"

namespace sshpool {

/// Spawns the cleanup actor of `supervisor` with `cfg` (not running until start_atom).
cleanup_actor spawn_cleanup(caf::actor_system& sys, supervisor_actor supervisor,
                            cleanup_config cfg);

/// Spawns the shutdown actor of `supervisor`; `force_after_grace` cuts what remains at the
/// end of a drain's grace period.
shutdown_actor spawn_shutdown(caf::actor_system& sys, supervisor_actor supervisor,
                              bool force_after_grace);

} // namespace sshpool
