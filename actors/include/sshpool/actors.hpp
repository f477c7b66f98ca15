// For CAF-based services: the typed actor handles of an engine. Send requests to the
// supervisor (acquire_atom, release_atom, close_atom, stats_atom, endpoint_atom) and to the
// leased connection actors (forward_atom) from your own actors instead of blocking on the
// facade. Errors arrive as caf::error of the "sshpool" category (see from_caf_error).
#pragma once

#include "sshpool/engine.hpp"
#include "sshpool/messages.hpp"

namespace sshpool {

/// The supervisor of `e`.
supervisor_actor supervisor_of(const engine& e);

} // namespace sshpool
