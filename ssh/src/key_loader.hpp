// Private key files, loaded with distinct reasons for failure (see
// sshpool/ssh/key_check.hpp).
#pragma once

#include <memory>
#include <string>
#include <type_traits>

#include <libssh/libssh.h>

#include "sshpool/error.hpp"

namespace sshpool::ssh {

/// Frees a libssh key.
struct key_deleter {
  void operator()(ssh_key k) const noexcept { ssh_key_free(k); }
};

/// An owned libssh key.
using key_ptr = std::unique_ptr<std::remove_pointer_t<ssh_key>, key_deleter>;

/// The SHA256 fingerprint of `key` as ssh-keygen -l prints it ("SHA256:..."), or "unknown".
std::string key_fingerprint(ssh_key key);

/// Loads the private key `path`, decrypted with `passphrase` (empty: none). Blocking.
/// Errors as `check_private_key`'s.
expected<key_ptr> load_private_key(const std::string& path, const std::string& passphrase);

} // namespace sshpool::ssh
