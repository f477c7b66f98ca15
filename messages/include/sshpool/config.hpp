// Engine and pool settings with the defaults of the original module (see README).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

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
  /// Largest response body accepted by `forward`.
  std::size_t max_response_bytes = std::size_t{64} << 20;
  /// Largest response head (status line and headers).
  std::size_t max_header_bytes = std::size_t{64} << 10;
};

/// Settings of an engine.
struct engine_config {
  pool_config pool;
  /// CAF scheduler threads when the engine owns its actor system (0 = number of cores).
  std::size_t scheduler_threads = 0;
  /// Threads driving non-blocking SSH sessions (0 = number of cores).
  std::size_t reactor_threads = 0;
  /// Threads running blocking handshakes, each with a deadline.
  std::size_t connector_threads = 2;
  /// spdlog level of the "sshpool" logger: trace, debug, info, warn, error, critical, off.
  std::string log_level = "info";
};

/// Checks every setting; the error names the offending one.
expected<void> validate(const engine_config& cfg);

} // namespace sshpool
