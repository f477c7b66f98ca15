// Rendering of the gateway's figures for Prometheus (/metrics) and as JSON (/stats).
#include "gateway/gateway_metrics.hpp"

#include <cstdio>

#include <nlohmann/json.hpp>

namespace sshpool::gateway {

namespace {

using json = nlohmann::json;

/// A number as Prometheus expects it (shortest exact-enough decimal form).
std::string number(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

/// Escapes a label value (backslash, quote, newline).
std::string label_value(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

/// Builds the exposition text, one family at a time.
class exposition {
public:
  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  void sample(const std::string& name, double value, const std::string& labels = {}) {
    out_ += name;
    if (!labels.empty())
      out_ += "{" + labels + "}";
    out_ += ' ';
    out_ += number(value);
    out_ += '\n';
  }

  /// A family with a single sample.
  void single(const char* name, const char* type, const char* help, double value) {
    family(name, type, help);
    sample(name, value);
  }

  void histogram(const char* name, const char* help, const histogram_snapshot& h) {
    family(name, "histogram", help);
    std::string base = name;
    for (std::size_t i = 0; i < h.bounds.size() && i < h.counts.size(); ++i)
      sample(base + "_bucket", static_cast<double>(h.counts[i]),
             "le=\"" + number(h.bounds[i]) + "\"");
    sample(base + "_bucket", static_cast<double>(h.count), "le=\"+Inf\"");
    sample(base + "_sum", h.sum);
    sample(base + "_count", static_cast<double>(h.count));
  }

  std::string take() { return std::move(out_); }

private:
  std::string out_;
};

/// The upper bound of the bucket holding quantile `q` (buckets are cumulative); null when
/// empty or beyond the last bound.
json quantile_bound(const histogram_snapshot& h, double q) {
  if (h.count == 0)
    return nullptr;
  auto rank = static_cast<double>(h.count) * q;
  for (std::size_t i = 0; i < h.bounds.size() && i < h.counts.size(); ++i)
    if (static_cast<double>(h.counts[i]) >= rank)
      return h.bounds[i];
  return nullptr;
}

/// A histogram for people: count, sum, mean and the bucket bounds of p50/p90/p99 (the
/// buckets themselves are in /metrics).
json histogram_json(const histogram_snapshot& h) {
  json mean = h.count == 0 ? json(nullptr) : json(h.sum / static_cast<double>(h.count));
  return {{"count", h.count},
          {"sum", h.sum},
          {"mean", std::move(mean)},
          {"p50_at_most", quantile_bound(h, 0.5)},
          {"p90_at_most", quantile_bound(h, 0.9)},
          {"p99_at_most", quantile_bound(h, 0.99)}};
}

double seconds(std::chrono::milliseconds d) {
  return static_cast<double>(d.count()) / 1000.0;
}

std::uint64_t leased_connections(const pool_stats& p) {
  auto free = p.connecting + p.idle;
  return p.total_connections > free ? p.total_connections - free : 0;
}

} // namespace

void gateway_metrics::count(int status, const std::string& code, std::chrono::nanoseconds latency) {
  ++requests_[{status, code}];
  latency_.observe(latency);
}

std::string render_prometheus(const metrics_view& v) {
  exposition e;
  const auto& p = v.pool.pool;
  e.single("sshpool_ready", "gauge", "1 while new requests are accepted, 0 once a drain started.",
           v.draining ? 0 : 1);
  e.single("sshpool_pool_connections", "gauge",
           "SSH connections counted against the caps (connecting + ready).",
           static_cast<double>(p.total_connections));
  e.family("sshpool_pool_connections_by_state", "gauge",
           "SSH connections by state: connecting, idle (ready, no lease), leased.");
  e.sample("sshpool_pool_connections_by_state", static_cast<double>(p.connecting),
           "state=\"connecting\"");
  e.sample("sshpool_pool_connections_by_state", static_cast<double>(p.idle), "state=\"idle\"");
  e.sample("sshpool_pool_connections_by_state", static_cast<double>(leased_connections(p)),
           "state=\"leased\"");
  e.single("sshpool_pool_users", "gauge", "Users with a pool.", static_cast<double>(p.user_count));
  e.single("sshpool_pool_leases", "gauge", "Leases held right now.", static_cast<double>(p.leases));
  e.single("sshpool_pool_waiters", "gauge", "Requests waiting for a lease.",
           static_cast<double>(p.waiters));

  e.family("sshpool_gateway_requests_total", "counter",
           "Requests answered by the gateway (operational endpoints excluded), by HTTP status "
           "and result code (ok, an sshpool error code, or client_closed).");
  for (auto& [key, count] : v.gateway.requests())
    e.sample("sshpool_gateway_requests_total", static_cast<double>(count),
             "status=\"" + std::to_string(key.first) + "\",code=\"" + label_value(key.second) +
                 "\"");
  e.histogram("sshpool_gateway_request_duration_seconds",
              "Time from a complete request to the last response byte taken by the socket.",
              v.gateway.latency());
  e.single("sshpool_gateway_forwards_in_flight", "gauge", "Requests being forwarded right now.",
           static_cast<double>(v.front.forwards_in_flight));
  e.single("sshpool_gateway_client_connections", "gauge", "Open client connections.",
           static_cast<double>(v.front.open_connections));
  e.single("sshpool_gateway_client_connections_accepted_total", "counter",
           "Client connections accepted.", static_cast<double>(v.front.connections_accepted));
  e.single("sshpool_gateway_client_connections_shed_total", "counter",
           "Client connections closed to make room for a new client (all slots, or its "
           "source's, taken).",
           static_cast<double>(v.front.shed_connections));
  e.single("sshpool_gateway_client_connections_refused_total", "counter",
           "New clients answered 503 at once: every slot carried a request.",
           static_cast<double>(v.front.refused_connections));
  e.single("sshpool_gateway_client_header_timeouts_total", "counter",
           "Client connections that did not send a complete request head in time.",
           static_cast<double>(v.front.header_timeouts));
  e.single("sshpool_gateway_received_bytes_total", "counter", "Bytes received from clients.",
           static_cast<double>(v.front.bytes_received));
  e.single("sshpool_gateway_sent_bytes_total", "counter", "Bytes sent to clients.",
           static_cast<double>(v.front.bytes_sent));

  e.family("sshpool_upstream_requests_total", "counter",
           "Forwards finished by the engine, by result (ok or an sshpool error code).");
  for (auto& [result, count] : v.engine.requests)
    e.sample("sshpool_upstream_requests_total", static_cast<double>(count),
             "result=\"" + label_value(result) + "\"");
  e.histogram("sshpool_upstream_request_duration_seconds",
              "Duration of forwards in the engine, from arrival to the end of the response.",
              v.engine.request_seconds);
  e.single("sshpool_upstream_received_bytes_total", "counter",
           "Bytes received from the users' services through SSH.",
           static_cast<double>(v.engine.bytes_in));
  e.single("sshpool_upstream_sent_bytes_total", "counter",
           "Bytes sent to the users' services through SSH.",
           static_cast<double>(v.engine.bytes_out));
  e.histogram("sshpool_ssh_channel_open_duration_seconds", "Time to open a direct-tcpip channel.",
              v.engine.channel_open_seconds);
  e.histogram("sshpool_ssh_handshake_duration_seconds",
              "Time of SSH handshakes (TCP connect, key exchange, host key, authentication).",
              v.engine.handshake_seconds);
  e.single("sshpool_ssh_handshakes_total", "counter", "SSH handshakes started.",
           static_cast<double>(v.engine.handshakes_started));
  e.single("sshpool_ssh_handshake_failures_total", "counter", "SSH handshakes that failed.",
           static_cast<double>(v.engine.handshakes_failed));
  e.single("sshpool_ssh_keepalive_failures_total", "counter",
           "Connections closed because a keepalive probe got no answer in time.",
           static_cast<double>(v.engine.keepalive_failures));
  e.single("sshpool_ssh_connections_opened_total", "counter", "SSH connections established.",
           static_cast<double>(v.engine.connections_opened));
  e.single("sshpool_ssh_connections_closed_total", "counter", "SSH connections closed.",
           static_cast<double>(v.engine.connections_closed));

  const auto& c = v.pool.cleanup;
  e.single("sshpool_cleanup_running", "gauge", "1 while the idle cleanup runs periodically.",
           c.is_running ? 1 : 0);
  e.single("sshpool_cleanup_runs_total", "counter", "Idle cleanup runs.",
           static_cast<double>(c.runs));
  e.single("sshpool_cleanup_closed_connections_total", "counter",
           "Idle connections closed by the cleanup.", static_cast<double>(c.cleanup_count));

  if (v.last_shutdown) {
    const auto& r = *v.last_shutdown;
    e.single("sshpool_shutdown_duration_seconds", "gauge", "Duration of the last drain.",
             seconds(r.duration));
    e.single("sshpool_shutdown_connections_closed", "gauge",
             "SSH connections closed by the last drain.",
             static_cast<double>(r.connections_closed));
    e.single("sshpool_shutdown_in_flight_requests", "gauge",
             "Requests in flight when the last drain started.",
             static_cast<double>(r.in_flight_at_start));
    e.single("sshpool_shutdown_completed_requests", "gauge",
             "Of those, requests that completed during the drain.",
             static_cast<double>(r.completed_during_drain));
    e.single("sshpool_shutdown_cut_requests", "gauge",
             "Of those, requests cut at the end of the grace period.", static_cast<double>(r.cut));
    e.single("sshpool_shutdown_forced", "gauge", "1 if the last drain cut what remained.",
             r.forced ? 1 : 0);
  }
  return e.take();
}

std::string render_json(const metrics_view& v) {
  const auto& p = v.pool.pool;
  json users = json::array();
  for (auto& u : p.users)
    users.push_back({{"user", u.user},
                     {"connections", u.connections},
                     {"connecting", u.connecting},
                     {"idle", u.idle},
                     {"leases", u.leases},
                     {"waiters", u.waiters},
                     {"handshakes", u.handshakes},
                     {"handshake_failures", u.handshake_failures},
                     {"acquire_timeouts", u.acquire_timeouts}});
  json requests = json::array();
  for (auto& [key, count] : v.gateway.requests())
    requests.push_back({{"status", key.first}, {"code", key.second}, {"count", count}});
  json upstream_requests = json::object();
  for (auto& [result, count] : v.engine.requests)
    upstream_requests[result] = count;
  const auto& c = v.pool.cleanup;
  json out = {
      {"ready", !v.draining},
      {"pool",
       {{"connections", p.total_connections},
        {"connecting", p.connecting},
        {"idle", p.idle},
        {"leased", leased_connections(p)},
        {"users", p.user_count},
        {"leases", p.leases},
        {"waiters", p.waiters},
        {"per_user", std::move(users)}}},
      {"gateway",
       {{"requests", std::move(requests)},
        {"request_duration_seconds", histogram_json(v.gateway.latency())},
        {"forwards_in_flight", v.front.forwards_in_flight},
        {"client_connections", v.front.open_connections},
        {"client_connections_accepted", v.front.connections_accepted},
        {"client_connections_shed", v.front.shed_connections},
        {"client_connections_refused", v.front.refused_connections},
        {"client_header_timeouts", v.front.header_timeouts},
        {"bytes_received", v.front.bytes_received},
        {"bytes_sent", v.front.bytes_sent}}},
      {"upstream",
       {{"requests", std::move(upstream_requests)},
        {"request_duration_seconds", histogram_json(v.engine.request_seconds)},
        {"bytes_received", v.engine.bytes_in},
        {"bytes_sent", v.engine.bytes_out}}},
      {"ssh",
       {{"handshakes", v.engine.handshakes_started},
        {"handshake_failures", v.engine.handshakes_failed},
        {"handshake_duration_seconds", histogram_json(v.engine.handshake_seconds)},
        {"channel_open_duration_seconds", histogram_json(v.engine.channel_open_seconds)},
        {"keepalive_failures", v.engine.keepalive_failures},
        {"connections_opened", v.engine.connections_opened},
        {"connections_closed", v.engine.connections_closed}}},
      {"cleanup",
       {{"running", c.is_running},
        {"runs", c.runs},
        {"closed_connections", c.cleanup_count},
        {"interval_seconds", seconds(c.config.cleanup_interval)},
        {"max_idle_seconds", seconds(c.config.max_idle_time)}}},
      {"shutdown", nullptr},
  };
  if (v.last_shutdown) {
    const auto& r = *v.last_shutdown;
    out["shutdown"] = {{"duration_seconds", seconds(r.duration)},
                       {"connections_closed", r.connections_closed},
                       {"in_flight_at_start", r.in_flight_at_start},
                       {"completed_during_drain", r.completed_during_drain},
                       {"cut", r.cut},
                       {"forced", r.forced}};
  }
  return out.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

} // namespace sshpool::gateway
