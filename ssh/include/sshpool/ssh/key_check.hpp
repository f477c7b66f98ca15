// Checks a private key file before it is used: the engine's set_endpoint and the gateway's
// configuration loader call it so that a key that cannot be used fails at once, with the
// reason, instead of failing every handshake later. The agent listener's host key is shown
// the same way (the gateway's --check-config), so that an operator can pin it before the
// first start.
#pragma once

#include <string>

#include "sshpool/error.hpp"

namespace sshpool::ssh {

/// Loads the private key `path` with `passphrase` (empty: none) and drops it. Blocking: it
/// reads a small local file and, for an encrypted key, runs its key derivation (about a
/// tenth of a second for `ssh-keygen`'s default). Never call it in an actor handler.
/// Errors (code `invalid_argument`) name the file and the reason, never the passphrase:
/// the file cannot be read; it is encrypted and no passphrase was given; the passphrase
/// does not decrypt it; it is not a private key (a public key, any other file).
expected<void> check_private_key(const std::string& path, const std::string& passphrase);

/// What users pin of the agent listener's host key.
struct host_key_identity {
  /// "SHA256:...", as `ssh-keygen -lf` prints it.
  std::string fingerprint;
  /// "ssh-ed25519 BASE64" (a known_hosts entry without its host names).
  std::string public_key;
};

/// Loads the agent listener's ed25519 host key `path`, or creates it (mode 0600) if the file
/// does not exist, exactly as `agent_listener::start` does, and returns its identity (never
/// the private key). Blocking. Errors (code `invalid_argument`) as the listener's: another
/// key type, an encrypted or unreadable file, or one that group or others may access.
expected<host_key_identity> load_host_key_identity(const std::string& path);

} // namespace sshpool::ssh
