// sshpool-demo's settings: one table, three sources (file < environment < flags).
#include "gateway/settings.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "gateway/auth_settings.hpp"
#include "gateway/cluster_settings.hpp"
#include "gateway/tls.hpp"
#include "gateway/user_settings.hpp"
#include "net/text.hpp"
#include "sshpool/text.hpp"

namespace sshpool::gateway {

namespace {

using json = nlohmann::json;

/// Durations are bounded so that conversions to nanoseconds (caf::timespan) never overflow.
constexpr std::uint64_t max_millis = 30ULL * 24 * 3600 * 1000;
/// http-parser stops any head beyond HTTP_MAX_HEADER_SIZE (80 KiB) by itself; a larger
/// setting would not be honoured, so it is refused.
constexpr std::uint64_t max_request_header_cap = 80 * 1024;

/// One setting: its names in the three sources, its help, how it is applied and shown.
struct setting {
  const char* key;
  const char* env;
  /// The value's placeholder in --help, and its unit.
  const char* metavar;
  const char* unit;
  const char* help;
  /// Applies a value; returns why it is invalid, or an empty string.
  std::function<std::string(gateway_config&, std::string_view)> apply;
  /// The current value as text.
  std::function<std::string(const gateway_config&)> show;

  std::string flag() const {
    std::string f = std::string{"--"} + key;
    std::replace(f.begin(), f.end(), '_', '-');
    return f;
  }
};

template <class Ref>
setting count_setting(const char* key, const char* env, const char* help, Ref ref,
                      std::uint64_t max = max_config_count, bool zero_allowed = false) {
  return {key,
          env,
          "N",
          "",
          help,
          [ref, max, zero_allowed](gateway_config& c, std::string_view v) -> std::string {
            auto n = net::parse_unsigned(v);
            if (!n || *n > max_config_count)
              return "'" + std::string{v} + "' is not a positive whole number";
            if (*n == 0 && !zero_allowed)
              return "must be greater than 0";
            if (*n > max)
              return "must be at most " + std::to_string(max);
            ref(c) = static_cast<std::size_t>(*n);
            return {};
          },
          [ref](const gateway_config& c) { return std::to_string(ref(c)); }};
}

template <class Ref>
setting millis_setting(const char* key, const char* env, const char* help, Ref ref) {
  return {key,
          env,
          "MS",
          "ms",
          help,
          [ref](gateway_config& c, std::string_view v) -> std::string {
            auto n = net::parse_unsigned(v);
            if (!n)
              return "'" + std::string{v} + "' is not a positive whole number of milliseconds";
            if (*n == 0)
              return "must be greater than 0 ms";
            if (*n > max_millis)
              return "must be at most " + std::to_string(max_millis) + " ms (30 days)";
            ref(c) = std::chrono::milliseconds(static_cast<std::int64_t>(*n));
            return {};
          },
          [ref](const gateway_config& c) { return std::to_string(ref(c).count()); }};
}

template <class Ref>
setting bool_setting(const char* key, const char* env, const char* help, Ref ref) {
  return {key,
          env,
          "BOOL",
          "",
          help,
          [ref](gateway_config& c, std::string_view v) -> std::string {
            auto b = text::lower(v);
            if (b != "true" && b != "false")
              return "'" + std::string{v} + "' is not true or false";
            ref(c) = b == "true";
            return {};
          },
          [ref](const gateway_config& c) { return std::string{ref(c) ? "true" : "false"}; }};
}

/// Parses "ADDR:PORT" (a host name, IPv4 or [IPv6]; port 0-65535) of this machine into
/// `host_out` and `port_out`; returns why it is invalid, or an empty string.
std::string parse_listen(std::string_view v, std::string& host_out, std::uint16_t& port_out) {
  auto colon = v.rfind(':');
  if (colon == std::string_view::npos || colon == 0)
    return "'" + std::string{v} + "' is not ADDR:PORT";
  std::string_view host = v.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  auto port = net::parse_unsigned(v.substr(colon + 1));
  // getaddrinfo takes inet_aton's forms, which ignore anything after a space.
  if (host.empty() || host.find_first_of(" \t") != std::string_view::npos || !port || *port > 65535)
    return "'" + std::string{v} + "' is not ADDR:PORT (port 0-65535)";
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  std::string host_text{host};
  if (int rc = ::getaddrinfo(host_text.c_str(), nullptr, &hints, &found); rc != 0)
    return "'" + host_text + "' is not an address of this machine: " + ::gai_strerror(rc);
  ::freeaddrinfo(found);
  host_out = std::string{host};
  port_out = static_cast<std::uint16_t>(*port);
  return {};
}

std::string apply_listen(gateway_config& c, std::string_view v) {
  return parse_listen(v, c.listen_host, c.listen_port);
}

/// The admin listener's address, as `listen`; empty: none.
std::string apply_admin_listen(gateway_config& c, std::string_view v) {
  if (v.empty()) {
    c.admin_listen_host.clear();
    c.admin_listen_port = 0;
    return {};
  }
  return parse_listen(v, c.admin_listen_host, c.admin_listen_port);
}

/// "ADDR:PORT" as `listen` takes it ("[v6]:port" for an IPv6 address).
std::string show_address(const std::string& host, std::uint16_t port) {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

/// The agent listener's address: numeric "IPv4:port" or "[IPv6]:port" as it takes it (port
/// 0: an ephemeral one); empty: no listener.
std::string apply_agent_listen(gateway_config& c, std::string_view v) {
  std::string text{v};
  auto colon = v.rfind(':');
  if (v.empty()) {
    c.engine.agents.listen.clear();
    return {};
  }
  if (colon == std::string_view::npos)
    return "'" + text + "' is not IPv4:port or [IPv6]:port";
  std::string host{v.substr(0, colon)};
  bool v6 = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (v6)
    host = host.substr(1, host.size() - 2);
  auto port = net::parse_unsigned(v.substr(colon + 1));
  in6_addr addr{};
  if (!port || *port > 65535 || ::inet_pton(v6 ? AF_INET6 : AF_INET, host.c_str(), &addr) != 1)
    return "'" + text + "' is not a numeric IPv4:port or [IPv6]:port (port 0-65535)";
  c.engine.agents.listen = text;
  return {};
}

const std::vector<setting>& settings() {
  static const std::vector<setting> table = {
      {"listen", "LISTEN", "ADDR:PORT", "",
       "address and port of the HTTP front end (port 0: ephemeral)", apply_listen,
       [](const gateway_config& c) { return show_address(c.listen_host, c.listen_port); }},
      {"log_level", "LOG_LEVEL", "LEVEL", "", "error, warn, info, debug or trace",
       [](gateway_config& c, std::string_view v) -> std::string {
         auto level = text::lower(v);
         for (const char* ok : {"error", "warn", "info", "debug", "trace"})
           if (level == ok) {
             c.log_level = level;
             return {};
           }
         return "'" + std::string{v} + "' is not one of error, warn, info, debug, trace";
       },
       [](const gateway_config& c) { return c.log_level; }},
      {"log_format", "LOG_FORMAT", "FORMAT", "", "text or json (one JSON object per line)",
       [](gateway_config& c, std::string_view v) -> std::string {
         auto f = text::lower(v);
         if (f != "text" && f != "json")
           return "'" + std::string{v} + "' is not text or json";
         c.format = f == "json" ? log_format::json : log_format::text;
         return {};
       },
       [](const gateway_config& c) {
         return std::string{c.format == log_format::json ? "json" : "text"};
       }},
      count_setting(
          "max_connections_per_user", "MAX_CONNECTIONS_PER_USER", "SSH connections per user",
          [](auto& c) -> auto& { return c.engine.pool.max_connections_per_user; }),
      count_setting(
          "ssh_max_channels", "SSH_MAX_CHANNELS",
          "concurrent channels (requests) per SSH connection",
          [](auto& c) -> auto& { return c.engine.pool.max_channels_per_connection; }),
      count_setting(
          "max_waiters_per_user", "MAX_WAITERS_PER_USER", "requests that may wait for a lease",
          [](auto& c) -> auto& { return c.engine.pool.max_waiters_per_user; }),
      count_setting(
          "max_connections_total", "MAX_CONNECTIONS_TOTAL", "SSH connections of the whole engine",
          [](auto& c) -> auto& { return c.engine.pool.max_connections_total; }),
      count_setting(
          "scheduler_threads", "SCHEDULER_THREADS",
          "CAF scheduler threads for the engine's actors, the bridge and (on the first) the "
          "front end (0: the cores the reactor threads leave, at least 1)",
          [](auto& c) -> auto& { return c.engine.scheduler_threads; }, 256, true),
      millis_setting(
          "max_idle_time", "MAX_IDLE_TIME", "idle connections older than this close",
          [](auto& c) -> auto& { return c.engine.pool.max_idle_time; }),
      millis_setting(
          "cleanup_interval", "CLEANUP_INTERVAL", "period of the idle cleanup",
          [](auto& c) -> auto& { return c.engine.pool.cleanup_interval; }),
      millis_setting(
          "ssh_keepalive_interval", "SSH_KEEPALIVE_INTERVAL", "period of the SSH liveness probe",
          [](auto& c) -> auto& { return c.engine.pool.keepalive_interval; }),
      millis_setting(
          "ssh_connection_timeout", "SSH_CONNECTION_TIMEOUT", "deadline of an SSH handshake",
          [](auto& c) -> auto& { return c.engine.pool.connect_timeout; }),
      millis_setting(
          "acquire_timeout", "ACQUIRE_TIMEOUT",
          "wait for a free connection, then 503 pool_exhausted",
          [](auto& c) -> auto& { return c.engine.pool.acquire_timeout; }),
      millis_setting(
          "request_timeout", "REQUEST_TIMEOUT",
          "wait for the response head and between chunks, then 504",
          [](auto& c) -> auto& { return c.engine.pool.request_timeout; }),
      millis_setting(
          "shutdown_grace_period", "SHUTDOWN_GRACE_PERIOD",
          "on SIGTERM, how long requests in flight may finish",
          [](auto& c) -> auto& { return c.engine.pool.shutdown_grace_period; }),
      bool_setting(
          "shutdown_force_after_grace", "SHUTDOWN_FORCE_AFTER_GRACE",
          "true: cut what remains at the end of the grace period; false: wait for it",
          [](auto& c) -> auto& { return c.engine.pool.force_after_grace_period; }),
      count_setting(
          "max_response_bytes", "MAX_RESPONSE_BYTES",
          "largest upstream response body, streams included (a user's own max_response_bytes "
          "wins)",
          [](auto& c) -> auto& { return c.engine.pool.max_response_bytes; }),
      count_setting(
          "stream_window_bytes", "STREAM_WINDOW_BYTES",
          "a stream's bytes not yet taken by its client, at most: then the upstream is paused",
          [](auto& c) -> auto& { return c.engine.pool.stream_window_bytes; }),
      count_setting(
          "max_request_body_bytes", "MAX_REQUEST_BODY_BYTES", "largest request body (413 beyond)",
          [](auto& c) -> auto& { return c.max_request_body_bytes; }),
      count_setting(
          "max_request_header_bytes", "MAX_REQUEST_HEADER_BYTES",
          "largest request line + headers (431 beyond; http-parser's own cap is 80 KiB)",
          [](auto& c) -> auto& { return c.max_request_header_bytes; }, max_request_header_cap),
      count_setting(
          "max_clients", "MAX_CLIENTS", "client connections served at once",
          [](auto& c) -> auto& { return c.max_clients; }),
      count_setting(
          "max_clients_per_source", "MAX_CLIENTS_PER_SOURCE",
          "client connections from one address (0: no limit, e.g. behind a proxy)",
          [](auto& c) -> auto& { return c.max_clients_per_source; }, max_config_count, true),
      millis_setting(
          "client_timeout", "CLIENT_TIMEOUT",
          "a client idle, or not reading its response, this long is disconnected",
          [](auto& c) -> auto& { return c.client_timeout; }),
      millis_setting(
          "header_timeout", "HEADER_TIMEOUT",
          "a request head not complete this long after the connection (or its first byte): 408",
          [](auto& c) -> auto& { return c.header_timeout; }),
      {"admin_listen", "ADMIN_LISTEN", "ADDR:PORT", "",
       "plain HTTP listener that alone serves /metrics, /stats, /healthz, /readyz (a private "
       "address; port 0: ephemeral; empty: none, the front end serves them)",
       apply_admin_listen,
       [](const gateway_config& c) {
         return c.admin_listen_host.empty()
                    ? std::string{}
                    : show_address(c.admin_listen_host, c.admin_listen_port);
       }},
      count_setting(
          "max_in_flight_total", "MAX_IN_FLIGHT_TOTAL",
          "requests in flight across all users before fair share: then a user above budget / "
          "active users gets 429 over_fair_share (0: no budget)",
          [](auto& c) -> auto& { return c.max_in_flight_total; }, max_config_count, true),
      {"agent_listen", "AGENT_LISTEN", "ADDR:PORT", "",
       "reverse mode: numeric address and port users' machines dial in to with ssh -R (port 0: "
       "ephemeral; empty: no agent listener)",
       apply_agent_listen, [](const gateway_config& c) { return c.engine.agents.listen; }},
      {"agent_host_key", "AGENT_HOST_KEY", "FILE", "",
       "the agent listener's ed25519 host key (created, mode 0600, if missing; relative to the "
       "config file's directory, or from the environment or a flag to the current one)",
       [](gateway_config& c, std::string_view v) -> std::string {
         c.engine.agents.host_key_file = std::string{v};
         return {};
       },
       [](const gateway_config& c) { return c.engine.agents.host_key_file; }},
      millis_setting(
          "agent_login_grace", "AGENT_LOGIN_GRACE",
          "an agent's connection must be authenticated and forwarding within this",
          [](auto& c) -> auto& { return c.engine.agents.login_grace; }),
      count_setting(
          "agent_max_startups", "AGENT_MAX_STARTUPS",
          "agent connections not yet forwarding, at most (beyond: closed at once)",
          [](auto& c) -> auto& { return c.engine.agents.max_startups; }),
      count_setting(
          "agent_max_startups_per_source", "AGENT_MAX_STARTUPS_PER_SOURCE",
          "agent connections not yet forwarding from one address, at most",
          [](auto& c) -> auto& { return c.engine.agents.max_startups_per_source; }),
      count_setting(
          "agent_max_auth_tries", "AGENT_MAX_AUTH_TRIES",
          "failed authentication attempts per agent connection, then it is closed",
          [](auto& c) -> auto& { return c.engine.agents.max_auth_tries; }),
      bool_setting(
          "allow_unauthenticated", "ALLOW_UNAUTHENTICATED",
          "true: serve a listen address that is not loopback without client authentication",
          [](auto& c) -> auto& { return c.allow_unauthenticated; }),
      count_setting(
          "auth_max_failures", "AUTH_MAX_FAILURES",
          "failed authentications of one source address per auth_failure_window; beyond: 429",
          [](auto& c) -> auto& { return c.auth_max_failures; }),
      millis_setting(
          "auth_failure_window", "AUTH_FAILURE_WINDOW",
          "the window in which a source's failed authentications are counted",
          [](auto& c) -> auto& { return c.auth_failure_window; }),
      count_setting(
          "auth_max_sources", "AUTH_MAX_SOURCES",
          "source addresses whose failed authentications are tracked at once",
          [](auto& c) -> auto& { return c.auth_max_sources; }),
  };
  return table;
}

const setting* find_by_key(std::string_view key) {
  for (auto& s : settings())
    if (key == s.key)
      return &s;
  return nullptr;
}

expected<void> fail(std::string message) {
  return {errc::invalid_argument, std::move(message)};
}

/// The "tls" object of the config file: {"cert_file": "...", "key_file": "..."} (paths
/// relative to the file's directory).
expected<void> load_tls_section(const json& value, const std::string& where,
                                const std::string& base_dir, gateway_config& cfg) {
  if (!value.is_object())
    return fail(where + ": tls: must be an object {\"cert_file\": ..., \"key_file\": ...}");
  for (auto& [key, file] : value.items()) {
    if (key != "cert_file" && key != "key_file")
      return fail(where + ": tls: unknown key '" + key + "' (cert_file, key_file)");
    if (!file.is_string() || file.get<std::string>().empty())
      return fail(where + ": tls." + key + ": must be a file name");
    (key == "cert_file" ? cfg.tls_cert_file : cfg.tls_key_file) =
        resolve_path(file.get<std::string>(), base_dir);
  }
  return {};
}

/// Both TLS files or neither; the pair is loaded once to check it (exit 2 at start, not a
/// failed first handshake).
expected<void> check_tls(const gateway_config& cfg) {
  if (cfg.tls_cert_file.empty() && cfg.tls_key_file.empty())
    return {};
  if (cfg.tls_cert_file.empty() || cfg.tls_key_file.empty())
    return fail("tls: needs both cert_file and key_file");
  if (auto ctx = tls_context::load(cfg.tls_cert_file, cfg.tls_key_file); !ctx)
    return fail("tls: " + ctx.error().message());
  return {};
}

/// The current directory, or an empty string (paths then stay as given) if it is unknown.
std::string current_dir() {
  std::string dir(PATH_MAX, '\0');
  if (::getcwd(dir.data(), dir.size()) == nullptr)
    return {};
  dir.resize(std::strlen(dir.c_str()));
  return dir;
}

/// Applies a setting's value as given in `base_dir` (the config file's directory, or the
/// current one for the environment and flags), or says why not. The one path among the
/// settings, agent_host_key, is made absolute, so that --check-config's output loads back
/// the same from any directory; and every value must be UTF-8, the only text that output
/// (JSON) can hold.
std::string apply_located(const setting& s, gateway_config& cfg, std::string_view text,
                          const std::string& base_dir) {
  if (!net::valid_utf8(text))
    return "is not valid UTF-8";
  std::string value{text};
  if (std::string_view{s.key} == "agent_host_key")
    value = resolve_path(value, base_dir);
  if (!net::valid_utf8(value)) // the current directory's name is not
    return "is not valid UTF-8 once made absolute (give an absolute path)";
  return s.apply(cfg, value);
}

expected<void> load_file(const std::string& path, gateway_config& cfg) {
  std::string where = "config file " + path;
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return fail(where + ": cannot read it: " + std::strerror(errno));
  // Parse errors name a position only: the text around it is not echoed.
  json doc = json::parse(in, nullptr, false);
  if (doc.is_discarded())
    return fail(where + ": malformed JSON");
  if (!doc.is_object())
    return fail(where + ": the top level must be a JSON object");
  auto slash = path.rfind('/');
  std::string base_dir = slash == std::string::npos ? "" : slash == 0 ? "/" : path.substr(0, slash);
  if (path.front() != '/') // made absolute, as the paths it names will be
    base_dir = base_dir.empty() ? current_dir() : resolve_path(base_dir, current_dir());
  if (!net::valid_utf8(base_dir)) // relative paths in the file would not be UTF-8
    return fail(where + ": its directory's absolute name is not valid UTF-8");
  for (auto& [key, value] : doc.items()) {
    if (key == "users") {
      if (auto ok = load_users(value, where, base_dir, cfg); !ok)
        return ok;
      continue;
    }
    if (key == "tls") {
      if (auto ok = load_tls_section(value, where, base_dir, cfg); !ok)
        return ok;
      continue;
    }
    if (key == "jwt" || key == "cluster") {
      if (auto ok = key == "jwt" ? load_jwt(value, where, base_dir, cfg)
                                 : load_cluster(value, where, base_dir, cfg);
          !ok)
        return ok;
      continue;
    }
    const setting* s = find_by_key(key);
    if (s == nullptr)
      return fail(where + ": unknown key '" + key + "'");
    std::string text;
    if (!scalar_text(value, text))
      return fail(where + ": " + key + ": must be a string, number or boolean");
    if (auto why = apply_located(*s, cfg, text, base_dir); !why.empty())
      return fail(where + ": " + key + ": " + why);
  }
  return {};
}

} // namespace

expected<loaded_config> load_config(const std::vector<std::string>& args, const env_lookup& env) {
  loaded_config result;
  // Flags are collected first (the config file comes from one) and applied last.
  std::vector<std::pair<const setting*, std::string>> flags;
  std::string config_file;
  bool has_config_file = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg == "--help" || arg == "-h") {
      result.action = config_action::help;
      return result;
    }
    if (arg == "--check-config") {
      result.action = config_action::check;
      continue;
    }
    std::string value;
    bool has_value = false;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    const setting* s = nullptr;
    if (arg != "--config") {
      for (auto& candidate : settings())
        if (candidate.flag() == arg)
          s = &candidate;
      if (s == nullptr)
        return error{errc::invalid_argument, "unknown argument '" + arg + "' (see --help)"};
    }
    if (!has_value) {
      if (i + 1 == args.size())
        return error{errc::invalid_argument, "flag " + arg + ": needs a value"};
      value = args[++i];
    }
    if (s == nullptr) {
      config_file = value;
      has_config_file = true;
    } else
      flags.emplace_back(s, value);
  }
  auto& cfg = result.config;
  if (has_config_file && config_file.empty())
    return error{errc::invalid_argument, "flag --config: needs a file name"};
  if (!config_file.empty())
    if (auto ok = load_file(config_file, cfg); !ok)
      return ok.error();
  const std::string cwd = current_dir();
  for (auto& s : settings())
    if (const char* value = env(s.env); value != nullptr)
      if (auto why = apply_located(s, cfg, value, cwd); !why.empty())
        return error{errc::invalid_argument, std::string{"environment "} + s.env + ": " + why};
  for (auto& [s, value] : flags)
    if (auto why = apply_located(*s, cfg, value, cwd); !why.empty())
      return error{errc::invalid_argument, "flag " + s->flag() + ": " + why};
  if (!cfg.engine.agents.listen.empty() && cfg.engine.agents.host_key_file.empty())
    return error{errc::invalid_argument,
                 "agent_listen: needs agent_host_key (the agent listener's host key file)"};
  if (auto ok = check_agent_users(cfg); !ok)
    return ok.error();
  if (auto ok = check_tls(cfg); !ok)
    return ok.error();
  if (auto ok = check_auth(cfg); !ok)
    return ok.error();
  cfg.engine.log_level = cfg.log_level;
  if (auto ok = validate(cfg.engine); !ok)
    return error{errc::invalid_argument, "invalid engine setting: " + ok.error().message()};
  return result;
}

