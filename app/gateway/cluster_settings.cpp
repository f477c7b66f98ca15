// The config file's `cluster` object (see cluster_settings.hpp).
#include "gateway/cluster_settings.hpp"

#include <algorithm>
#include <array>

#include "gateway/user_settings.hpp"
#include "net/text.hpp"

namespace sshpool::gateway {

namespace {

using json = nlohmann::json;

/// Durations are bounded like the other durations of the config (30 days).
constexpr std::uint64_t max_millis = 30ULL * 24 * 3600 * 1000;

expected<void> fail(std::string message) {
  return {errc::invalid_argument, std::move(message)};
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
    bool strings = v.is_array() && std::all_of(v.begin(), v.end(),
                                               [](const json& item) { return item.is_string(); });
    if (!strings)
      return "must be an array of \"HOST:PORT\" strings";
    c.peers = v.get<std::vector<std::string>>();
    return {};
  }
  std::string text;
  if (!scalar_text(v, text))
    return "must be a string or a number";
  if (key == "heartbeat_interval" || key == "heartbeat_timeout") {
    auto n = net::parse_unsigned(text);
    if (!n || *n > max_millis)
      return "'" + text + "' is not a whole number of milliseconds up to " +
             std::to_string(max_millis);
    (key == "heartbeat_interval" ? c.heartbeat_interval : c.heartbeat_timeout) =
        std::chrono::milliseconds(static_cast<std::int64_t>(*n));
    return {};
  }
  if (key == "node_id" || key == "listen") {
    (key == "node_id" ? c.node_id : c.listen) = text;
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
  // Without node_id the engine would not be a node at all: a section meant to make it one
  // must not be ignored.
  if (c.node_id.empty())
    return fail(at + ": missing node_id");
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
