// Error codes of sshpool. Every failure the engine reports carries one of these codes and
// a human-readable message; callers branch on the code, never on the message text.
#pragma once

#include <cstdint>
#include <string_view>

namespace sshpool {

/// Error codes reported by every sshpool operation.
enum class errc : std::uint8_t {
  none = 0,
  /// The request was malformed (CR/LF/NUL in method, path or headers, a header name that
  /// is not a token, an empty method, a caller-supplied Transfer-Encoding...). Nothing sent.
  invalid_request,
  /// An argument or setting is out of range (empty user id, zero cap, missing key file...).
  invalid_argument,
  /// No endpoint is configured for this user.
  unknown_user,
  /// No connection could be leased in time: caps reached and `acquire_timeout` expired or
  /// `max_waiters_per_user` exceeded, or the global connection cap is reached.
  pool_exhausted,
  /// TCP connect or the SSH key exchange failed.
  connect_failed,
  /// The server refused our key.
  auth_failed,
  /// The server's host key is not in the known_hosts file (strict checking).
  host_key_unknown,
  /// The server's host key differs from the one in the known_hosts file.
  host_key_mismatch,
  /// An internal call or the handshake exceeded its deadline.
  timeout,
  /// The server could not open the direct-tcpip channel (e.g. nothing listens on the
  /// target port: SSH reason 2, connect failed). The SSH connection itself stays usable.
  /// The message holds the SSH reason code and text.
  channel_open_failed,
  /// The forward did not complete within its deadline; its channel was closed.
  request_timeout,
  /// The SSH connection died while the request was in flight.
  connection_lost,
  /// The service closed the channel before the response was complete.
  upstream_closed,
  /// The service's response is not valid HTTP/1.1.
  bad_response,
  /// The response exceeds `max_response_bytes` (or its head `max_header_bytes`).
  response_too_large,
  /// The engine is draining or stopped.
  shutting_down,
  /// The lease was already released, or never existed.
  not_leased,
  /// The lease belongs to another user.
  wrong_user,
  /// The server's host key is marked `@revoked` in the known_hosts file: refused whatever
  /// other lines say.
  host_key_revoked,
  /// The server's policy refused the direct-tcpip channel (SSH reason 1, administratively
  /// prohibited: sshd's `AllowTcpForwarding no`, a `PermitOpen` that does not name the
  /// target...). Retrying does not help; the SSH connection itself stays usable. The
  /// message holds the SSH reason code and text.
  forwarding_prohibited,
  /// The user's machine reaches the gateway by dialing in (reverse mode, an `ssh -R` agent)
  /// and no agent of the user was connected within the wait (`acquire_timeout`): the engine
  /// cannot dial such a machine. Retry once the agent is back.
  agent_offline,
  /// A bug: an invariant did not hold. Reported instead of crashing.
  internal,
};

/// Returns the snake_case name of `x`, e.g. "pool_exhausted".
const char* to_string(errc x) noexcept;

/// Parses a name produced by `to_string`; returns false for unknown names.
bool from_string(std::string_view name, errc& out) noexcept;

} // namespace sshpool
