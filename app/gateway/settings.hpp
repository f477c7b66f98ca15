// The configuration of sshpool-demo, from three sources applied in order, later ones
// overriding earlier ones: a JSON config file (which also lists the users and how each
// user's machine is reached), environment variables with the seed's names
// (MAX_CONNECTIONS_PER_USER, MAX_IDLE_TIME, ...), and command line flags. One table of
// settings drives all three, so a setting has the same meaning, unit and checks wherever
// it comes from: file key `max_idle_time` = variable `MAX_IDLE_TIME` = flag
// `--max-idle-time` (durations in milliseconds).
//
// Any invalid value (not a number, negative, zero where it cannot be, an unknown key, an
// unreadable key file, a private key that cannot be loaded, malformed JSON) is an error
// whose message names the setting and its source; main() prints it and exits with code 2.
// Each dial user's private key is loaded (with its passphrase) to check it: encrypted with no
// passphrase_file, a wrong passphrase and a file that is not a private key are told apart;
// each agent user's authorized_keys file must hold a usable key (see user_settings.hpp).
// The agent listener's host key is left to the engine, which creates it if missing; only
// --check-config loads (or creates) it here, to show its fingerprint (see main.cpp).
// No secret is ever part of a message: key files and passphrase files are read to check
// them, never echoed.
//
// Thread-safety: pure functions over their arguments.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gateway/jwt.hpp"
#include "sshpool/config.hpp"
#include "sshpool/error.hpp"
#include "sshpool/ssh/key_check.hpp"
#include "sshpool/types.hpp"

namespace sshpool::gateway {

/// Output format of the logs.
enum class log_format { text, json };

/// One user and how the user's machine is reached.
struct user_config {
  std::string name;
  /// The passphrase (if any) is loaded from `passphrase_file` into `ep.passphrase`.
  endpoint ep;
  std::string passphrase_file;
  /// Client authentication (see auth.hpp): hex SHA-256 of each API key of this user (lower
  /// case), and whether the client's Authorization header goes upstream.
  std::vector<std::string> api_keys_sha256;
  bool forward_authorization = false;
};

/// The `jwt` object of the config file: clients' JWTs are verified with these keys and
/// checked against this policy (see jwt.hpp).
struct jwt_settings {
  std::string public_key_file;
  jwt_policy policy;
  /// Loaded from public_key_file when the config is read.
  std::shared_ptr<const jwt_keys> keys;
};

/// Everything sshpool-demo needs to run.
struct gateway_config {
  /// Address and port of the HTTP front end (port 0: an ephemeral one).
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 8080;
  /// spdlog level (error, warn, info, debug, trace) and format of every log line.
  std::string log_level = "info";
  log_format format = log_format::text;
  /// The engine's settings (pool caps, timeouts, shutdown).
  engine_config engine;
  /// Largest request body and request head the front end accepts (413 / 431 beyond).
  std::size_t max_request_body_bytes = std::size_t{16} << 20;
  std::size_t max_request_header_bytes = std::size_t{64} << 10;
  /// Client connections served at once. When full, the longest-waiting connection without a
  /// request in progress is closed for a newcomer; with none, the newcomer gets 503.
  std::size_t max_clients = 1024;
  /// Open client connections per source address (0: no limit, e.g. behind a proxy).
  std::size_t max_clients_per_source = 256;
  /// A client that sends nothing (idle keep-alive, incomplete request) or reads nothing
  /// (output pending) for this long is disconnected.
  std::chrono::milliseconds client_timeout{std::chrono::seconds(30)};
  /// A request head (a new connection's first, or a later one from its first byte) not
  /// complete within this: 408 and closed.
  std::chrono::milliseconds header_timeout{std::chrono::seconds(5)};
  /// TLS on the front end (file key "tls": {"cert_file", "key_file"}): the PEM certificate
  /// chain and private key, both or neither (plain HTTP). Loaded and checked with the config.
  std::string tls_cert_file;
  std::string tls_key_file;
  /// The admin listener (file key "admin_listen"), which alone serves /metrics, /stats,
  /// /healthz and /readyz (plain HTTP, meant for a private address); an empty host: none,
  /// and the front end serves them.
  std::string admin_listen_host;
  std::uint16_t admin_listen_port = 0;
  /// Client authentication (see auth.hpp): JWTs (nullopt: none; API keys are per user); a
  /// listen address that is not loopback needs authentication unless allow_unauthenticated;
  /// failed authentications per source address and window before 429, and the sources
  /// tracked at most.
  std::optional<jwt_settings> jwt;
  bool allow_unauthenticated = false;
  std::size_t auth_max_failures = 20;
  std::chrono::milliseconds auth_failure_window{std::chrono::seconds(60)};
  std::size_t auth_max_sources = 4096;
  /// Requests in flight across all users, at most, before fair share applies (0: no
  /// budget): while it is reached, a user above budget / active users gets 429
  /// over_fair_share; a user below it is still admitted (see gateway.cpp's admission).
  std::size_t max_in_flight_total = 0;
  std::vector<user_config> users;
};

/// What main() should do after reading the command line.
enum class config_action {
  /// Serve.
  run,
  /// Print the help text and exit 0.
  help,
  /// Print the effective configuration (no secrets) and exit 0.
  check,
};

/// A loaded configuration and what to do with it.
struct loaded_config {
  gateway_config config;
  config_action action = config_action::run;
};

/// Looks up an environment variable; nullptr if unset.
using env_lookup = std::function<const char*(const char* name)>;

/// Reads the config file named by `--config` (if any), then the environment, then the
/// flags. Errors (code invalid_argument) name the offending setting and its source.
/// Blocking: it loads every user's private key (see the top of this file).
expected<loaded_config> load_config(const std::vector<std::string>& args, const env_lookup& env);

/// The file keys of the settings (users aside) whose values differ between `a` and `b`, in
/// the table's order (for a reload, which cannot change them at run time).
std::vector<std::string> changed_settings(const gateway_config& a, const gateway_config& b);

/// The --help text: every flag with its variable, file key, unit and default.
std::string usage_text();

/// The effective configuration as JSON (for --check-config); passphrases are left out. It
/// loads back, as a config file, into the same configuration; with an agent listener and
/// `host_key`, it also has an `agent_listener` section (the address, the host key file, its
/// fingerprint and public key), which is a report for the operator, not a setting.
std::string describe(const gateway_config& cfg, const ssh::host_key_identity* host_key = nullptr);

} // namespace sshpool::gateway
