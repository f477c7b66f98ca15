// The relay: a local connection actor that stands for a connection of another cluster node
// (the owner of a lease's user), so that a lessee on this node uses a remote lease exactly
// as a local one. See relay.cpp.
#pragma once

#include <string>

#include <caf/fwd.hpp>

#include "internal_messages.hpp"

namespace sshpool {

/// A relay in full: a connection to its lessee, the sink of its streams to the remote
/// connection, and the supervisor's two controls.
using relay_actor = connection_actor::extend_with<stream_sink_actor>::extend<
    // The engine stops: everything fails with this error.
    caf::reacts_to<lost_atom, caf::error>,
    // The lease was released: finish what was sent before, then quit.
    caf::reacts_to<retire_atom>>;

/// An error from another node as this node's callers see it: the owner's errors as they are
/// (errc kept), CAF's own as timeout (a missed deadline) or connection_lost (the remote
/// actor or its node unreachable).
caf::error relayed_error(const caf::error& err);

/// Spawns the relay of `remote`, a connection of `node` leased for `user`.
relay_actor spawn_relay(caf::local_actor* parent, connection_actor remote, std::string user,
                        std::string node);

} // namespace sshpool
