// The "users" object of sshpool-demo's config file (see settings.hpp), and the config file
// helpers settings.cpp shares with it. A user is reached in one of two modes:
//
//   "mode": "dial" (the default)  the gateway dials the user's sshd: host, port, username,
//                                 identity_file (+ passphrase_file), known_hosts_file,
//                                 host_keys, ciphers, server_nodelay, target_host, target_port
//   "mode": "agent"               the user's machine dials in to the agent listener with
//                                 `ssh -N -R target_port:localhost:PORT user@gateway`:
//                                 authorized_keys_file (its public keys), target_port (the port
//                                 it gives to -R)
//
// A key of the other mode is an error (it would be silently ignored otherwise), and so is an
// agent user while no agent listener is configured (see check_agent_users). Both modes take
// max_response_bytes, and the client authentication keys api_keys_sha256 and
// forward_authorization (see auth_settings.hpp). Files are checked now: an authorized_keys file
// must hold a usable key.
//
// Thread-safety: pure functions over their arguments.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "gateway/settings.hpp"

namespace sshpool::gateway {

/// Counts and sizes are bounded so that conversions never overflow, and to catch typos.
inline constexpr std::uint64_t max_config_count = std::uint64_t{1} << 40;

/// `path` relative to `base_dir` (the config file's directory) unless absolute.
std::string resolve_path(const std::string& path, const std::string& base_dir);

/// Why `path` is not a regular file that can be opened for reading, or empty (the content
/// is not read).
std::string check_readable(const std::string& path);

/// The text form of a JSON scalar (numbers, booleans, strings); false for anything else.
bool scalar_text(const nlohmann::json& v, std::string& out);

/// Parses `users` (from the file `where`, relative paths from `base_dir`) into `cfg.users`.
/// Blocking: it loads private keys and authorized_keys files.
expected<void> load_users(const nlohmann::json& users, const std::string& where,
                          const std::string& base_dir, gateway_config& cfg);

/// Checks what the users need of the top-level settings once every source was applied: an
/// agent user needs `agent_listen`.
expected<void> check_agent_users(const gateway_config& cfg);

/// The users as --check-config shows them (paths, never a key or passphrase).
nlohmann::json describe_users(const gateway_config& cfg);

} // namespace sshpool::gateway
