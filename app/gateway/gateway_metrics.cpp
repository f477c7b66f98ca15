// Rendering of the gateway's figures for Prometheus (/metrics) and as JSON (/stats).
#include "gateway/gateway_metrics.hpp"

#include <cstdio>
#include <vector>

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

/// Where a figure is shown: `metric`, a family of its own described by `help`, in /metrics;
/// `key` in the object `section` of /stats (at the top level if `section` is empty).
struct placement {
  const char* metric;
  const char* help;
  const char* section;
  const char* key;
};

/// A figure with a single sample (a boolean is 1 or 0 in /metrics).
struct single_figure {
  placement where;
  const char* type;
  json value;
};

/// Every single-sample figure of `v`; the last drain's only once one finished.
std::vector<single_figure> single_figures(const metrics_view& v) {
  const auto& p = v.pool.pool;
  const auto& f = v.front;
  const auto& m = v.engine;
  const auto& c = v.pool.cleanup;
  std::vector<single_figure> out = {
      {{"sshpool_ready", "1 while new requests are accepted, 0 once a drain started.", "", "ready"},
       "gauge",
       !v.draining},
      {{"sshpool_pool_connections",
        "SSH connections counted against the caps (connecting + ready).", "pool", "connections"},
       "gauge",
       p.total_connections},
      {{"sshpool_pool_users", "Users with a pool.", "pool", "users"}, "gauge", p.user_count},
      {{"sshpool_pool_leases", "Leases held right now.", "pool", "leases"}, "gauge", p.leases},
      {{"sshpool_pool_waiters", "Requests waiting for a lease.", "pool", "waiters"},
       "gauge",
       p.waiters},
      {{"sshpool_gateway_forwards_in_flight", "Requests being forwarded right now.", "gateway",
        "forwards_in_flight"},
       "gauge",
       f.forwards_in_flight},
      {{"sshpool_gateway_client_connections", "Open client connections.", "gateway",
        "client_connections"},
       "gauge",
       f.open_connections},
      {{"sshpool_gateway_client_connections_accepted_total", "Client connections accepted.",
        "gateway", "client_connections_accepted"},
       "counter",
       f.connections_accepted},
      {{"sshpool_gateway_client_connections_shed_total",
        "Client connections closed to make room for a new client (all slots, or its source's, "
        "taken).",
        "gateway", "client_connections_shed"},
       "counter",
       f.shed_connections},
      {{"sshpool_gateway_client_connections_refused_total",
        "New clients answered 503 at once: every slot carried a request.", "gateway",
        "client_connections_refused"},
       "counter",
       f.refused_connections},
      {{"sshpool_gateway_client_header_timeouts_total",
        "Client connections that did not send a complete request head in time.", "gateway",
        "client_header_timeouts"},
       "counter",
       f.header_timeouts},
      {{"sshpool_gateway_tls_handshakes_total", "TLS handshakes completed by clients.", "gateway",
        "tls_handshakes"},
       "counter",
       f.tls_handshakes},
      {{"sshpool_gateway_tls_handshake_failures_total",
        "TLS handshakes that failed (protocol error, plain HTTP, the client gone).", "gateway",
        "tls_handshake_failures"},
       "counter",
       f.tls_handshake_failures},
      {{"sshpool_gateway_tls_handshake_timeouts_total",
        "TLS handshakes not complete within header_timeout (also client header timeouts).",
        "gateway", "tls_handshake_timeouts"},
       "counter",
       f.tls_handshake_timeouts},
      {{"sshpool_gateway_received_bytes_total", "Bytes received from clients.", "gateway",
        "bytes_received"},
       "counter",
       f.bytes_received},
      {{"sshpool_gateway_sent_bytes_total", "Bytes sent to clients.", "gateway", "bytes_sent"},
       "counter",
       f.bytes_sent},
      {{"sshpool_upstream_received_bytes_total",
        "Bytes received from the users' services through SSH.", "upstream", "bytes_received"},
       "counter",
       m.bytes_in},
      {{"sshpool_upstream_sent_bytes_total", "Bytes sent to the users' services through SSH.",
        "upstream", "bytes_sent"},
       "counter",
       m.bytes_out},
      {{"sshpool_ssh_handshakes_total", "SSH handshakes started.", "ssh", "handshakes"},
       "counter",
       m.handshakes_started},
      {{"sshpool_ssh_handshake_failures_total", "SSH handshakes that failed.", "ssh",
        "handshake_failures"},
       "counter",
       m.handshakes_failed},
      {{"sshpool_ssh_keepalive_failures_total",
        "Connections closed because a keepalive probe got no answer in time.", "ssh",
        "keepalive_failures"},
       "counter",
       m.keepalive_failures},
      {{"sshpool_ssh_connections_opened_total", "SSH connections established.", "ssh",
        "connections_opened"},
       "counter",
       m.connections_opened},
      {{"sshpool_ssh_connections_closed_total", "SSH connections closed.", "ssh",
        "connections_closed"},
       "counter",
       m.connections_closed},
      {{"sshpool_ssh_batched_writes_total",
        "Reactor passes that sent several requests to one SSH connection together.", "ssh",
        "batched_writes"},
       "counter",
       m.batched_writes},
      {{"sshpool_cleanup_running", "1 while the idle cleanup runs periodically.", "cleanup",
        "running"},
       "gauge",
       c.is_running},
      {{"sshpool_cleanup_runs_total", "Idle cleanup runs.", "cleanup", "runs"}, "counter", c.runs},
      {{"sshpool_cleanup_closed_connections_total", "Idle connections closed by the cleanup.",
        "cleanup", "closed_connections"},
       "counter",
       c.cleanup_count},
  };
  out.insert(
      out.end(),
      {{{"sshpool_gateway_fair_share_budget",
         "The budget of requests in flight across all users (0: none).", "fair_share",
         "max_in_flight_total"},
        "gauge",
        v.fair_share.budget},
       {{"sshpool_gateway_fair_share_active_users",
         "Users with requests in flight, who share the budget.", "fair_share", "active_users"},
        "gauge",
        v.fair_share.active_users},
       {{"sshpool_gateway_fair_share_refusals_total",
         "Requests answered 429 over_fair_share: the budget was reached and their user "
         "held its share.",
         "fair_share", "refused"},
        "counter",
        v.fair_share.refused},
       {{"sshpool_gateway_log_lines_dropped_total",
         "Log lines dropped because the log output (stderr) was not read fast enough.", "logs",
         "lines_dropped"},
        "counter",
        v.log_lines_dropped},
       {{"sshpool_gateway_upstream_retries_total",
         "Requests retried on another SSH connection: theirs failed them before any response "
         "byte (not sent yet, or an idempotent method).",
         "upstream", "retries"},
        "counter",
        v.upstream_retries}});
  if (v.pool.agents) {
    const auto& a = v.pool.agents->stats;
    out.insert(
        out.end(),
        {{{"sshpool_agent_connections_total",
           "TCP connections to the agent listener (refused ones included).", "agents",
           "connections"},
          "counter",
          a.connections},
         {{"sshpool_agent_authenticated_total", "Agent connections that authenticated.", "agents",
           "authenticated"},
          "counter",
          a.authenticated},
         {{"sshpool_agent_sessions_started_total",
           "Agent sessions that held an allowed forward and were handed to the pool.", "agents",
           "agents"},
          "counter",
          a.agents},
         {{"sshpool_agent_pre_auth_connections",
           "Agent connections not yet forwarding (key exchange, authentication), now.", "agents",
           "pre_auth"},
          "gauge",
          a.pre_auth},
         {{"sshpool_agent_penalized_sources",
           "Source addresses refused for their failures (like sshd's PerSourcePenalties), now.",
           "agents", "penalized_sources"},
          "gauge",
          a.penalized_sources}});
  }
  if (v.pool.cluster) {
    const auto& k = *v.pool.cluster;
    out.insert(
        out.end(),
        {{{"sshpool_cluster_members", "Live members of the cluster, this node included.", "cluster",
           "member_count"},
          "gauge",
          k.members.size()},
         {{"sshpool_cluster_membership_changes_total", "Times the set of live members changed.",
           "cluster", "membership_changes"},
          "counter",
          k.membership_changes},
         {{"sshpool_cluster_claims",
           "Users whose owner is fixed by a claim (an agent connected to a node, or a former "
           "owner finishing its work), as this node knows them.",
           "cluster", "claims"},
          "gauge",
          k.claims},
         {{"sshpool_cluster_remote_acquires_total",
           "Leases this node asked of a user's owner node for its own callers.", "cluster",
           "remote_acquires"},
          "counter",
          k.remote_acquires},
         {{"sshpool_cluster_remote_acquire_failures_total",
           "Of those, the ones that failed (with the owner's error, or the owner gone).", "cluster",
           "remote_acquire_failures"},
          "counter",
          k.remote_acquire_failures},
         {{"sshpool_cluster_served_acquires_total",
           "Leases this node gave to other nodes' callers, as the users' owner.", "cluster",
           "served_acquires"},
          "counter",
          k.served_acquires},
         {{"sshpool_cluster_served_leases", "Of those, the leases held right now.", "cluster",
           "served_leases"},
          "gauge",
          k.served_leases}});
  }
  if (v.last_shutdown) {
    const auto& r = *v.last_shutdown;
    out.insert(
        out.end(),
        {{{"sshpool_shutdown_duration_seconds", "Duration of the last drain.", "shutdown",
           "duration_seconds"},
          "gauge",
          seconds(r.duration)},
         {{"sshpool_shutdown_connections_closed", "SSH connections closed by the last drain.",
           "shutdown", "connections_closed"},
          "gauge",
          r.connections_closed},
         {{"sshpool_shutdown_in_flight_requests", "Requests in flight when the last drain started.",
           "shutdown", "in_flight_at_start"},
          "gauge",
          r.in_flight_at_start},
         {{"sshpool_shutdown_completed_requests",
           "Of those, requests that completed during the drain.", "shutdown",
           "completed_during_drain"},
          "gauge",
          r.completed_during_drain},
         {{"sshpool_shutdown_cut_requests",
           "Of those, requests cut at the end of the grace period.", "shutdown", "cut"},
          "gauge",
          r.cut},
         {{"sshpool_shutdown_forced", "1 if the last drain cut what remained.", "shutdown",
           "forced"},
          "gauge",
          r.forced}});
  }
  return out;
}

