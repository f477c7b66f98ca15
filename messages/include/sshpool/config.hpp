// Engine and pool settings with the defaults of the original module (see README).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sshpool/error.hpp"

namespace sshpool {

/// Pool limits and timeouts. Defaults follow the seed's documented numbers.
struct pool_config {
  /// SSH connections per user (connecting + ready).
  std::size_t max_connections_per_user = 3;
  /// Concurrent channels (= requests on the wire, and leases) per connection.
  std::size_t max_channels_per_connection = 10;
  /// Callers that may wait for a lease per user; beyond it `pool_exhausted` at once.
  std::size_t max_waiters_per_user = 256;
  /// SSH connections of the whole engine.
  std::size_t max_connections_total = 10000;
  /// How long `get_connection` waits for a lease before `pool_exhausted`.
  std::chrono::milliseconds acquire_timeout{std::chrono::seconds(30)};
  /// Deadline of a handshake (TCP connect, key exchange, host key, authentication).
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  /// Default deadline of a forward (queueing for a channel slot included).
  std::chrono::milliseconds request_timeout{std::chrono::seconds(30)};
  /// Idle connections older than this are closed by the cleanup actor.
  std::chrono::milliseconds max_idle_time{std::chrono::minutes(5)};
  /// Period of the cleanup actor's ticks.
  std::chrono::milliseconds cleanup_interval{std::chrono::seconds(30)};
  /// Channels kept open for reuse are closed after this long without a request.
  std::chrono::milliseconds channel_idle_timeout{std::chrono::seconds(60)};
  /// Period of the liveness probe (keepalive@openssh.com) on every connection.
  std::chrono::milliseconds keepalive_interval{std::chrono::seconds(60)};
  /// A probe not answered (no packet at all from the server) within this is a dead peer.
  std::chrono::milliseconds keepalive_timeout{std::chrono::seconds(15)};
  /// A connection unused for longer than this is probed before it is leased.
  std::chrono::milliseconds validation_idle_threshold{std::chrono::seconds(30)};
  /// Connections are retired (when idle) after this long, shortened by up to 2.5 % at
  /// random per connection so they do not all expire together.
  std::chrono::milliseconds max_lifetime{std::chrono::minutes(30)};
  /// Failed handshakes of a user are retried after a backoff with full jitter: after
  /// `failures` (>= 1) failures in a row, random in [0, min(cap, base * 2^(failures - 1))]
  /// (the doubling stops at 2^20); after a refusal (auth_failed, a host key error,
  /// invalid_argument) random in [cap / 2, cap]. See actors/src/backoff.hpp.
  std::chrono::milliseconds reconnect_backoff_base{std::chrono::seconds(1)};
  std::chrono::milliseconds reconnect_backoff_cap{std::chrono::seconds(30)};
  /// Handshakes started per second by the whole engine (concurrency is bounded by the
  /// connector threads), so reconnecting users stay within sshd's MaxStartups.
  std::size_t max_handshakes_per_second = 100;
  /// Default grace period of `engine::shutdown` and of signal-triggered drains.
  std::chrono::milliseconds shutdown_grace_period{std::chrono::seconds(30)};
  /// Cut what remains at the end of the grace period (else wait for it).
  bool force_after_grace_period = true;
  /// Largest response body accepted by `forward`.
  std::size_t max_response_bytes = std::size_t{64} << 20;
  /// Largest response head (status line and headers).
  std::size_t max_header_bytes = std::size_t{64} << 10;
  /// A stream's body bytes delivered but not yet acknowledged by its consumer, at most:
  /// beyond it the reactor stops reading the channel (backpressure down to the SSH window)
  /// and the connection suspends the stream's idle deadline.
  std::size_t stream_window_bytes = std::size_t{256} << 10;
};

/// How CAF's scheduler gives runnable actors to its threads.
enum class scheduler_policy {
  /// One queue for all threads; a message to an idle actor wakes a sleeping thread at once.
  /// A facade round trip took a quarter of the time it takes with `stealing` here. The
  /// engine's own policy (not CAF's work_sharing): a thread that finds the queue empty
  /// watches it for some microseconds before it sleeps, and a sender wakes a thread only
  /// when one sleeps, outside the queue's lock.
  sharing,
  /// A queue per thread, with stealing; idle threads poll, then sleep in 50 us and later
  /// 10 ms steps, and a message to an idle actor waits for the next poll.
  stealing,
};

/// Reverse mode: the SSH server that users' machines dial into (see `endpoint_mode::agent`).
struct agent_listener_config {
  /// "IPv4:port" or "[IPv6]:port", numeric; port 0 picks a free port. Empty: no listener
  /// (agent users then stay offline).
  std::string listen;
  /// The listener's ed25519 host key; created (mode 0600) if missing, refused if group or
  /// others may access it.
  std::string host_key_file;
  /// From the TCP connection to an allowed forward, at most (sshd's LoginGraceTime).
  std::chrono::milliseconds login_grace{std::chrono::seconds(20)};
  /// Sessions not yet handed on (in key exchange or authentication, or authenticated and
  /// not yet forwarding) at once, in total and per source address; beyond them a new TCP
  /// connection is closed at once (sshd's MaxStartups).
  std::size_t max_startups = 100;
  std::size_t max_startups_per_source = 10;
  /// Failed authentication attempts per session (sshd's MaxAuthTries).
  std::size_t max_auth_tries = 6;
};

/// Cluster mode: this engine is one node of several that share the users (each user has
/// one owner node; the others hand its calls to the owner over CAF's middleman, which runs
/// on mutual TLS with the cluster's own CA). Off unless `node_id` is set.
struct cluster_config {
  /// This node's name, unique in the cluster (it decides which users the node owns).
  std::string node_id;
  /// The middleman's address, "IPv4:port" or "[IPv6]:port"; bind it to a private address.
  std::string listen;
  /// The other nodes' middleman addresses ("host:port"); a node listed by only one side is
  /// still a member once it connected.
  std::vector<std::string> peers;
  /// PEM files: the cluster's CA (peers must present a certificate it signed), this node's
  /// certificate and its unencrypted private key.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  /// Liveness: every peer is probed this often, and counted down (its users move to the
  /// survivors) when it has not answered for `heartbeat_timeout`.
  std::chrono::milliseconds heartbeat_interval{500};
  std::chrono::milliseconds heartbeat_timeout{std::chrono::seconds(3)};
  /// Reconnecting to a peer that is down: exponential backoff between these bounds.
  std::chrono::milliseconds reconnect_backoff_base{200};
  std::chrono::milliseconds reconnect_backoff_cap{std::chrono::seconds(5)};
};

/// Settings of an engine.
struct engine_config {
  pool_config pool;
  /// CAF scheduler threads when the engine owns its actor system (0 = number of cores).
  std::size_t scheduler_threads = 0;
  /// CAF scheduler policy when the engine owns its actor system.
  scheduler_policy scheduler = scheduler_policy::sharing;
  /// Threads driving non-blocking SSH sessions (0 = half the cores, at least 1: one reactor
  /// thread carries ~50k requests/s, and sshd, on the same cores in tests, is the ceiling).
  std::size_t reactor_threads = 0;
  /// Threads running blocking handshakes, each with a deadline.
  std::size_t connector_threads = 2;
  /// spdlog level of the "sshpool" logger: trace, debug, info, warn, error, critical, off.
  std::string log_level = "info";
  /// Start the cleanup actor with the engine (the seed needed cleanupService.start()).
  bool start_cleanup = true;
  /// Reverse mode's agent listener (off unless `agents.listen` is set).
  agent_listener_config agents;
  /// Cluster mode (off unless `cluster.node_id` is set).
  cluster_config cluster;
};

/// Checks every setting; the error names the offending one.
expected<void> validate(const engine_config& cfg);

/// A network address split into its parts.
struct host_port {
  /// A host name or an IP address (an IPv6 address without its brackets).
  std::string host;
  std::uint16_t port = 0;
};

/// Splits "host:port" ("[IPv6]:port" for an IPv6 address; port 1-65535); `invalid_argument`
/// (with the text) if it is not of that form.
expected<host_port> parse_host_port(const std::string& address);

} // namespace sshpool
