// The data that travels through sshpool: requests, responses, endpoints and statistics.
// Pure data without CAF, so the ssh/ layer and callers can use it alone.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace sshpool {

/// Ordered HTTP header name/value pairs (names compared case-insensitively).
using header_list = std::vector<std::pair<std::string, std::string>>;

/// An HTTP request to forward to the service on the user's side.
struct request {
  /// Correlation id chosen by the caller; copied into the response and log lines.
  std::string id;
  std::string method = "GET";
  /// Origin-form target, e.g. "/api/chat?x=1".
  std::string path = "/";
  header_list headers;
  std::string body;
};

/// The service's HTTP response.
struct response {
  /// The id of the request this answers.
  std::string id;
  int status = 0;
  std::string reason;
  header_list headers;
  std::string body;

  /// The value of the first header named `name` (case-insensitive), or nullptr.
  const std::string* header(std::string_view name) const noexcept;
};

/// How a server's host key is checked against the endpoint's known_hosts file.
enum class host_key_policy : std::uint8_t {
  /// Unknown and changed keys are refused before authentication (the default).
  strict,
  /// Trust on first use, like OpenSSH's `StrictHostKeyChecking accept-new`: the key of a
  /// host the file does not know is appended to it (logged with its SHA256 fingerprint);
  /// a changed key is still refused.
  accept_new,
};

/// Which side opens a user's SSH connections.
enum class endpoint_mode : std::uint8_t {
  /// The engine dials the user's sshd (`host`, `port`, `username`, `identity_file`,
  /// `known_hosts_file`) and opens direct-tcpip channels to `target_host:target_port`.
  dial,
  /// Reverse mode: the user's machine dials in to the engine's agent listener with
  /// `ssh -N -R target_port:localhost:PORT user@gateway`, authenticated by a key of
  /// `authorized_keys_file` (the SSH user name is the user id); the engine opens
  /// forwarded-tcpip channels to the forward the agent holds. It cannot dial: with no agent
  /// connected, a lease waits up to `acquire_timeout` for one (then `agent_offline`).
  agent,
};

const char* to_string(endpoint_mode x) noexcept;

/// How a user's machine is reached: the SSH server, the credentials, and the service
/// behind it that requests are forwarded to.
struct endpoint {
  endpoint_mode mode = endpoint_mode::dial;
  std::string host;
  std::uint16_t port = 22;
  std::string username;
  /// Private key file (OpenSSH format). Its content is never logged.
  std::string identity_file;
  /// Passphrase of the private key, if any. Never logged.
  std::string passphrase;
  /// known_hosts file holding the server's host key. Unknown or changed keys are refused
  /// (unless `host_keys` is accept_new).
  std::string known_hosts_file;
  host_key_policy host_keys = host_key_policy::strict;
  /// Agent mode: the user's public keys (OpenSSH authorized_keys format).
  std::string authorized_keys_file;
  /// The service on the user's side, as seen from the SSH server. Agent mode: the port the
  /// agent gives to `-R` (the only forward it may hold); `target_host` is not used.
  std::string target_host = "127.0.0.1";
  std::uint16_t target_port = 0;
  /// Exec a no-op command once per connection so that OpenSSH's sshd turns on TCP_NODELAY
  /// (it does so only for sessions that exec); without it, small exchanges can stall ~40 ms
  /// on Nagle's algorithm. Failure to exec is ignored.
  bool server_nodelay = true;
  /// Cipher preference list (SSH_OPTIONS_CIPHERS_C_S/S_C). Empty: AES-GCM first where the
  /// CPU has AES instructions (15-35 % faster than chacha20 here), else libssh's default.
  std::string ciphers;
  /// Largest response body of this user's requests, streams included; 0: the engine's
  /// `pool_config::max_response_bytes`. For a service whose answers are larger by design
  /// (long LLM streams) without raising the cap for every user.
  std::uint64_t max_response_bytes = 0;
};

/// Every field equal (the passphrase included).
inline bool operator==(const endpoint& x, const endpoint& y) {
  auto fields = [](const endpoint& e) {
    return std::tie(e.mode, e.host, e.port, e.username, e.identity_file, e.passphrase,
                    e.known_hosts_file, e.host_keys, e.authorized_keys_file, e.target_host,
                    e.target_port, e.server_nodelay, e.ciphers, e.max_response_bytes);
  };
  return fields(x) == fields(y);
}

inline bool operator!=(const endpoint& x, const endpoint& y) {
  return !(x == y);
}

/// State of one SSH connection as its pool sees it.
enum class connection_state : std::uint8_t { connecting, ready, closing, closed };

const char* to_string(connection_state x) noexcept;

