#include "sshpool/ssh/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace sshpool {

spdlog::logger& log() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto existing = spdlog::get("sshpool");
    return existing ? existing : spdlog::stderr_color_mt("sshpool");
  }();
  return *instance;
}

} // namespace sshpool
