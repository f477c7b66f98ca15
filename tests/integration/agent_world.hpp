// The reverse-mode test world: an agent listener with its own host key, a runtime whose
// reactors adopt the agents, a real HTTP backend on the agents' side, and users whose
// machines dial in with the stock OpenSSH client (support/agent_home.hpp). No CAF: the
// transports are driven directly and their events recorded.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backend/http_backend.hpp"
#include "sshpool/ssh/agent_listener.hpp"
#include "sshpool/ssh/runtime.hpp"
#include "support/agent_home.hpp"
#include "support/child_process.hpp"

namespace sshpool::test {

/// Records what a transport reports; the waits are woken by each event.
class recording_sink final : public ssh::transport_sink {
public:
  void on_open(error result) override;
  void on_response(std::uint64_t tag, response res, transfer_info info) override;
  void on_stream_head(std::uint64_t tag, response head) override;
  void on_stream_chunk(std::uint64_t tag, std::string chunk) override;
  void on_failure(std::uint64_t tag, error err, transfer_info info) override;
  void on_lost(error reason) override;
  void on_alive() override;

  /// Waits for `on_open`; its result (`timeout` if none came).
  error wait_open(std::chrono::milliseconds timeout);
  /// Waits for the end of request `tag`: its response, or its failure.
  std::optional<expected<response>> wait_result(std::uint64_t tag,
                                                std::chrono::milliseconds timeout);
  /// Waits until `n` requests ended (responses and failures).
  bool wait_results(std::size_t n, std::chrono::milliseconds timeout);
  /// Waits for the next chunk of stream `tag` (in order); nullopt at the timeout.
  std::optional<std::string> next_chunk(std::uint64_t tag, std::chrono::milliseconds timeout);
  /// Waits for `on_lost`; its reason.
  std::optional<error> wait_lost(std::chrono::milliseconds timeout);
  /// Waits until `on_alive` came `n` times in all.
  bool wait_alive(std::size_t n, std::chrono::milliseconds timeout);
  std::optional<response> head(std::uint64_t tag);

private:
  std::mutex mx_;
  std::condition_variable cv_;
  std::optional<error> opened_;
  std::map<std::uint64_t, expected<response>> results_;
  std::map<std::uint64_t, response> heads_;
  std::map<std::uint64_t, std::deque<std::string>> chunks_;
  std::optional<error> lost_;
  std::size_t alive_ = 0;
};

/// The listener, the runtime, a backend and the users' policies.
class agent_world {
public:
  using clock = std::chrono::steady_clock;

  /// Listener settings for tests: port 0, a host key in the world's directory, a 10 s
  /// login grace.
  static ssh::agent_listener_options options();

  explicit agent_world(ssh::agent_listener_options opts = options(),
                       demo::http_backend::options backend = {});
  ~agent_world();

  /// Lets `user` in with the public keys of `keys` (names in `home`, one authorized_keys
  /// line each, `options` prefixed) to forward `ports`.
  void allow(const std::string& user, const std::vector<std::string>& keys,
             std::vector<std::uint16_t> ports, const std::string& options = {});
  /// Lets `user` in with the given authorized_keys text.
  void allow_text(const std::string& user, const std::string& authorized_keys,
                  std::vector<std::uint16_t> ports);

  /// Starts `ssh -N -R FORWARD -o ExitOnForwardFailure=yes ... user@listener` with `extra`
  /// options; FORWARD defaults to "B:127.0.0.1:B" (B: the backend's port).
  std::unique_ptr<logged_process> dial(const std::string& user,
                                       const std::vector<std::string>& extra = {},
                                       const std::string& forward = {},
                                       const std::string& key_name = "id");
  /// Runs ssh with `options` and `command` to its end; its exit code and output.
  std::pair<int, std::string> run(const std::string& user, const std::vector<std::string>& options,
                                  const std::vector<std::string>& command = {},
                                  const std::string& key_name = "id");

  /// The next agent handed on (the handles are queued by on_agent); empty at the timeout.
  ssh::agent_handle next_agent(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// Makes and opens a transport for `agent`; waits for on_open.
  std::unique_ptr<ssh::transport> adopt(ssh::agent_handle agent,
                                        const std::shared_ptr<recording_sink>& sink,
                                        ssh::transport_options opts = {});

  /// Waits until `pred` holds for the listener's stats.
  bool wait_stats(const std::function<bool(const ssh::agent_listener_stats&)>& pred,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10));

  /// Refuse agents in on_agent with this message (empty: queue them).
  void refuse_agents(std::string message);

  temp_dir tmp{"sshpool-agents"};
  const std::string& dir = tmp.path();
  agent_home home;
  demo::http_backend backend;
  ssh::ssh_runtime runtime;
  std::unique_ptr<ssh::agent_listener> listener;

private:
  std::mutex mx_;
  std::condition_variable cv_;
  std::map<std::string, std::shared_ptr<const ssh::agent_policy>> users_;
  std::deque<ssh::agent_handle> arrived_;
  std::string refuse_with_;
};

/// An event from an ssh client: its LocalCommand writes to a FIFO once the client is
/// connected and its forwards are set up (local listeners bound, remote ones asked for).
class ssh_ready {
public:
  /// Makes the FIFO `name` in `dir`.
  ssh_ready(const std::string& dir, const std::string& name);
  ~ssh_ready();
  ssh_ready(const ssh_ready&) = delete;
  ssh_ready& operator=(const ssh_ready&) = delete;

  /// The ssh options that make the client signal.
  std::vector<std::string> options() const;
  /// Waits for the signal; false at the timeout.
  bool wait(std::chrono::milliseconds timeout);

private:
  std::string path_;
  int fd_ = -1;
};

/// A TCP connection from `source` to 127.0.0.1:`port` (blocking connect); -1 on failure.
int connect_from(const char* source, std::uint16_t port);

/// A request ready for a transport.
ssh::outbound_request make_request(const std::string& method, const std::string& path,
                                   std::string body = {}, bool stream = false);

/// `n` bytes of the backend's pattern ('a' + i % 26).
std::string pattern(std::size_t n);

} // namespace sshpool::test
