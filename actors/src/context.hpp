// What every actor of one engine shares: the settings and the transport factory. Read-only
// after the engine is built, so actors on any scheduler thread may read it.
#pragma once

#include <memory>

#include "sshpool/config.hpp"
#include "sshpool/ssh/transport.hpp"

namespace sshpool {

struct actor_context {
  pool_config pool;
  /// Makes the transports of connection actors (ssh_runtime, or a fake in unit tests).
  std::shared_ptr<ssh::transport_factory> transports;
};

} // namespace sshpool
