// The engine settings of the security tests: errors only in the log, and 10 s for a lease
// and for a request, far above what a healthy private sshd needs.
#pragma once

#include <chrono>

#include "sshpool/config.hpp"

namespace sshpool::test {

inline engine_config quiet_config() {
  engine_config cfg;
  cfg.log_level = "error";
  cfg.pool.acquire_timeout = std::chrono::seconds(10);
  cfg.pool.request_timeout = std::chrono::seconds(10);
  return cfg;
}

} // namespace sshpool::test
