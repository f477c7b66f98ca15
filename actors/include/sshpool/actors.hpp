// For CAF-based services: the typed actor handles of an engine. Send requests to the
// supervisor (acquire_atom, release_atom, close_atom, stats_atom, endpoint_atom) and to the
// leased connection actors (forward_atom; stream_atom, ack_atom and cancel_atom for a
// stream) from your own actors instead of blocking on the facade. The interfaces are in
// sshpool/messages.hpp. Errors arrive as caf::error of the "sshpool" category (see
// from_caf_error).
//
// These requests need no CAF timeout (`caf::infinite`): an acquire is answered within
// acquire_timeout + connect_timeout, a forward by the deadline it carries, and a connection
// that closes fails what it holds. Each timed request arms a timer in CAF's clock thread,
// which halves the message rate (see the pool-ops benchmark).
#pragma once

#include "sshpool/engine.hpp"
#include "sshpool/messages.hpp"

namespace sshpool {

/// The supervisor of `e`.
supervisor_actor supervisor_of(const engine& e);

} // namespace sshpool
