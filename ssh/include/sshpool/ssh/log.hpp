// The "sshpool" spdlog logger, shared by every layer. An application may register its own
// logger named "sshpool" before the first engine is made; otherwise a stderr logger is used.
#pragma once

#include <memory>

#include <spdlog/spdlog.h>

namespace sshpool {

/// The "sshpool" logger: the registered one if the application made it, else a stderr one.
spdlog::logger& log();

} // namespace sshpool
