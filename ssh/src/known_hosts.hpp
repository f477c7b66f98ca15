// A small, strict reader of OpenSSH known_hosts files: the one place that decides whether a
// server's host key is known, unknown, changed or revoked. libssh 0.10's own check
// (ssh_session_is_known_server) takes `@revoked` and `@cert-authority` lines for host
// patterns that never match, so a revoked key listed on a plain line too is let through,
// and it fails on a line ending in CR (a file with CRLF line ends) as if the host were not
// listed. This reader follows OpenSSH's sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT":
//
//   [@revoked|@cert-authority] PATTERNS KEYTYPE BASE64-KEY [COMMENT]
//
// PATTERNS is a comma-separated list of host patterns (`*` and `?` wildcards, `!` negation,
// `[host]:port` for a port other than 22) or one hashed name `|1|SALT|HMAC-SHA1` as written
// by `ssh-keygen -H`. Blank lines and `#` comments are skipped; CR before LF and any other
// trailing white space are ignored. `@cert-authority` lines are skipped (certificates are
// not supported), as are lines with another marker or too few fields. Only the key blob
// decides whether two keys are the same; the KEYTYPE field is not trusted for it.
//
// No libssh and no CAF here: pure functions over text (HMAC-SHA1 from OpenSSL's libcrypto).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sshpool::ssh {

/// What a known_hosts file says about a host's key.
enum class host_key_status {
  /// A plain line for the host holds the key, and no `@revoked` line does.
  known,
  /// No line names the host (`@cert-authority` lines and other markers aside).
  unknown,
  /// Lines name the host, but none holds this key (any key type).
  mismatch,
  /// A `@revoked` line for the host holds the key: refused, whatever other lines say.
  revoked,
};

/// How OpenSSH names a host in known_hosts: `host` for port 22, else `[host]:port`; lower
/// case.
std::string known_hosts_name(std::string_view host, std::uint16_t port);

/// Decides about the server key `key_base64` (the base64 of its public key blob, as
/// `ssh_pki_export_pubkey_base64` gives it) presented by the host named `name` (see
/// `known_hosts_name`), given the content of a known_hosts file.
host_key_status check_host_key(std::string_view known_hosts, std::string_view name,
                               std::string_view key_base64);

/// The line that records a host's key (`name key_type key_base64`, LF-terminated), prefixed
/// by a LF when `known_hosts` does not end with one, so it is never glued to a last line.
std::string known_hosts_entry(std::string_view known_hosts, std::string_view name,
                              std::string_view key_type, std::string_view key_base64);

} // namespace sshpool::ssh
