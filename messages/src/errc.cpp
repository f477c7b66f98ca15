#include "sshpool/errc.hpp"

#include <array>

#include "sshpool/error.hpp"
#include "sshpool/types.hpp"

namespace sshpool {

namespace {

constexpr std::array<const char*, 23> errc_names = {
    "none",
    "invalid_request",
    "invalid_argument",
    "unknown_user",
    "pool_exhausted",
    "connect_failed",
    "auth_failed",
    "host_key_unknown",
    "host_key_mismatch",
    "timeout",
    "channel_open_failed",
    "request_timeout",
    "connection_lost",
    "upstream_closed",
    "bad_response",
    "response_too_large",
    "shutting_down",
    "not_leased",
    "wrong_user",
    "host_key_revoked",
    "forwarding_prohibited",
    "agent_offline",
    "internal",
};

static_assert(errc_names.size() == static_cast<size_t>(errc::internal) + 1,
              "every errc has a name");

} // namespace

const char* to_string(errc x) noexcept {
  auto i = static_cast<size_t>(x);
  return i < errc_names.size() ? errc_names[i] : "unknown";
}

bool from_string(std::string_view name, errc& out) noexcept {
  for (size_t i = 0; i < errc_names.size(); ++i) {
    if (name == errc_names[i]) {
      out = static_cast<errc>(i);
      return true;
    }
  }
  return false;
}

std::string error::to_string() const {
  std::string result = sshpool::to_string(code_);
  if (!message_.empty()) {
    result += ": ";
    result += message_;
  }
  return result;
}

const char* to_string(connection_state x) noexcept {
  static constexpr std::array<const char*, 4> names = {"connecting", "ready", "closing", "closed"};
  auto i = static_cast<std::size_t>(x);
  return i < names.size() ? names[i] : "unknown";
}

const char* to_string(endpoint_mode x) noexcept {
  return x == endpoint_mode::agent ? "agent" : "dial";
}

} // namespace sshpool
