// The cluster actor of a node (cluster.cpp) and the checks of a cluster node's actor system
// and TLS files (cluster_modules.cpp).
#pragma once

#include "cluster_messages.hpp"

namespace sshpool {

/// Spawns the cluster actor of a node configured by `cfg` (validated). It sends its first
/// view (this node alone) to `views` at once; listen_atom publishes it and starts the
/// dialing and the heartbeats. `supervisor` goes to the other nodes in the hello.
cluster_actor spawn_cluster(caf::actor_system& sys, cluster_config cfg, supervisor_actor supervisor,
                            view_sink views);

/// Whether `sys` can run a cluster node: the middleman and the OpenSSL manager loaded, with
/// certificate authentication (add_cluster_modules); `invalid_argument` naming what lacks.
expected<void> check_cluster_system(caf::actor_system& sys);

/// Loads cfg's certificate, key (which must belong to the certificate) and CA the way CAF's
/// OpenSSL module will; `invalid_argument` naming the file and the reason.
/// (CAF loads them for every connection, on its I/O thread, and cannot report a failure.)
expected<void> check_tls_files(const cluster_config& cfg);

} // namespace sshpool
