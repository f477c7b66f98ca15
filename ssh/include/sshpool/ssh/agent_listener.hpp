// The agent listener (reverse mode): users' machines behind NAT dial in with the stock
// OpenSSH client,
//
//   ssh -N -R 11434:localhost:11434 -o ServerAliveInterval=15 -o ExitOnForwardFailure=yes
//       -p 2222 alice@gateway
//
// and the engine then opens `forwarded-tcpip` channels to them (RFC 4254, 7.2) and speaks HTTP
// through them as it does over the direct-tcpip channels of dialed sessions.
//
// One listener thread accepts TCP connections and drives every session that is not yet an
// agent, non-blocking: key exchange, public key authentication, the first tcpip-forward
// request. It never waits for a single peer, so a session that stalls holds nothing but its
// slot, for at most `login_grace`. Once an authenticated session holds an allowed forward it
// is handed on (`on_agent`) as an `agent_handle`; `ssh_runtime::adopt` makes a transport of
// it, driven by a reactor thread like a dialed session. An agent may do exactly one thing,
// for its session's whole life: tcpip-forward (and cancel-tcpip-forward) for the ports its
// user may use, and keepalives. Everything else is refused and counted.
//
// No CAF here. The callbacks run on the listener thread: they must be cheap, thread-safe
// and must not block.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sshpool/config.hpp"
#include "sshpool/error.hpp"
#include "sshpool/ssh/authorized_keys.hpp"

namespace sshpool::ssh {

/// What a user may do as an agent.
struct agent_policy {
  /// The keys that authenticate the user (see authorized_keys.hpp for their options).
  std::vector<authorized_key> keys;
  /// The ports the user's agents may give to `-R` (tcpip-forward); 0 is never allowed.
  std::vector<std::uint16_t> allowed_ports;
};

/// Why the listener refused something. Each is counted in `agent_listener_stats::refused`.
enum class agent_refusal : std::uint8_t {
  // A TCP connection, closed at once before any SSH byte:
  /// `max_startups` sessions not yet handed on already.
  max_startups,
  /// `max_startups_per_source` sessions not yet handed on from the source already.
  max_startups_per_source,
  /// The source's sessions kept failing (see `agent_penalties`).
  penalized_source,
  // A session ended before it became an agent (one per session):
  /// No allowed forward within `login_grace` of the TCP connection.
  login_grace,
  /// The key exchange failed, or the peer left during it.
  handshake_failed,
  /// The peer left after the key exchange without authenticating.
  left_unauthenticated,
  /// `max_auth_tries` failed authentication attempts.
  max_auth_tries,
  /// Authenticated, but the session ended before an allowed tcpip-forward.
  no_forward,
  /// A service other than ssh-userauth was asked for.
  bad_service,
  /// The consumer did not take the agent (`agent_handle::refuse`, or the handle dropped).
  agent_refused,
  // A request, refused with a failure reply (the session goes on):
  /// A password, keyboard-interactive, host-based or GSSAPI attempt (only publickey is
  /// offered).
  auth_method,
  /// A public key that does not authenticate the user name (an unknown user looks the
  /// same), or not from this source address, or expired.
  auth_failed,
  /// A session channel: shell, exec, subsystem, pty (and with them -A and -X).
  session_channel,
  /// A direct-tcpip channel: -L, -W, -D. An agent never reaches into the gateway's network.
  direct_tcpip,
  /// An x11 channel.
  x11_channel,
  /// An auth-agent@openssh.com channel.
  agent_channel,
  /// Any other channel type (forwarded-tcpip, direct-streamlocal@openssh.com, ...).
  other_channel,
  /// tcpip-forward for a port (or bind address) the user or key may not use, or port 0.
  forward_not_allowed,
};

inline constexpr std::size_t agent_refusal_count =
    static_cast<std::size_t>(agent_refusal::forward_not_allowed) + 1;

/// The snake_case name of `x`, e.g. "direct_tcpip".
const char* to_string(agent_refusal x) noexcept;

/// Counters of a listener (monotonic unless marked "now").
struct agent_listener_stats {
  /// TCP connections accepted (refused ones included).
  std::uint64_t connections = 0;
  std::uint64_t authenticated = 0;
  /// Sessions handed to `on_agent`.
  std::uint64_t agents = 0;
  /// Sessions not yet handed on, now.
  std::uint64_t pre_auth = 0;
  /// Sources refused for their penalties, now.
  std::uint64_t penalized_sources = 0;
  std::array<std::uint64_t, agent_refusal_count> refused{};

