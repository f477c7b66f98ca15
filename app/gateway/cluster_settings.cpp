// The config file's `cluster` object (see cluster_settings.hpp).
#include "gateway/cluster_settings.hpp"

#include <algorithm>
#include <array>
#include <cctype>

#include "gateway/user_settings.hpp"
#include "net/text.hpp"

namespace sshpool::gateway {

namespace {

using json = nlohmann::json;

/// Durations are bounded like the other durations of the config (30 days).
constexpr std::uint64_t max_millis = 30ULL * 24 * 3600 * 1000;
/// A node id names the node in logs, /stats and metric labels.
constexpr std::size_t max_node_id = 64;

expected<void> fail(std::string message) {
  return {errc::invalid_argument, std::move(message)};
}

/// Why `v` is not a node id (1 to 64 letters, digits, '.', '_', '-'), or empty.
std::string check_node_id(const std::string& v) {
  bool ok = !v.empty() && v.size() <= max_node_id && std::all_of(v.begin(), v.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '_' || c == '-';
  });
  return ok ? std::string{} : "'" + v + "' is not 1 to 64 letters, digits, '.', '_' or '-'";
}

/// Why `v` is not a peer's "HOST:PORT" (a name, IPv4 or [IPv6]; port 1-65535), or empty.
std::string check_peer(const std::string& v) {
  auto colon = v.rfind(':');
  std::string host = colon == std::string::npos ? std::string{} : v.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  auto port = colon == std::string::npos ? std::nullopt : net::parse_unsigned(v.substr(colon + 1));
  bool blank = std::any_of(host.begin(), host.end(),
                           [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; });
  if (host.empty() || blank || !port || *port == 0 || *port > 65535)
    return "'" + v + "' is not HOST:PORT (port 1-65535)";
  return {};
}

/// The keys of the object.
constexpr std::array<const char*, 8> cluster_keys = {
    "node_id",          "listen", "peers", "ca_file", "cert_file", "key_file", "heartbeat_interval",
    "heartbeat_timeout"};

/// Applies one key of the object (one of `cluster_keys`); returns why its value is invalid, or an
/// empty string.
std::string apply_cluster_key(const std::string& key, const json& v, const std::string& base_dir,
                              cluster_config& c) {
  if (key == "peers") {
    if (!v.is_array())
      return "must be an array of \"HOST:PORT\" strings";
    std::vector<std::string> peers;
    for (auto& item : v) {
      std::string peer = item.is_string() ? item.get<std::string>() : std::string{};
      if (auto why = check_peer(peer); !why.empty())
        return why;
      peers.push_back(std::move(peer));
    }
    c.peers = std::move(peers);
    return {};
  }
  std::string text;
  if (!scalar_text(v, text))
    return "must be a string or a number";
  if (key == "heartbeat_interval" || key == "heartbeat_timeout") {
    auto n = net::parse_unsigned(text);
    if (!n || *n == 0 || *n > max_millis)
      return "'" + text + "' is not a whole number of milliseconds from 1 to " +
             std::to_string(max_millis);
    (key == "heartbeat_interval" ? c.heartbeat_interval : c.heartbeat_timeout) =
        std::chrono::milliseconds(static_cast<std::int64_t>(*n));
    return {};
  }
  if (key == "node_id") {
    c.node_id = text;
    return check_node_id(text);
  }
  if (key == "listen") {
    // Peers dial this port: an ephemeral one (0) could not be listed in their config.
    if (auto why = check_numeric_address(text); !why.empty())
      return why;
    if (text.size() >= 2 && text.compare(text.size() - 2, 2, ":0") == 0)
      return "'" + text + "' has port 0: the peers need a fixed port";
    c.listen = text;
    return {};
  }
  auto path = resolve_path(text, base_dir);
  if (auto why = check_readable(path); !why.empty())
    return why;
  (key == "ca_file" ? c.ca_file : key == "cert_file" ? c.cert_file : c.key_file) = path;
  return {};
}

} // namespace

expected<void> load_cluster(const json& value, const std::string& where,
                            const std::string& base_dir, gateway_config& cfg) {
  std::string at = where + ": cluster";
  if (!value.is_object())
    return fail(at + ": must be an object with node_id, listen, peers and the TLS files");
  cluster_config c;
  for (auto& [key, v] : value.items()) {
    if (std::find(cluster_keys.begin(), cluster_keys.end(), key) == cluster_keys.end())
      return fail(at + ": unknown key '" + key +
                  "' (node_id, listen, peers, ca_file, cert_file, key_file, heartbeat_interval, "
                  "heartbeat_timeout)");
    if (auto why = apply_cluster_key(key, v, base_dir, c); !why.empty())
      return fail(at + "." + key + ": " + why);
  }
  for (auto [field, name] : {std::pair{&c.node_id, "node_id"}, std::pair{&c.listen, "listen"}})
    if (field->empty())
      return fail(at + ": missing " + name);
  // Mutual TLS is not optional, on loopback either: any local process could otherwise
  // join the cluster and be handed users' requests.
  for (auto [field, name] : {std::pair{&c.ca_file, "ca_file"}, std::pair{&c.cert_file, "cert_file"},
                             std::pair{&c.key_file, "key_file"}})
    if (field->empty())
      return fail(at + ": missing " + name +
                  " (nodes authenticate each other with certificates of the cluster's CA: "
                  "ca_file, cert_file and key_file are required)");
  cfg.engine.cluster = std::move(c);
  return {};
}

json describe_cluster(const gateway_config& cfg) {
  const auto& c = cfg.engine.cluster;
  if (c.node_id.empty())
    return nullptr;
  return {{"node_id", c.node_id},
          {"listen", c.listen},
          {"peers", c.peers},
          {"ca_file", c.ca_file},
          {"cert_file", c.cert_file},
          {"key_file", c.key_file},
          {"heartbeat_interval", c.heartbeat_interval.count()},
          {"heartbeat_timeout", c.heartbeat_timeout.count()}};
}

} // namespace sshpool::gateway
