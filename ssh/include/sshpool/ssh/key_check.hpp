// Checks a private key file before it is used: the engine's set_endpoint and the gateway's
// configuration loader call it so that a key that cannot be used fails at once, with the
// reason, instead of failing every handshake later.
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

} // namespace sshpool::ssh
