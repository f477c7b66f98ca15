// The HTTP/1.1 keep-alive load generator of sshpool-bench for the paths that are plain TCP
// ports (nginx directly, the OpenSSH tunnels): one thread, epoll, non-blocking sockets.
#pragma once

#include <cstdint>
#include <vector>

#include "load.hpp"

namespace sshpool::bench {

/// Runs `opts.concurrency` keep-alive connections to 127.0.0.1, spread round robin over
/// `ports`, one request in flight on each, and checks every response. Blocks for about
/// `opts.duration`.
load_result run_http_load(const std::vector<std::uint16_t>& ports, const load_options& opts);

} // namespace sshpool::bench