std::vector<std::string> changed_settings(const gateway_config& a, const gateway_config& b) {
  std::vector<std::string> keys;
  for (auto& s : settings())
    if (s.show(a) != s.show(b))
      keys.emplace_back(s.key);
  if (a.tls_cert_file != b.tls_cert_file || a.tls_key_file != b.tls_key_file)
    keys.emplace_back("tls"); // the files named at start are the ones read again
  if (describe_cluster(a) != describe_cluster(b))
    keys.emplace_back("cluster");
  return keys;
}

std::string usage_text() {
  gateway_config defaults;
  std::string out =
      "usage: sshpool-demo [--config FILE] [--listen ADDR:PORT] [flags...]\n"
      "\n"
      "An HTTP gateway that forwards each request to the service on its user's machine\n"
      "through a pool of SSH connections (sshpool). The user is named by an X-User-Id\n"
      "header or a /u/<user>/ path prefix. Operational endpoints: /healthz, /readyz,\n"
      "/metrics (Prometheus), /stats (JSON).\n"
      "\n"
      "Settings come from the config file, then the environment, then the flags (later\n"
      "ones win). The file is a JSON object with the keys below and \"users\":\n"
      "  {\"listen\": \"127.0.0.1:8080\", \"users\": {\"alice\": {\"host\": \"10.0.0.5\",\n"
      "   \"port\": 22, \"username\": \"tunnel\", \"identity_file\": \"id_ed25519\",\n"
      "   \"known_hosts_file\": \"known_hosts\", \"target_host\": \"127.0.0.1\",\n"
      "   \"target_port\": 11434, \"server_nodelay\": true, \"passphrase_file\": \"pass\"}}}\n"
      "Relative paths are relative to the file's directory. Values are UTF-8 text.\n"
      "A user may have its own \"max_response_bytes\" (e.g. for long LLM streams)\n"
      "instead of the global one.\n"
      "A user whose machine dials in (reverse mode, needs agent_listen and agent_host_key):\n"
      "  \"bob\": {\"mode\": \"agent\", \"authorized_keys_file\": \"bob.keys\",\n"
      "          \"target_port\": 11434}\n"
      "and bob's machine runs: ssh -N -R 11434:localhost:11434 -p 2222 bob@gateway\n"
      "TLS on the front end (TLS 1.2+, ALPN http/1.1; SIGHUP re-reads both files):\n"
      "  \"tls\": {\"cert_file\": \"server.pem\", \"key_file\": \"server.key\"}\n"
      "\n"
      "Client authentication (then the credential decides the user): a user's\n"
      "  \"api_keys_sha256\": [\"<hex SHA-256 of a key>\"], \"forward_authorization\": false\n"
      "and/or top-level JWTs (RS256, ES256, EdDSA; a PEM public key or a JWKS file):\n"
      "  \"jwt\": {\"public_key_file\": \"jwks.json\", \"issuer\": \"...\",\n"
      "          \"audience\": \"...\", \"leeway_seconds\": 30}\n"
      "Clients send Authorization: Bearer <key or JWT>. A listen address that is not\n"
      "loopback needs one of them, or allow_unauthenticated.\n"
      "\n"
      "A node of a cluster (every node lists the same users; each user is served by\n"
      "one owner node, the others hand its requests over; mutual TLS between nodes):\n"
      "  \"cluster\": {\"node_id\": \"n1\", \"listen\": \"10.0.0.1:4100\",\n"
      "    \"peers\": [\"10.0.0.2:4100\"], \"ca_file\": \"ca.pem\", \"cert_file\": \"n1.pem\",\n"
      "    \"key_file\": \"n1.key\", \"heartbeat_interval\": 500, \"heartbeat_timeout\": 3000}\n"
      "\n"
      "  --config FILE\n      the JSON config file\n"
      "  --check-config\n      print the effective configuration (no secrets) and exit\n"
      "  --help\n      print this text and exit\n";
  for (auto& s : settings()) {
    std::string unit = *s.unit != '\0' ? std::string{" "} + s.unit : "";
    out += "  " + s.flag() + " " + s.metavar + "\n      " + s.help + "\n      (env " + s.env +
           ", key " + s.key + ", default " + s.show(defaults) + unit + ")\n";
  }
  return out;
}

std::string describe(const gateway_config& cfg, const ssh::host_key_identity* host_key) {
  json out = json::object();
  for (auto& s : settings())
    out[s.key] = s.show(cfg);
  if (!cfg.engine.agents.listen.empty() && host_key != nullptr) {
    json listener = {{"listen", cfg.engine.agents.listen},
                     {"host_key_file", cfg.engine.agents.host_key_file},
                     {"host_key_fingerprint", host_key->fingerprint},
                     {"host_public_key", host_key->public_key}};
    out["agent_listener"] = std::move(listener);
  }
  if (!cfg.tls_cert_file.empty())
    out["tls"] = {{"cert_file", cfg.tls_cert_file}, {"key_file", cfg.tls_key_file}};
  if (cfg.jwt)
    out["jwt"] = describe_jwt(cfg);
  if (!cfg.engine.cluster.node_id.empty())
    out["cluster"] = describe_cluster(cfg);
  out["users"] = describe_users(cfg);
  return out.dump(2);
}

} // namespace sshpool::gateway
