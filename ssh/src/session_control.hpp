// State shared by a transport, the connector running its handshake and the reactor that
// drives its session: identity, settings, the event sink, and the "closed" flag that stops
// a handshake's result from being adopted after the owner gave up.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "sshpool/ssh/transport.hpp"

namespace sshpool::ssh {

class reactor;

struct session_control {
  std::uint64_t id = 0;
  endpoint ep;
  transport_options opts;
  std::shared_ptr<transport_sink> sink;
  /// The reactor that will drive the session once connected.
  std::shared_ptr<reactor> home;
  /// Set by the owner (close/destroy); checked before and after the handshake is handed on.
  std::atomic<bool> closed{false};
};

} // namespace sshpool::ssh
