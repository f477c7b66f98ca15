#include "sshpool/types.hpp"

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

} // namespace

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
