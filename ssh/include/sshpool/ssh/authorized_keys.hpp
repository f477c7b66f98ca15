// OpenSSH authorized_keys files for agents (reverse mode): which public keys authenticate a
// user, and the options on their lines. The format is sshd(8)'s "AUTHORIZED_KEYS FILE
// FORMAT":
//
//   [OPTIONS] KEYTYPE BASE64-KEY [COMMENT]
//
// OPTIONS is a comma-separated list of `name` or `name="value"` (`\"` inside quotes), names
// case-insensitive. An agent may only ever forward one port to the gateway, so options are
// sorted into three groups, and no option can widen what an agent may do:
//
//   honoured   restrict (no port forwarding unless `port-forwarding` follows), no-port-forwarding,
//              port-forwarding, permitlisten="[host:]port" (narrows the allowed ports, and the
//              bind address if a host other than `*` is given; repeatable), from="pattern-list"
//              (source addresses: `*`/`?` wildcards, `!` negation, CIDR; no DNS names: the
//              gateway does not resolve its peers), expiry-time="YYYYMMDD[HHMM[SS]][Z]" (local
//              time, or UTC with Z)
//   no effect  no-pty, no-agent-forwarding, no-X11-forwarding, no-user-rc, permitopen=, pty,
//              agent-forwarding, X11-forwarding, user-rc: agents never get a session, a pty,
//              agent or X11 forwarding nor a direct-tcpip channel, whatever a line says
//   refused    command=, environment=, principals=, tunnel=, cert-authority,
//              no-touch-required, verify-required, and any other option: the line is skipped
//              (and reported), since honouring it is not possible and ignoring it could let a
//              key do what its owner meant to forbid
//
// Certificate key types (`*-cert-v01@openssh.com`) are skipped too: certificates are not
// supported. Key blobs are checked with libssh and kept in canonical base64.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sshpool/error.hpp"

namespace sshpool::ssh {

/// One `permitlisten` entry.
struct listen_permission {
  /// The bind address it allows; empty (or `*` in the file): any.
  std::string host;
  /// The port it allows; nullopt: any (`*`).
  std::optional<std::uint16_t> port;
};

/// One usable line of an authorized_keys file.
struct authorized_key {
  /// e.g. "ssh-ed25519".
  std::string type;
  /// The public key blob in canonical base64 (as `ssh_pki_export_pubkey_base64` writes it).
  std::string base64;
  std::string comment;
  /// Off with `restrict` (unless `port-forwarding` follows) or `no-port-forwarding`.
  bool port_forwarding = true;
  /// `permitlisten` entries; empty: no narrowing.
  std::vector<listen_permission> permit_listen;
  /// `from` pattern list; empty: any source address.
  std::string from;
  /// `expiry-time`; the key does not authenticate from then on.
  std::optional<std::chrono::system_clock::time_point> expiry;
};

/// What a file held: its usable keys, and why other lines were skipped ("line 3: ...").
struct authorized_keys {
  std::vector<authorized_key> keys;
  std::vector<std::string> skipped;
};

/// Parses the content of an authorized_keys file. Blank lines and `#` comments are ignored;
/// CR before LF is accepted. Never fails: lines it cannot use are listed in `skipped`.
authorized_keys parse_authorized_keys(std::string_view text);

/// Reads and parses the file `path` (at most 1 MiB). Blocking. `invalid_argument` if it
/// cannot be read.
expected<authorized_keys> load_authorized_keys(const std::string& path);

/// Whether `key` may authenticate from the numeric address `source` (its `from` option).
bool source_allowed(const authorized_key& key, std::string_view source);

/// Whether `key` may bind `address`:`port` with tcpip-forward (`restrict`,
/// `no-port-forwarding` and `permitlisten`; the user's allowed ports are checked apart).
bool listen_allowed(const authorized_key& key, std::string_view address, std::uint16_t port);

} // namespace sshpool::ssh
