// The config file's `cluster` object (issue #17): this gateway is one node of several that
// share the users (every node lists the same users; each user has one owner node, which
// alone holds its SSH connections, and the others hand its requests to the owner over CAF's
// middleman on mutual TLS; see docs/cluster.md):
//
//   "cluster": {"node_id": "n1", "listen": "10.0.0.1:4100",
//               "peers": ["10.0.0.2:4100", "10.0.0.3:4100"],
//               "ca_file": "cluster-ca.pem", "cert_file": "n1.pem", "key_file": "n1.key",
//               "heartbeat_interval": 500, "heartbeat_timeout": 3000}
//
// node_id, listen and the three TLS files are required: the middleman's port refuses any peer
// without a certificate of the cluster's CA, whatever the address it listens on (keep it
// private all the same). Here the section is read: its keys and their JSON types, paths made
// relative to the config file and the files checked for readability (the engine loads
// them); the values' rules (a node id's characters, listen a numeric IPv4:port or
// [IPv6]:port, peers HOST:PORT, the TLS files present, heartbeat_timeout above
// heartbeat_interval) are the engine's `validate`, whose errors name the key as well
// (`cluster.listen ...`). Durations are in milliseconds, like every duration of the config.
// The section is read from the file only (no environment variable or flag) and cannot
// change on SIGHUP.
//
// Thread-safety: pure functions over their arguments.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "gateway/settings.hpp"

namespace sshpool::gateway {

/// Parses the `cluster` object (from the file `where`, its files relative to `base_dir`)
/// into `cfg.engine.cluster`; errors name the key (`cluster.listen: ...`).
expected<void> load_cluster(const nlohmann::json& value, const std::string& where,
                            const std::string& base_dir, gateway_config& cfg);

/// The `cluster` object as --check-config shows it (null if not a cluster node); it loads
/// back.
nlohmann::json describe_cluster(const gateway_config& cfg);

} // namespace sshpool::gateway
