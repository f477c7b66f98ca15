// sshpool-demo's users: their two modes, checked strictly (see user_settings.hpp).
#include "gateway/user_settings.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "gateway/auth_settings.hpp"
#include "net/text.hpp"
#include "sshpool/ssh/authorized_keys.hpp"
#include "sshpool/ssh/key_check.hpp"

namespace sshpool::gateway {

namespace {

using json = nlohmann::json;

/// The keys only a dial user may have.
constexpr std::array<const char*, 10> dial_keys = {"host",
                                                   "port",
                                                   "username",
                                                   "identity_file",
                                                   "known_hosts_file",
                                                   "passphrase_file",
                                                   "host_keys",
                                                   "ciphers",
                                                   "server_nodelay",
                                                   "target_host"};

/// The other keys of a user (`authorized_keys_file` is an agent user's).
constexpr std::array<const char*, 6> other_keys = {"mode",
                                                   "target_port",
                                                   "max_response_bytes",
                                                   "authorized_keys_file",
                                                   "api_keys_sha256",
                                                   "forward_authorization"};

bool known_user_key(const std::string& key) {
  auto is = [&](const char* k) { return key == k; };
  return std::any_of(dial_keys.begin(), dial_keys.end(), is) ||
         std::any_of(other_keys.begin(), other_keys.end(), is);
}

expected<void> fail(std::string message) {
  return {errc::invalid_argument, std::move(message)};
}

/// Parses one known key of a user into `u`; returns why it is invalid, or an empty string.
std::string apply_user_key(const std::string& key, const json& value, const std::string& text,
                           const std::string& base_dir, user_config& u) {
  if (key == "mode") {
    if (text != "dial" && text != "agent")
      return "'" + text + "' is not dial or agent";
    u.ep.mode = text == "agent" ? endpoint_mode::agent : endpoint_mode::dial;
  } else if (key == "host" || key == "username" || key == "target_host" || key == "ciphers") {
    if (!value.is_string() || text.empty())
      return "must be a non-empty string";
    (key == "host"          ? u.ep.host
     : key == "username"    ? u.ep.username
     : key == "target_host" ? u.ep.target_host
                            : u.ep.ciphers) = text;
  } else if (key == "identity_file" || key == "known_hosts_file" || key == "passphrase_file" ||
             key == "authorized_keys_file") {
    if (!value.is_string() || text.empty())
      return "must be a non-empty string";
    auto path = resolve_path(text, base_dir);
    if (auto why = check_readable(path); !why.empty())
      return why;
    (key == "identity_file"      ? u.ep.identity_file
     : key == "known_hosts_file" ? u.ep.known_hosts_file
     : key == "passphrase_file"  ? u.passphrase_file
                                 : u.ep.authorized_keys_file) = path;
  } else if (key == "port" || key == "target_port") {
    auto n = net::parse_unsigned(text);
    if (!n || *n == 0 || *n > 65535)
      return "'" + text + "' is not a port (1-65535)";
    (key == "port" ? u.ep.port : u.ep.target_port) = static_cast<std::uint16_t>(*n);
  } else if (key == "host_keys") {
    if (text != "strict" && text != "accept-new")
      return "'" + text + "' is not strict or accept-new";
    u.ep.host_keys = text == "strict" ? host_key_policy::strict : host_key_policy::accept_new;
  } else if (key == "max_response_bytes") {
    auto n = net::parse_unsigned(text);
    if (!n || *n == 0 || *n > max_config_count)
      return "'" + text + "' is not a positive whole number (at most " +
             std::to_string(max_config_count) + ")";
    u.ep.max_response_bytes = *n;
  } else if (key == "forward_authorization") {
    if (!value.is_boolean())
      return "must be true or false";
    u.forward_authorization = value.get<bool>();
  } else { // server_nodelay
    if (!value.is_boolean())
      return "must be true or false";
    u.ep.server_nodelay = value.get<bool>();
  }
  return {};
}

/// The checks of a dial user once its keys are read: the credentials, the key loaded.
expected<void> finish_dial_user(const std::string& at, user_config& u) {
  if (!u.ep.authorized_keys_file.empty())
    return fail(at + ".authorized_keys_file: only an agent user (\"mode\": \"agent\") has one");
  for (auto [value, key] : {std::pair{&u.ep.host, "host"}, std::pair{&u.ep.username, "username"},
                            std::pair{&u.ep.identity_file, "identity_file"},
                            std::pair{&u.ep.known_hosts_file, "known_hosts_file"}})
    if (value->empty())
      return fail(at + ": missing " + key);
  if (!u.passphrase_file.empty()) {
    std::ifstream in{u.passphrase_file, std::ios::binary};
    std::stringstream buf;
    buf << in.rdbuf();
    u.ep.passphrase = buf.str();
    while (!u.ep.passphrase.empty() &&
           (u.ep.passphrase.back() == '\n' || u.ep.passphrase.back() == '\r'))
      u.ep.passphrase.pop_back();
  }
  // The key is loaded now, so that a key that cannot be used stops start-up (and
  // --check-config) instead of failing every request with 502.
  if (auto ok = ssh::check_private_key(u.ep.identity_file, u.ep.passphrase); !ok)
    return fail(at + ".identity_file: " + ok.error().message());
  return {};
}

/// The checks of an agent user: no dial key, a file that holds a usable key.
expected<void> finish_agent_user(const std::string& at, const json& spec, user_config& u) {
  for (const char* key : dial_keys)
    if (spec.contains(key))
      return fail(at + "." + key +
                  ": not used in agent mode (the user's machine dials in with ssh -R)");
  if (u.ep.authorized_keys_file.empty())
    return fail(at + ": missing authorized_keys_file");
  auto keys = ssh::load_authorized_keys(u.ep.authorized_keys_file);
  if (!keys)
    return fail(at + ".authorized_keys_file: " + keys.error().message());
  // Skipped lines are counted, not quoted: the file's content is not echoed.
  if (keys->keys.empty())
    return fail(at + ".authorized_keys_file: '" + u.ep.authorized_keys_file +
                "' holds no usable key (" + std::to_string(keys->skipped.size()) +
                " lines skipped)");
  return {};
}

} // namespace

std::string resolve_path(const std::string& path, const std::string& base_dir) {
  if (path.empty() || path.front() == '/' || base_dir.empty())
    return path;
  return base_dir + "/" + path;
}

std::string check_readable(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return "cannot read '" + path + "': " + std::strerror(errno);
  struct stat st {};
  bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  ::close(fd);
  if (!regular)
    return "'" + path + "' is not a regular file";
  return {};
}

bool scalar_text(const json& v, std::string& out) {
  if (v.is_string())
    out = v.get<std::string>();
  else if (v.is_boolean())
    out = v.get<bool>() ? "true" : "false";
  else if (v.is_number())
    out = v.dump();
  else
    return false;
  return true;
}

expected<void> load_users(const json& users, const std::string& where, const std::string& base_dir,
                          gateway_config& cfg) {
  if (!users.is_object())
    return fail(where + ": users must be an object of user name -> endpoint");
  for (auto& [name, spec] : users.items()) {
    std::string at = where + ": users." + name;
    if (name.empty() || name.size() > 1024)
      return fail(at + ": a user name must have 1 to 1024 characters");
    for (unsigned char ch : name)
      if (ch <= 0x20 || ch == 0x7f || ch == '/')
        return fail(at + ": a user name cannot hold spaces, control characters or '/'");
    if (!spec.is_object())
      return fail(at + ": must be an object");
    user_config u;
    u.name = name;
    u.ep.port = 22;
    u.ep.target_host = "127.0.0.1";
    for (auto& [key, value] : spec.items()) {
      if (key == "api_keys_sha256") {
        if (auto why = apply_api_keys(value, u); !why.empty())
          return fail(at + "." + key + ": " + why);
        continue;
      }
      std::string text;
      if (!scalar_text(value, text))
        return fail(at + "." + key + ": must be a string, number or boolean");
      if (!known_user_key(key))
        return fail(at + ": unknown key '" + key + "'");
      if (auto why = apply_user_key(key, value, text, base_dir, u); !why.empty())
        return fail(at + "." + key + ": " + why);
    }
    if (u.ep.target_port == 0)
      return fail(at + ": missing target_port");
    auto ok = u.ep.mode == endpoint_mode::agent ? finish_agent_user(at, spec, u)
                                                : finish_dial_user(at, u);
    if (!ok)
      return ok;
    cfg.users.push_back(std::move(u));
  }
  return {};
}

expected<void> check_agent_users(const gateway_config& cfg) {
  if (!cfg.engine.agents.listen.empty())
    return {};
  for (auto& u : cfg.users)
    if (u.ep.mode == endpoint_mode::agent)
      return fail("users." + u.name +
                  ".mode: agent mode needs agent_listen (the address agents dial in to)");
  return {};
}

json describe_users(const gateway_config& cfg) {
  json users = json::object();
  for (auto& u : cfg.users) {
    json ep;
    if (u.ep.mode == endpoint_mode::agent) {
      ep = {{"mode", to_string(u.ep.mode)},
            {"authorized_keys_file", u.ep.authorized_keys_file},
            {"target_port", u.ep.target_port}};
    } else {
      ep = {{"mode", to_string(u.ep.mode)},
            {"host", u.ep.host},
            {"port", u.ep.port},
            {"username", u.ep.username},
            {"identity_file", u.ep.identity_file},
            {"known_hosts_file", u.ep.known_hosts_file},
            {"target_host", u.ep.target_host},
            {"target_port", u.ep.target_port},
            {"host_keys", u.ep.host_keys == host_key_policy::strict ? "strict" : "accept-new"},
            {"server_nodelay", u.ep.server_nodelay}};
      if (!u.passphrase_file.empty())
        ep["passphrase_file"] = u.passphrase_file;
      if (!u.ep.ciphers.empty())
        ep["ciphers"] = u.ep.ciphers;
    }
    if (u.ep.max_response_bytes != 0)
      ep["max_response_bytes"] = u.ep.max_response_bytes;
    if (!u.api_keys_sha256.empty())
      ep["api_keys_sha256"] = u.api_keys_sha256;
    if (u.forward_authorization)
      ep["forward_authorization"] = true;
    users[u.name] = std::move(ep);
  }
  return users;
}

} // namespace sshpool::gateway