/// A latency histogram: its buckets in /metrics, a summary (histogram_json) in /stats.
struct histogram_figure {
  placement where;
  histogram_snapshot value;
};

/// Every histogram of `v`.
std::vector<histogram_figure> histograms(const metrics_view& v) {
  return {{{"sshpool_gateway_request_duration_seconds",
            "Time from a complete request to the last response byte taken by the socket.",
            "gateway", "request_duration_seconds"},
           v.gateway.latency()},
          {{"sshpool_upstream_request_duration_seconds",
            "Duration of forwards in the engine, from arrival to the end of the response.",
            "upstream", "request_duration_seconds"},
           v.engine.request_seconds},
          {{"sshpool_ssh_channel_open_duration_seconds", "Time to open a direct-tcpip channel.",
            "ssh", "channel_open_duration_seconds"},
           v.engine.channel_open_seconds},
          {{"sshpool_ssh_handshake_duration_seconds",
            "Time of SSH handshakes (TCP connect, key exchange, host key, authentication).", "ssh",
            "handshake_duration_seconds"},
           v.engine.handshake_seconds}};
}

/// The statistics of `user` (zero if the user has no pool yet).
user_stats stats_of(const pool_stats& p, const std::string& user) {
  for (auto& u : p.users)
    if (u.user == user)
      return u;
  return {};
}

