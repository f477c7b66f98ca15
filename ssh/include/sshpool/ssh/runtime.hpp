// ssh_runtime: the real transports. A fixed pool of connector threads runs the blocking
// part of new connections (TCP connect, key exchange, host key check, authentication),
// each step under the connect deadline; a fixed number of reactor threads then drive many
// non-blocking sessions each with ssh_event_dopoll, multiplexing direct-tcpip channels and
// reusing them with HTTP keep-alive. Agents that dialed in (agent_listener.hpp) are adopted
// by the same reactors and carry forwarded-tcpip channels. Thread count does not grow with
// connections.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "sshpool/metrics.hpp"
#include "sshpool/ssh/agent_listener.hpp"
#include "sshpool/ssh/transport.hpp"

namespace sshpool::ssh {

class connector_pool;
class reactor;

/// Counters of the I/O threads.
struct runtime_stats {
  std::uint64_t sessions = 0;
  std::uint64_t channels = 0;
  std::uint64_t handshakes_started = 0;
  std::uint64_t handshakes_failed = 0;
};

/// Owns the connector and reactor threads. Thread-safe. Transports it made may outlive it
/// (they then only report nothing), but should be gone first.
class ssh_runtime final : public transport_factory {
public:
  struct options {
    std::size_t reactor_threads = 2;
    std::size_t connector_threads = 2;
    /// Where handshake and channel-open latencies go (must outlive the runtime's sessions).
    std::shared_ptr<metrics> counters = std::make_shared<metrics>();
  };

  explicit ssh_runtime(options opts);
  ~ssh_runtime() override;

  std::unique_ptr<transport> make(const endpoint& ep, const transport_options& opts,
                                  std::shared_ptr<transport_sink> sink) override;

  /// The transport of an agent (reverse mode): its session is already up, so `open()`
  /// hands it to a reactor, which reports `on_open` with success at once. Its channels are
  /// forwarded-tcpip to the agent's bound forward; the agent's requests are answered by
  /// its policy for as long as the session lives. nullptr if `agent` is empty.
  std::unique_ptr<transport> adopt(agent_handle agent, const transport_options& opts,
                                   std::shared_ptr<transport_sink> sink) override;

  runtime_stats stats() const;

  /// Threads owned by the runtime (connectors + reactors).
  std::size_t thread_count() const noexcept;

private:
  std::shared_ptr<metrics> counters_;
  std::shared_ptr<connector_pool> connectors_;
  std::vector<std::shared_ptr<reactor>> reactors_;
};

} // namespace sshpool::ssh