  std::uint64_t refused_for(agent_refusal x) const { return refused[static_cast<std::size_t>(x)]; }
};

/// Per-source penalties, like sshd's PerSourcePenalties (see agent_gate.hpp for the model).
struct agent_penalties {
  bool enabled = true;
  /// A session that failed authentication at least once and never succeeded.
  std::chrono::milliseconds auth_failed{std::chrono::seconds(5)};
  /// An unauthenticated session that missed its login grace deadline (an authenticated
  /// user's source is never penalized).
  std::chrono::milliseconds grace_exceeded{std::chrono::seconds(10)};
  /// A session that ended before it attempted authentication (a scanner, a broken client).
  std::chrono::milliseconds no_auth{std::chrono::seconds(1)};
  /// A source is refused once its penalties add up to this ...
  std::chrono::milliseconds min{std::chrono::seconds(15)};
  /// ... until they are paid, at most this far ahead.
  std::chrono::milliseconds max{std::chrono::seconds(600)};
  /// Sources remembered at most.
  std::size_t max_sources = 4096;
};

/// The listener's settings: the engine's (address, host key, LoginGraceTime, MaxStartups,
/// MaxAuthTries; see agent_listener_config) and its per-source penalties.
struct agent_listener_options : agent_listener_config {
  agent_penalties penalties;
};

/// An authenticated agent session holding an allowed forward, between the listener and a
/// reactor. Move-only. Nobody drives the session while a handle holds it (the agent's
/// keepalives wait), so adopt (`ssh_runtime::adopt`) or refuse it promptly. Dropping it
/// refuses it. Any thread may use it; its methods do not block.
class agent_handle {
public:
  struct state;

  /// Empty.
  agent_handle() noexcept;
  explicit agent_handle(std::unique_ptr<state> s);
  agent_handle(agent_handle&&) noexcept;
  agent_handle& operator=(agent_handle&&) noexcept;
  /// Refuses the agent ("the gateway did not take this agent") unless adopted or refused.
  ~agent_handle();

  /// The SSH user name: the user id.
  const std::string& user() const;
  /// The agent's numeric address and port.
  const std::string& source_address() const;
  std::uint16_t source_port() const;
  /// The forward the transport will use (the first allowed tcpip-forward): the bind
  /// address as the agent gave it (e.g. "localhost") and the port.
  const std::string& bound_address() const;
  std::uint16_t bound_port() const;
  /// The session id (unique among the runtime's sessions, dialed ones included).
  std::uint64_t session_id() const;
  /// Whether it still holds its session (not adopted, not refused).
  explicit operator bool() const noexcept;

  /// Disconnects the agent with `reason` as the SSH disconnect message (its ssh prints
  /// it); counted as `agent_refused`.
  void refuse(const std::string& reason);

  /// For `ssh_runtime::adopt`: takes the state out.
  std::unique_ptr<state> release() noexcept;

private:
  std::unique_ptr<state> state_;
};

/// Listens for agents. Thread-safe.
class agent_listener {
public:
  /// The user's policy, or nullptr for an unknown user (which looks like a wrong key on the
  /// wire). Called on the listener thread for each user name an authentication attempt
  /// names.
  using lookup_fn = std::function<std::shared_ptr<const agent_policy>(const std::string& user)>;
  /// A new agent; take it (`ssh_runtime::adopt`) or refuse it. Called on the listener thread.
  using agent_fn = std::function<void(agent_handle)>;

  /// Loads (or creates) the host key, listens and starts the listener thread; logs the
  /// address and the host key's fingerprint. `invalid_argument`: a bad setting, host key
  /// or address; `connect_failed`: the address cannot be listened on.
  static expected<std::unique_ptr<agent_listener>> start(agent_listener_options opts,
                                                         lookup_fn lookup, agent_fn on_agent);

  /// Stops (see `stop`).
  ~agent_listener();
  agent_listener(const agent_listener&) = delete;
  agent_listener& operator=(const agent_listener&) = delete;

  /// Stops listening and disconnects the sessions not yet handed on. Handles and transports
  /// made from agents are not affected. Idempotent.
  void stop();

  /// The port listened on.
  std::uint16_t port() const noexcept;
  /// The host key's SHA256 fingerprint, as `ssh-keygen -lf` prints it ("SHA256:...").
  const std::string& fingerprint() const noexcept;
  /// The host key's public half, "ssh-ed25519 BASE64" (for a known_hosts line).
  const std::string& public_key() const noexcept;
  agent_listener_stats stats() const;
  /// Waits until `pred` holds for the stats (checked at every change) or `timeout` passes;
  /// its last result. Each refusal is counted before the peer is answered.
  bool wait_for(const std::function<bool(const agent_listener_stats&)>& pred,
                std::chrono::milliseconds timeout) const;

  struct impl;

private:
  explicit agent_listener(std::unique_ptr<impl> impl);
  std::unique_ptr<impl> impl_;
};

} // namespace sshpool::ssh
