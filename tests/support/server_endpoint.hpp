// The endpoint the test SSH servers (test_sshd, fault_sshd) hand to the engine.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "sshpool/types.hpp"

namespace sshpool::test {

/// `user` at host:port with the given private key and known_hosts file, forwarding to
/// 127.0.0.1:target_port, with server_nodelay off. The TCP_NODELAY nudge execs a no-op
/// through the login shell, which fault_sshd does not serve; and tests stop sshd abruptly,
/// killing such shells mid-startup: on this image root's .bashrc runs `pyenv rehash`, whose
/// lock then goes stale and stalls every later login for a minute. Tests that are about the
/// nudge turn it back on.
inline endpoint server_endpoint(std::string host, std::uint16_t port, std::string user,
                                std::string identity_file, std::string known_hosts_file,
                                std::uint16_t target_port) {
  endpoint result;
  result.host = std::move(host);
  result.port = port;
  result.username = std::move(user);
  result.identity_file = std::move(identity_file);
  result.known_hosts_file = std::move(known_hosts_file);
  result.target_host = "127.0.0.1";
  result.target_port = target_port;
  result.server_nodelay = false;
  return result;
}

} // namespace sshpool::test