/// Statistics of one SSH connection.
struct connection_stats {
  std::uint64_t id = 0;
  std::string user;
  connection_state state = connection_state::connecting;
  std::chrono::system_clock::time_point created;
  std::chrono::system_clock::time_point last_used;
  /// Channels open right now (carrying a request or kept for reuse).
  std::uint32_t channel_count = 0;
  /// Requests on a channel right now, and requests queued for a channel slot.
  std::uint32_t active_requests = 0;
  std::uint32_t queued_requests = 0;
  std::uint64_t requests = 0;
  std::uint64_t failed_requests = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  bool healthy = false;
};

/// Statistics of one user's pool.
struct user_stats {
  std::string user;
  /// Connections that count against the cap: connecting + ready.
  std::uint32_t connections = 0;
  std::uint32_t connecting = 0;
  std::uint32_t idle = 0;
  std::uint32_t leases = 0;
  std::uint32_t waiters = 0;
  std::uint64_t handshakes = 0;
  std::uint64_t handshake_failures = 0;
  std::uint64_t acquire_timeouts = 0;
  /// Agent mode: agent sessions connected now (they count in `connections`), and those
  /// refused because the user had `max_connections_per_user` already.
  std::uint32_t agents = 0;
  std::uint64_t agents_refused = 0;
};

/// Statistics of the whole engine.
struct pool_stats {
  std::uint64_t total_connections = 0;
  std::uint64_t user_count = 0;
  std::uint64_t connecting = 0;
  std::uint64_t idle = 0;
  std::uint64_t leases = 0;
  std::uint64_t waiters = 0;
  std::vector<user_stats> users;
};

/// One configured or connected peer of a cluster node.
struct cluster_peer_stats {
  /// Its address as configured (or as it connected from, for a peer not configured here).
  std::string address;
  /// Its node id once known (empty before the first connection).
  std::string node_id;
  /// Connected and answering heartbeats.
  bool up = false;
  /// Connections made, and attempts or connections that failed or were lost.
  std::uint64_t connects = 0;
  std::uint64_t failures = 0;
  /// When `up` last changed (epoch if never).
  std::chrono::system_clock::time_point since;
};

/// What a cluster node sees: its members and its traffic to and from the other nodes.
struct cluster_stats {
  std::string node_id;
  /// Live members, this node included, sorted.
  std::vector<std::string> members;
  std::vector<cluster_peer_stats> peers;
  /// Times the set of live members changed.
  std::uint64_t membership_changes = 0;
  /// Users whose owner is fixed by a claim (an agent connected to a node, or a previous
  /// owner finishing its work), cluster wide as this node knows it.
  std::uint64_t claims = 0;
  /// Those users, each with the node that claims it (user → node id).
  std::map<std::string, std::string> directory;
  /// Leases this node asked of other nodes, and those that failed.
  std::uint64_t remote_acquires = 0;
  std::uint64_t remote_acquire_failures = 0;
  /// Leases this node gave to other nodes' callers, and those held now.
  std::uint64_t served_acquires = 0;
  std::uint64_t served_leases = 0;
};

/// Settings of the cleanup actor (see `cleanup_service`).
struct cleanup_config {
  /// Period of the cleanup ticks.
  std::chrono::milliseconds cleanup_interval{std::chrono::seconds(30)};
  /// Idle connections (no lease, nothing in flight) older than this are closed.
  std::chrono::milliseconds max_idle_time{std::chrono::minutes(5)};
};

/// What the cleanup actor did so far.
struct cleanup_stats {
  bool is_running = false;
  /// Cleanup runs (ticks and triggers).
  std::uint64_t runs = 0;
  /// Connections closed by cleanup, cumulative.
  std::uint64_t cleanup_count = 0;
  /// When the last run ended (epoch if never).
  std::chrono::system_clock::time_point last_cleanup_time;
  cleanup_config config;
};

/// What a drain did (engine shutdown or one user's drain).
struct shutdown_report {
  std::chrono::milliseconds duration{0};
  std::uint64_t connections_closed = 0;
  /// Requests in flight (or queued for a channel) when the drain started.
  std::uint64_t in_flight_at_start = 0;
  /// Of those, how many ended by themselves during the drain.
  std::uint64_t completed_during_drain = 0;
  /// Of those, how many were cut at the end of the grace period (or by a forced stop).
  std::uint64_t cut = 0;
  /// The grace period ran out (or a second signal came) and the rest was cut.
  bool forced = false;
};

} // namespace sshpool

namespace sshpool {

/// Byte and channel counts that the transport reports with each completed request.
struct transfer_info {
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  /// Channels of the connection open after this request (busy + kept for reuse).
  std::uint32_t open_channels = 0;
};

} // namespace sshpool
