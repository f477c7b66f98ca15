// State shared by a transport, the connector running its handshake (or the listener that
// authenticated its agent) and the reactor that drives its session: identity, settings,
// the event sink, and the "closed" flag that stops a handshake's result from being adopted
// after the owner gave up.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include <libssh/libssh.h>

#include "agent_session.hpp"
#include "sshpool/metrics.hpp"
#include "sshpool/ssh/transport.hpp"

namespace sshpool::ssh {

/// A connected, authenticated session as a connector hands it to a reactor.
struct connected_session {
  ssh_session session = nullptr;
  /// The session channel of the TCP_NODELAY nudge, whose command may still run; the
  /// reactor frees it once the command ended (never cutting the user's shell short).
  ssh_channel nudge = nullptr;
};

class reactor;

struct session_control {
  std::uint64_t id = 0;
  /// A dialed session's endpoint. For an agent: host and port are the agent's address,
  /// username its user, target_host and target_port its bound forward.
  endpoint ep;
  /// An agent session's policy (it answers the agent's requests in the reactor too), or
  /// nullptr for a dialed session. Its channels are forwarded-tcpip.
  std::shared_ptr<agent_session> agent;
  transport_options opts;
  std::shared_ptr<transport_sink> sink;
  /// Latest start of the handshake: `open()` + queue_timeout.
  std::chrono::steady_clock::time_point start_deadline;
  /// The reactor that will drive the session once connected.
  std::shared_ptr<reactor> home;
  /// The engine's counters (outlive every session).
  metrics* counters = nullptr;
  /// Set by the owner (close/destroy); checked before and after the handshake is handed on.
  std::atomic<bool> closed{false};
};

/// A new session id: unique among the runtime's sessions, dialed and agents alike.
std::uint64_t next_session_id();

} // namespace sshpool::ssh
