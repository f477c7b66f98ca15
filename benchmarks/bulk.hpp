// The bulk scenario of sshpool-bench-engine: one large streamed response through one SSH
// channel of the engine, and the same download over a plain TCP port (nginx directly, or an
// OpenSSH `ssh -L` forward) with a minimal blocking HTTP/1.1 client. No CAF here.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace sshpool {
class engine;
} // namespace sshpool

namespace sshpool::bench {

/// One download. Both functions add the body bytes to `progress` as they arrive.
struct bulk_result {
  std::uint64_t bytes = 0;
  /// Pieces the body arrived in (engine: on_chunk calls; TCP: recv calls).
  std::uint64_t chunks = 0;
  std::chrono::nanoseconds elapsed{0};
  /// Empty if the download was a 200 with exactly the expected bytes.
  std::string error;
};

/// GET `path` through a connection of `user`, streamed (engine::forward_stream), counting
/// the body bytes as they arrive; the lease is taken before the clock starts.
bulk_result engine_download(engine& e, const std::string& user, const std::string& path,
                            std::uint64_t expected_bytes, std::atomic<std::uint64_t>& progress);

/// GET `path` from 127.0.0.1:`port` on a new TCP connection, reading the body into a
/// reused buffer (Content-Length framing).
bulk_result tcp_download(std::uint16_t port, const std::string& path, std::uint64_t expected_bytes,
                         std::atomic<std::uint64_t>& progress);

/// Runs `download` on `streams` threads at once: bytes and pieces summed, `elapsed` the wall
/// time of the whole, the first error kept.
bulk_result parallel_downloads(std::size_t streams, const std::function<bulk_result()>& download);

} // namespace sshpool::bench