/// The agent listener's refusals and the agent users' sessions, for /metrics.
void agent_families(exposition& e, const metrics_view& v) {
  if (!v.pool.agents)
    return;
  const auto& a = v.pool.agents->stats;
  e.family("sshpool_agent_refused_total", "counter",
           "What the agent listener refused, by reason (a connection before SSH, a session "
           "before it forwarded, or a request such as direct_tcpip).");
  for (std::size_t i = 0; i < ssh::agent_refusal_count; ++i)
    e.sample("sshpool_agent_refused_total", static_cast<double>(a.refused[i]),
             std::string{"reason=\""} + ssh::to_string(static_cast<ssh::agent_refusal>(i)) + "\"");
  e.family("sshpool_agent_sessions", "gauge",
           "Agent sessions (ssh -R) of each agent-mode user connected now.");
  for (auto& user : v.agent_users)
    e.sample("sshpool_agent_sessions", static_cast<double>(stats_of(v.pool.pool, user).agents),
             "user=\"" + label_value(user) + "\"");
  e.family("sshpool_agent_sessions_refused_total", "counter",
           "Agent sessions refused because their user had max_connections_per_user already.");
  for (auto& user : v.agent_users)
    e.sample("sshpool_agent_sessions_refused_total",
             static_cast<double>(stats_of(v.pool.pool, user).agents_refused),
             "user=\"" + label_value(user) + "\"");
}

