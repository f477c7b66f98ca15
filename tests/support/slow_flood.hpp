// A slow-client flood for tests and benchmarks: many TCP connections to a local server, held
// open the way a slowloris attacker holds them. Each sends the start of a request head and
// then one more byte every `drip`, never finishing it (or nothing at all when `drip` is
// zero: idle connections). A connection the server closes is opened again at once, so the
// flood keeps its size for as long as it runs. Connections come from `sources` loopback
// addresses (127.0.100.1, 127.0.100.2, ...), so that a limit per source address alone
// does not stop them.
//
// One thread and one epoll set; the destructor stops it and closes every socket. The
// process needs a descriptor limit above `connections` (see raise_fd_limit).
//
// Thread-safety: the counters may be read from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>

namespace sshpool::test {

struct flood_options {
  std::uint16_t port = 0;
  std::size_t connections = 2000;
  /// One more head byte per connection this often; zero: the connections send nothing.
  std::chrono::milliseconds drip{3000};
  /// Distinct source addresses (at most 250).
  std::size_t sources = 32;
};

class slow_flood {
public:
  /// Starts connecting at once. Throws std::system_error if epoll cannot be set up.
  explicit slow_flood(flood_options opts);
  ~slow_flood();
  slow_flood(const slow_flood&) = delete;
  slow_flood& operator=(const slow_flood&) = delete;

  /// Connections the server closed (each was opened again).
  std::uint64_t closed_by_server() const noexcept { return closed_.load(); }

  /// Waits until every connection of the flood was established at least once (the flood
  /// is at full size; from then on those the server closes are reopened); false at `limit`.
  /// The number open at one moment is no condition to wait for: it dips each time the
  /// server sheds one, until that one is open again.
  bool wait_established(std::chrono::milliseconds limit) const;

private:
  void run();
  /// `established_` changed: wakes `wait_established`.
  void notify();

  flood_options opts_;
  int epoll_ = -1;
  int stop_fd_ = -1;
  /// Connections established at least once.
  std::atomic<std::size_t> established_{0};
  std::atomic<std::uint64_t> closed_{0};
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::thread thread_;
};

/// Raises this process's soft descriptor limit to its hard limit (children inherit it);
/// returns the new soft limit.
std::size_t raise_fd_limit();

} // namespace sshpool::test
