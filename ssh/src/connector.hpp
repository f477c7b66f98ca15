// Connectors: a fixed pool of threads that run the blocking part of a new SSH connection
// (TCP connect, key exchange, host key check against known_hosts, public key
// authentication, the optional TCP_NODELAY nudge), every step under the connect deadline.
// Nothing here runs on a CAF scheduler thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <libssh/libssh.h>

#include "session_control.hpp"
#include "sshpool/error.hpp"

namespace sshpool::ssh {

/// Connects and authenticates in blocking mode (blocking: call only on connector threads).
/// On success the session is connected, authenticated and still in blocking mode; the
/// caller owns it (and the nudge channel, if any). The host key must be in
/// `ep.known_hosts_file` and not marked `@revoked` there (unknown, changed and revoked keys
/// are refused before any authentication; see known_hosts.hpp).
expected<connected_session> blocking_handshake(const endpoint& ep,
                                               std::chrono::steady_clock::time_point deadline);

/// Threads that run handshakes and hand successful sessions to their reactor.
class connector_pool {
public:
  explicit connector_pool(std::size_t threads);

  /// Stops (see `stop`).
  ~connector_pool();

  /// Stops the threads (waiting for running handshakes); queued and later handshakes fail
  /// with `shutting_down`. Idempotent.
  void stop();

  connector_pool(const connector_pool&) = delete;
  connector_pool& operator=(const connector_pool&) = delete;

  /// Queues a handshake; its result reaches `ctl->sink` (failure) or `ctl->home` (success).
  void submit(std::shared_ptr<session_control> ctl);

  std::size_t thread_count() const noexcept { return threads_.size(); }
  std::uint64_t started() const;
  std::uint64_t failed() const;

private:
  void run();
  void handshake(const std::shared_ptr<session_control>& ctl);

  mutable std::mutex mx_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<session_control>> queue_;
  bool stopping_ = false;
  std::uint64_t started_ = 0;
  std::uint64_t failed_ = 0;
  std::vector<std::thread> threads_;
};

} // namespace sshpool::ssh
