// The config file's authentication settings (see auth.hpp): the top-level `jwt` object, a
// user's `api_keys_sha256`, and the checks once every source was applied: no API key hash
// given twice, and no listen address other than loopback without authentication unless
// `allow_unauthenticated` is true.
//
//   "jwt": {"public_key_file": "jwks.json", "issuer": "https://id.example",
//           "audience": "sshpool", "leeway_seconds": 30}
//
// Thread-safety: pure functions over their arguments.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "gateway/settings.hpp"

namespace sshpool::gateway {

/// Parses a user's `api_keys_sha256` (an array of 64 hex digits each) into `u`, lower
/// case; returns why it is invalid, or an empty string.
std::string apply_api_keys(const nlohmann::json& value, user_config& u);

/// Parses the `jwt` object (from the file `where`, its key file relative to `base_dir`)
/// into `cfg.jwt` and loads the keys. Blocking: it reads the key file.
expected<void> load_jwt(const nlohmann::json& value, const std::string& where,
                        const std::string& base_dir, gateway_config& cfg);

/// Whether any authentication is configured (a user with API keys, or `jwt`).
bool auth_configured(const gateway_config& cfg);

/// Whether `host` (as `listen` holds it) is loopback: localhost, 127.0.0.0/8, ::1 (or an
/// IPv4-mapped 127.x address). A name other than localhost is not.
bool is_loopback(const std::string& host);

/// The checks once every source was applied (see the top of this file).
expected<void> check_auth(const gateway_config& cfg);

/// The `jwt` object as --check-config shows it (null if none); it loads back.
nlohmann::json describe_jwt(const gateway_config& cfg);

} // namespace sshpool::gateway
