// The config file's authentication settings (see auth_settings.hpp).
#include "gateway/auth_settings.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "gateway/user_settings.hpp"
#include "net/text.hpp"

namespace sshpool::gateway {

namespace {

using json = nlohmann::json;

/// The largest leeway for exp and nbf, in seconds.
constexpr std::uint64_t max_leeway_seconds = 3600;

expected<void> fail(std::string message) {
  return {errc::invalid_argument, std::move(message)};
}

} // namespace

std::string apply_api_keys(const json& value, user_config& u) {
  if (!value.is_array())
    return "must be an array of hex SHA-256 hashes";
  std::vector<std::string> hashes;
  for (auto& item : value) {
    std::string hex = item.is_string() ? item.get<std::string>() : std::string{};
    bool ok = hex.size() == 64 && std::all_of(hex.begin(), hex.end(), [](char c) {
                return std::isxdigit(static_cast<unsigned char>(c)) != 0;
              });
    if (!ok)
      return "each entry must be 64 hex digits (the SHA-256 of a key, e.g. from "
             "'printf %s KEY | sha256sum'), never the key itself";
    std::transform(hex.begin(), hex.end(), hex.begin(),
                   [](char c) { return static_cast<char>(std::tolower(c)); });
    hashes.push_back(std::move(hex));
  }
  u.api_keys_sha256 = std::move(hashes);
  return {};
}

expected<void> load_jwt(const json& value, const std::string& where, const std::string& base_dir,
                        gateway_config& cfg) {
  std::string at = where + ": jwt";
  if (!value.is_object())
    return fail(at + ": must be an object with public_key_file, issuer and audience");
  jwt_settings jwt;
  for (auto& [key, v] : value.items()) {
    if (key == "leeway_seconds") {
      std::string text;
      auto n = scalar_text(v, text) ? net::parse_unsigned(text) : std::nullopt;
      if (!n || *n > max_leeway_seconds)
        return fail(at + ".leeway_seconds: must be a whole number of seconds, 0 to 3600");
      jwt.policy.leeway = std::chrono::seconds(static_cast<std::int64_t>(*n));
      continue;
    }
    if (key != "public_key_file" && key != "issuer" && key != "audience")
      return fail(at + ": unknown key '" + key + "'");
    if (!v.is_string() || v.get_ref<const std::string&>().empty())
      return fail(at + "." + key + ": must be a non-empty string");
    (key == "issuer"     ? jwt.policy.issuer
     : key == "audience" ? jwt.policy.audience
                         : jwt.public_key_file) = v.get<std::string>();
  }
  for (auto [field, name] :
       {std::pair{&jwt.public_key_file, "public_key_file"}, std::pair{&jwt.policy.issuer, "issuer"},
        std::pair{&jwt.policy.audience, "audience"}})
    if (field->empty())
      return fail(at + ": missing " + name);
  jwt.public_key_file = resolve_path(jwt.public_key_file, base_dir);
  if (auto why = check_readable(jwt.public_key_file); !why.empty())
    return fail(at + ".public_key_file: " + why);
  auto keys = jwt_keys::load(jwt.public_key_file);
  if (!keys)
    return fail(at + ".public_key_file: " + keys.error().message());
  jwt.keys = std::move(*keys);
  cfg.jwt = std::move(jwt);
  return {};
}

bool auth_configured(const gateway_config& cfg) {
  if (cfg.jwt)
    return true;
  return std::any_of(cfg.users.begin(), cfg.users.end(),
                     [](const user_config& u) { return !u.api_keys_sha256.empty(); });
}

bool is_loopback(const std::string& host) {
  if (host == "localhost")
    return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1)
    return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, host.c_str(), &v6) != 1)
    return false;
  return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
}

expected<void> check_auth(const gateway_config& cfg) {
  std::set<std::string> seen;
  for (auto& u : cfg.users)
    for (auto& hash : u.api_keys_sha256)
      if (!seen.insert(hash).second)
        return fail("users." + u.name +
                    ".api_keys_sha256: a hash given twice (each API key names one user)");
  if (!is_loopback(cfg.listen_host) && !auth_configured(cfg) && !cfg.allow_unauthenticated)
    return fail("listen: " + cfg.listen_host +
                " is not a loopback address and no client authentication is configured "
                "(users' api_keys_sha256 or jwt): anyone who can connect could use every "
                "user's machine. Configure authentication, or set allow_unauthenticated to "
                "true to serve without");
  return {};
}

json describe_jwt(const gateway_config& cfg) {
  if (!cfg.jwt)
    return nullptr;
  return {{"public_key_file", cfg.jwt->public_key_file},
          {"issuer", cfg.jwt->policy.issuer},
          {"audience", cfg.jwt->policy.audience},
          {"leeway_seconds", cfg.jwt->policy.leeway.count()}};
}

} // namespace sshpool::gateway
