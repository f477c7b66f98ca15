#include "open_failure.hpp"

#include <charconv>
#include <cstdint>
#include <string>

#include <libssh/ssh2.h> // SSH2_OPEN_*: the reasons of RFC 4254, 5.1

namespace sshpool::ssh {

namespace {

/// RFC 4254's name of a channel open failure reason.
const char* reason_name(std::uint32_t reason) noexcept {
  switch (reason) {
  case SSH2_OPEN_ADMINISTRATIVELY_PROHIBITED:
    return "administratively prohibited";
  case SSH2_OPEN_CONNECT_FAILED:
    return "connect failed";
  case SSH2_OPEN_UNKNOWN_CHANNEL_TYPE:
    return "unknown channel type";
  case SSH2_OPEN_RESOURCE_SHORTAGE:
    return "resource shortage";
  default:
    return "unknown reason";
  }
}

} // namespace

error open_failure_error(std::string_view libssh_error, std::string_view target) {
  std::string message = "cannot open a direct-tcpip channel to ";
  message.append(target).append(": ");
  constexpr std::string_view marker = "Channel opening failure: channel ";
  constexpr std::string_view code_open = " error (";
  auto at = libssh_error.find(marker);
  auto open = at == std::string_view::npos ? at : libssh_error.find(code_open, at + marker.size());
  if (open == std::string_view::npos)
    return {errc::channel_open_failed, message.append(libssh_error)};
  auto rest = libssh_error.substr(open + code_open.size());
  std::uint32_t reason = 0;
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), reason);
  if (ec != std::errc{} || end == rest.data() + rest.size() || *end != ')')
    return {errc::channel_open_failed, message.append(libssh_error)};
  auto text = rest.substr(static_cast<std::size_t>(end - rest.data()) + 1);
  while (!text.empty() && text.front() == ' ')
    text.remove_prefix(1);
  message += "SSH reason " + std::to_string(reason) + " (" + reason_name(reason) + ")";
  if (!text.empty()) {
    // The server's words, for logs: control characters masked, length bounded.
    constexpr std::size_t max_text = 200;
    message += ": ";
    for (char ch : text.substr(0, max_text))
      message += static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f ? '?' : ch;
    if (text.size() > max_text)
      message += "...";
  }
  return {reason == SSH2_OPEN_ADMINISTRATIVELY_PROHIBITED ? errc::forwarding_prohibited
                                                          : errc::channel_open_failed,
          std::move(message)};
}

} // namespace sshpool::ssh