/// The cluster's peers, for /metrics (labelled by their configured address).
void cluster_families(exposition& e, const metrics_view& v) {
  if (!v.pool.cluster)
    return;
  const auto& peers = v.pool.cluster->peers;
  auto each_peer = [&](const char* name, const char* type, const char* help, auto value) {
    e.family(name, type, help);
    for (auto& p : peers)
      e.sample(name, static_cast<double>(value(p)), "peer=\"" + label_value(p.address) + "\"");
  };
  each_peer("sshpool_cluster_peer_up", "gauge",
            "1 while the peer node is connected and answers heartbeats.",
            [](const cluster_peer_stats& p) { return p.up ? 1 : 0; });
  each_peer("sshpool_cluster_peer_connects_total", "counter", "Connections made to the peer node.",
            [](const cluster_peer_stats& p) { return p.connects; });
  each_peer("sshpool_cluster_peer_failures_total", "counter",
            "Connection attempts to the peer node that failed, and connections lost.",
            [](const cluster_peer_stats& p) { return p.failures; });
}

/// The cluster as /stats shows it: the members, each peer and its state (null if this
/// gateway is not a cluster node).
json cluster_json(const metrics_view& v, json figures) {
  if (!v.pool.cluster)
    return nullptr;
  const auto& k = *v.pool.cluster;
  json peers = json::array();
  for (auto& p : k.peers)
    peers.push_back({{"address", p.address},
                     {"node_id", p.node_id},
                     {"state", p.up ? "up" : "down"},
                     {"connects", p.connects},
                     {"failures", p.failures},
                     {"since_unix_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                           p.since.time_since_epoch())
                                           .count()}});
  figures["node_id"] = k.node_id;
  figures["members"] = k.members;
  figures["peers"] = std::move(peers);
  figures["directory"] = k.directory;
  return figures;
}

/// Failed client authentications by reason, for /metrics.
void auth_families(exposition& e, const metrics_view& v) {
  e.family("sshpool_gateway_auth_failures_total", "counter",
           "Failed client authentications by reason (rate_limited: refused with 429 before "
           "any verification).");
  const auto& failures = v.gateway.auth_failures();
  for (std::size_t i = 0; i < auth_failure_count; ++i)
    e.sample("sshpool_gateway_auth_failures_total", static_cast<double>(failures[i]),
             std::string{"reason=\""} + to_string(static_cast<auth_failure>(i)) + "\"");
}

/// Where `where` puts its figure in the /stats object `out`.
json& stats_entry(json& out, const placement& where) {
  return where.section[0] == '\0' ? out[where.key] : out[where.section][where.key];
}

} // namespace

void gateway_metrics::count(int status, const std::string& code, std::chrono::nanoseconds latency) {
  ++requests_[{status, code}];
  latency_.observe(latency);
}

