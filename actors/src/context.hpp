// What every actor of one engine shares: the settings and the transport factory. Read-only
// after the engine is built, so actors on any scheduler thread may read it.
#pragma once

#include <memory>

#include "sshpool/config.hpp"
#include "sshpool/metrics.hpp"
#include "sshpool/ssh/transport.hpp"

namespace sshpool {

struct actor_context {
  pool_config pool;
  /// Makes the transports of connection actors (ssh_runtime, or a fake in unit tests).
  std::shared_ptr<ssh::transport_factory> transports;
  /// The engine's counters (shared with the transports).
  std::shared_ptr<metrics> counters = std::make_shared<metrics>();
};

} // namespace sshpool
