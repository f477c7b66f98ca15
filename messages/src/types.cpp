#include "sshpool/types.hpp"

#include <arpa/inet.h>

#include "sshpool/config.hpp"
#include "sshpool/text.hpp"

namespace sshpool {

namespace {

expected<void> positive(std::size_t value, const char* name) {
  if (value == 0)
    return {errc::invalid_argument, std::string{name} + " must be greater than 0"};
  return {};
}

expected<void> positive(std::chrono::milliseconds value, const char* name) {
  if (value.count() <= 0)
    return {errc::invalid_argument, std::string{name} + " must be greater than 0 ms"};
  return {};
}

/// A node id: 1-64 characters of A-Z a-z 0-9 . _ - (it is logged, hashed and shown in
/// /stats and /metrics labels).
bool node_id_ok(const std::string& id) {
  if (id.empty() || id.size() > 64)
    return false;
  for (char c : id)
    if (!text::is_alnum(c) && c != '.' && c != '_' && c != '-')
      return false;
  return true;
}

bool ip_literal(const std::string& host) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

expected<void> validate_cluster(const cluster_config& c) {
  auto invalid = [](std::string text) -> expected<void> {
    return {errc::invalid_argument, "cluster." + std::move(text)};
  };
  if (c.node_id.empty()) {
    if (!c.listen.empty() || !c.peers.empty())
      return invalid("node_id is missing (cluster.listen or cluster.peers is set)");
    return {};
  }
  if (!node_id_ok(c.node_id))
    return invalid("node_id must be 1-64 characters of A-Z a-z 0-9 . _ -");
  if (c.listen.empty())
    return invalid("listen is missing (cluster.node_id is set)");
  auto listen = parse_host_port(c.listen);
  if (!listen || !ip_literal(listen->host))
    return invalid("listen must be IPv4:port or [IPv6]:port (got '" + c.listen + "')");
  for (auto& peer : c.peers) {
    if (!parse_host_port(peer))
      return invalid("peers: '" + peer + "' is not host:port");
    if (peer == c.listen)
      return invalid("peers: '" + peer + "' is this node's own listen address");
  }
  for (auto [value, name] : {std::pair{&c.ca_file, "ca_file"}, std::pair{&c.cert_file, "cert_file"},
                             std::pair{&c.key_file, "key_file"}})
    if (value->empty())
      return invalid(std::string{name} + " is missing (a cluster node requires mutual TLS)");
  for (auto [value, name] : {std::pair{c.heartbeat_interval, "cluster.heartbeat_interval"},
                             std::pair{c.heartbeat_timeout, "cluster.heartbeat_timeout"},
                             std::pair{c.reconnect_backoff_base, "cluster.reconnect_backoff_base"},
                             std::pair{c.reconnect_backoff_cap, "cluster.reconnect_backoff_cap"}})
    if (auto res = positive(value, name); !res)
      return res;
  if (c.heartbeat_timeout <= c.heartbeat_interval)
    return invalid("heartbeat_timeout must be greater than cluster.heartbeat_interval");
  if (c.reconnect_backoff_cap < c.reconnect_backoff_base)
    return invalid("reconnect_backoff_cap must not be less than cluster.reconnect_backoff_base");
  return {};
}

} // namespace

expected<host_port> parse_host_port(const std::string& address) {
  auto fail = [&] {
    return error{errc::invalid_argument, "'" + address + "' is not host:port or [IPv6]:port"};
  };
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return fail();
  std::string host = address.substr(0, colon);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']')
      return fail();
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return fail(); // an IPv6 address needs its brackets
  }
  for (char c : host)
    if (!text::is_alnum(c) && c != '.' && c != '-' && c != ':' && c != '_' && c != '%')
      return fail();
  auto digits = address.substr(colon + 1);
  if (digits.empty() || digits.size() > 5)
    return fail();
  unsigned long port = 0;
  for (char c : digits) {
    if (c < '0' || c > '9')
      return fail();
    port = port * 10 + static_cast<unsigned long>(c - '0');
  }
  if (port == 0 || port > 65535)
    return fail();
  return host_port{std::move(host), static_cast<std::uint16_t>(port)};
}

const std::string* response::header(std::string_view name) const noexcept {
  for (auto& [key, value] : headers)
    if (text::iequals(key, name))
      return &value;
  return nullptr;
}

expected<void> validate(const engine_config& cfg) {
  auto& p = cfg.pool;
  for (auto [value, name] :
       {std::pair{p.max_connections_per_user, "max_connections_per_user"},
        std::pair{p.max_channels_per_connection, "max_channels_per_connection"},
        std::pair{p.max_connections_total, "max_connections_total"},
        std::pair{p.max_response_bytes, "max_response_bytes"},
        std::pair{p.max_header_bytes, "max_header_bytes"},
        std::pair{p.stream_window_bytes, "stream_window_bytes"},
        std::pair{p.max_handshakes_per_second, "max_handshakes_per_second"},
        std::pair{cfg.connector_threads, "connector_threads"}})
    if (auto res = positive(value, name); !res)
      return res;
  for (auto [value, name] : {std::pair{p.acquire_timeout, "acquire_timeout"},
                             std::pair{p.connect_timeout, "connect_timeout"},
                             std::pair{p.request_timeout, "request_timeout"},
                             std::pair{p.max_idle_time, "max_idle_time"},
                             std::pair{p.cleanup_interval, "cleanup_interval"},
                             std::pair{p.channel_idle_timeout, "channel_idle_timeout"},
                             std::pair{p.keepalive_interval, "keepalive_interval"},
                             std::pair{p.keepalive_timeout, "keepalive_timeout"},
                             std::pair{p.validation_idle_threshold, "validation_idle_threshold"},
                             std::pair{p.max_lifetime, "max_lifetime"},
                             std::pair{p.reconnect_backoff_base, "reconnect_backoff_base"},
                             std::pair{p.reconnect_backoff_cap, "reconnect_backoff_cap"},
                             std::pair{p.shutdown_grace_period, "shutdown_grace_period"}})
    if (auto res = positive(value, name); !res)
      return res;
  if (auto& a = cfg.agents; !a.listen.empty()) {
    // The listener's address and host key file themselves are checked when it starts.
    if (a.host_key_file.empty())
      return {errc::invalid_argument, "agents.host_key_file is missing (agents.listen is set)"};
    for (auto [value, name] :
         {std::pair{a.max_startups, "agents.max_startups"},
          std::pair{a.max_startups_per_source, "agents.max_startups_per_source"},
          std::pair{a.max_auth_tries, "agents.max_auth_tries"}})
      if (auto res = positive(value, name); !res)
        return res;
    if (auto res = positive(a.login_grace, "agents.login_grace"); !res)
      return res;
  }
  if (auto res = validate_cluster(cfg.cluster); !res)
    return res;
  static constexpr const char* levels[] = {"trace", "debug", "info",     "warn", "warning",
                                           "error", "err",   "critical", "off"};
  for (auto level : levels)
    if (cfg.log_level == level)
      return {};
  return {errc::invalid_argument, "log_level must be one of trace, debug, info, warn, error, "
                                  "critical, off (got '" +
                                      cfg.log_level + "')"};
}

} // namespace sshpool