std::string render_prometheus(const metrics_view& v) {
  exposition e;
  for (const auto& f : single_figures(v))
    e.single(f.where.metric, f.type, f.where.help,
             f.value.is_boolean() ? (f.value.get<bool>() ? 1 : 0) : f.value.get<double>());
  const auto& p = v.pool.pool;
  e.family("sshpool_pool_connections_by_state", "gauge",
           "SSH connections by state: connecting, idle (ready, no lease), leased.");
  e.sample("sshpool_pool_connections_by_state", static_cast<double>(p.connecting),
           "state=\"connecting\"");
  e.sample("sshpool_pool_connections_by_state", static_cast<double>(p.idle), "state=\"idle\"");
  e.sample("sshpool_pool_connections_by_state", static_cast<double>(leased_connections(p)),
           "state=\"leased\"");
  e.family("sshpool_gateway_requests_total", "counter",
           "Requests answered by the gateway (operational endpoints excluded), by HTTP status "
           "and result code (ok, an sshpool error code, or client_closed).");
  for (auto& [key, count] : v.gateway.requests())
    e.sample("sshpool_gateway_requests_total", static_cast<double>(count),
             "status=\"" + std::to_string(key.first) + "\",code=\"" + label_value(key.second) +
                 "\"");
  e.family("sshpool_upstream_requests_total", "counter",
           "Forwards finished by the engine, by result (ok or an sshpool error code).");
  for (auto& [result, count] : v.engine.requests)
    e.sample("sshpool_upstream_requests_total", static_cast<double>(count),
             "result=\"" + label_value(result) + "\"");
  agent_families(e, v);
  cluster_families(e, v);
  auth_families(e, v);
  for (const auto& h : histograms(v))
    e.histogram(h.where.metric, h.where.help, h.value);
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
                     {"acquire_timeouts", u.acquire_timeouts},
                     {"agents", u.agents},
                     {"agents_refused", u.agents_refused}});
  json requests = json::array();
  for (auto& [key, count] : v.gateway.requests())
    requests.push_back({{"status", key.first}, {"code", key.second}, {"count", count}});
  json upstream_requests = json::object();
  for (auto& [result, count] : v.engine.requests)
    upstream_requests[result] = count;
  const auto& c = v.pool.cleanup;
  json out = {{"shutdown", nullptr}, {"agents", nullptr}, {"cluster", nullptr}};
  for (const auto& f : single_figures(v))
    stats_entry(out, f.where) = f.value;
  for (const auto& h : histograms(v))
    stats_entry(out, h.where) = histogram_json(h.value);
  out["pool"]["connecting"] = p.connecting;
  out["pool"]["idle"] = p.idle;
  out["pool"]["leased"] = leased_connections(p);
  out["pool"]["per_user"] = std::move(users);
  out["gateway"]["requests"] = std::move(requests);
  out["upstream"]["requests"] = std::move(upstream_requests);
  json auth_failures = json::object();
  for (std::size_t i = 0; i < auth_failure_count; ++i)
    auth_failures[to_string(static_cast<auth_failure>(i))] = v.gateway.auth_failures()[i];
  out["gateway"]["auth_failures"] = std::move(auth_failures);
  out["cleanup"]["interval_seconds"] = seconds(c.config.cleanup_interval);
  out["cleanup"]["max_idle_seconds"] = seconds(c.config.max_idle_time);
  if (v.pool.agents) {
    const auto& a = *v.pool.agents;
    json refused = json::object();
    for (std::size_t i = 0; i < ssh::agent_refusal_count; ++i)
      refused[ssh::to_string(static_cast<ssh::agent_refusal>(i))] = a.stats.refused[i];
    out["agents"]["port"] = a.port;
    out["agents"]["host_key_fingerprint"] = a.fingerprint;
    out["agents"]["host_public_key"] = a.public_key;
    out["agents"]["refused"] = std::move(refused);
  }
  out["cluster"] = cluster_json(v, std::move(out["cluster"]));
  return out.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

} // namespace sshpool::gateway
