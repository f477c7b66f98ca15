// The agent listener's host key: an ed25519 private key file, created at first start,
// refused when group or others may access it (as sshd refuses such host keys).
#pragma once

#include <string>

#include "key_loader.hpp"
#include "sshpool/error.hpp"

namespace sshpool::ssh {

/// Loads the ed25519 host key `path`, or creates it (mode 0600, never readable by others at
/// any moment; a key another process created meanwhile is loaded instead) if the file does
/// not exist. Blocking. `invalid_argument`: another key type, an encrypted or unreadable
/// file, or one that group or others may access.
expected<key_ptr> load_or_create_host_key(const std::string& path);

/// "TYPE BASE64" of `key`'s public half (a known_hosts or authorized_keys entry without its
/// names or options), or empty if it cannot be exported.
std::string public_key_line(ssh_key key);

} // namespace sshpool::ssh
