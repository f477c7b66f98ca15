// The command-line flags of sshpool-bench and sshpool-bench-engine that say how the engine
// reaches the private sshd and nginx behind it (both on 127.0.0.1): --sshd-port,
// --sshd-user, --identity, --known-hosts and --target-port.
#pragma once

#include <cstdint>
#include <string>

#include "report.hpp"
#include "sshpool/types.hpp"

namespace sshpool::bench {

/// An endpoint at 127.0.0.1 forwarding to 127.0.0.1, its port left 0 for the flags to set.
inline endpoint loopback_endpoint() {
  endpoint ep;
  ep.host = "127.0.0.1";
  ep.port = 0;
  ep.target_host = "127.0.0.1";
  return ep;
}

/// Applies `flag` with `value` to `ep` if it is one of these flags; false if it is not.
inline bool endpoint_flag(const command_line& cli, const std::string& flag,
                          const std::string& value, endpoint& ep) {
  auto port = [&] { return static_cast<std::uint16_t>(cli.number(flag, value, 1, 65535)); };
  if (flag == "--sshd-port")
    ep.port = port();
  else if (flag == "--sshd-user")
    ep.username = value;
  else if (flag == "--identity")
    ep.identity_file = value;
  else if (flag == "--known-hosts")
    ep.known_hosts_file = value;
  else if (flag == "--target-port")
    ep.target_port = port();
  else
    return false;
  return true;
}

/// Whether `ep` got what these flags set (each of them, or a target port some other way).
inline bool endpoint_complete(const endpoint& ep) {
  return ep.port != 0 && !ep.username.empty() && !ep.identity_file.empty() &&
         !ep.known_hosts_file.empty() && ep.target_port != 0;
}

} // namespace sshpool::bench
