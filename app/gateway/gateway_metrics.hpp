// The figures behind /metrics and /stats: the gateway's own counters (requests by HTTP
// status and result code, request latency), the front end's connection and byte counts,
// the engine's metrics (lock-free, read live), and the pool and cleanup statistics and the
// agent listener's counters (read for each rendering by the gateway's stats thread, because
// reading the pool's blocks). Rendered
// as Prometheus text exposition format 0.0.4 (names `sshpool_...`, base units, HELP and
// TYPE for each family; checked with `promtool check metrics` in the tests) or as JSON.
//
// Thread-safety: `gateway_metrics::count` and the renderers run on the front end's loop
// thread only; the histogram inside is lock-free.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gateway/auth.hpp"
#include "gateway/http_server.hpp"
#include "sshpool/engine.hpp"
#include "sshpool/metrics.hpp"
#include "sshpool/types.hpp"

namespace sshpool::gateway {

/// Requests answered by the gateway (operational endpoints excluded).
class gateway_metrics {
public:
  /// Counts one request: the HTTP status sent (499: the client left before a response),
  /// its result code ("ok", an errc name, "client_closed"), and how long it took.
  void count(int status, const std::string& code, std::chrono::nanoseconds latency);

  /// Requests by (status, code).
  const std::map<std::pair<int, std::string>, std::uint64_t>& requests() const { return requests_; }
  histogram_snapshot latency() const { return latency_.snapshot(); }

  // -- client authentication -------------------------------------------------------------------
  /// Counts one failed authentication (see auth.hpp).
  void count_auth_failure(auth_failure why) { ++auth_failures_[static_cast<std::size_t>(why)]; }
  /// Failed authentications by reason (indexed by auth_failure).
  const std::array<std::uint64_t, auth_failure_count>& auth_failures() const {
    return auth_failures_;
  }

private:
  std::map<std::pair<int, std::string>, std::uint64_t> requests_;
  histogram latency_;
  std::array<std::uint64_t, auth_failure_count> auth_failures_{};
};

/// Pool and cleanup statistics as read from the engine.
struct pool_snapshot {
  pool_stats pool;
  cleanup_stats cleanup;
  /// Reverse mode: the agent listener (nullopt: none).
  std::optional<agent_listener_status> agents;
  /// Cluster mode: the node's members, peers and routed leases (nullopt: not a node).
  std::optional<cluster_stats> cluster;
};

/// The front end's own figures: its counters (see http_server) and the requests forwarded
/// right now (from the request to the end of its response).
struct front_end_figures : front_end_counts {
  std::uint64_t forwards_in_flight = 0;
};

/// Fair share under max_in_flight_total (see gateway.cpp's admission).
struct fair_share_figures {
  /// The budget (0: none).
  std::uint64_t budget = 0;
  /// Users with requests in flight now.
  std::uint64_t active_users = 0;
  /// Requests answered 429 over_fair_share so far.
  std::uint64_t refused = 0;
};

/// Everything one rendering shows.
struct metrics_view {
  const gateway_metrics& gateway;
  metrics_snapshot engine;
  pool_snapshot pool;
  front_end_figures front;
  /// A drain started (/readyz answers 503).
  bool draining = false;
  /// The report of the engine's drain once it finished.
  std::optional<shutdown_report> last_shutdown;
  /// The users in agent mode (their agent sessions are shown per user in /metrics too).
  std::vector<std::string> agent_users;
  fair_share_figures fair_share;
  /// Log lines dropped because stderr was not read fast enough (see log_writer.hpp).
  std::uint64_t log_lines_dropped = 0;
  /// Requests retried on another connection (see upstream.hpp).
  std::uint64_t upstream_retries = 0;
};

/// Prometheus text exposition format 0.0.4.
std::string render_prometheus(const metrics_view& v);

/// The same figures as one JSON object (indented: people read it too).
std::string render_json(const metrics_view& v);

} // namespace sshpool::gateway
