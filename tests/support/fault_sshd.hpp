// A fault-injecting SSH server for tests: the faults OpenSSH will not produce on demand.
//
// fault_sshd is an in-process SSH server built on libssh's server API. It listens on
// 127.0.0.1 on a free port, accepts public-key authentication with one generated ed25519 key
// (any user name), and serves direct-tcpip channels by connecting to the requested port on
// 127.0.0.1 and relaying bytes both ways, as sshd does. Switches, settable at any time, make
// it misbehave:
//
//   refuse_channel_open  answer every direct-tcpip open with SSH_MSG_CHANNEL_OPEN_FAILURE
//                        (administratively prohibited), as sshd with forwarding disabled.
//   ignore_keepalives    swallow keepalive@openssh.com (and every channel request) without a
//                        reply: a hung peer whose TCP connection stays up.
//   zero_window          stop reading from every channel while set. libssh 0.10 confirms a
//                        channel with a 32,000-byte window and grows it only as the server
//                        application reads, so the client can send at most what is left of
//                        that window, then its window stays at zero; nothing reaches the
//                        target, so no response comes either. Reading resumes when cleared.
//   delay_channel_open   confirm (or refuse) a direct-tcpip open only this long after it
//                        arrived; the connection and its other channels carry on meanwhile.
//
// Threads: one accepts connections; each connection has its own thread that polls the SSH
// socket, its channels' target sockets and a stop eventfd with waits of at most 50 ms, so the
// destructor stops everything promptly. Messages are taken from libssh's message queue
// (ssh_message_get), which leaves each message ours until we answer it: that is what lets a
// channel-open confirmation wait while the connection goes on.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sshpool/types.hpp"
#include "support/os.hpp"

// libssh's handle types, declared here so that users of this header need not see libssh.
struct ssh_bind_struct;
struct ssh_key_struct;

namespace sshpool::test {

class fault_sshd {
public:
  /// What the server saw so far (monotonic counts, except `open_channels`).
  struct counters {
    std::uint64_t connections = 0;
    std::uint64_t authenticated = 0;
    /// direct-tcpip opens received, those confirmed and those answered with a failure.
    std::uint64_t channel_opens = 0;
    std::uint64_t channels_accepted = 0;
    std::uint64_t channels_refused = 0;
    /// Channels confirmed and not yet closed.
    std::uint64_t open_channels = 0;
    /// The most direct-tcpip channels one connection held at once, taken as each open
    /// arrives: opens not yet answered and confirmed channels the client has not closed,
    /// this one included.
    std::uint64_t peak_channels = 0;
    std::uint64_t keepalives = 0;
    std::uint64_t keepalives_ignored = 0;
  };

  /// Makes a temp dir (under $TMPDIR or /tmp) with the keys and known_hosts file, listens and
  /// starts serving. Throws std::runtime_error (or std::system_error) on failure.
  fault_sshd();
  /// Stops every thread (bounded by the 50 ms poll waits), closes every connection and
  /// removes the temp dir.
  ~fault_sshd();

  fault_sshd(const fault_sshd&) = delete;
  fault_sshd& operator=(const fault_sshd&) = delete;

  std::uint16_t port() const { return port_; }
  /// The authorised ed25519 private key (mode 0600).
  std::string identity_file() const { return dir_.path() + "/id_ed25519"; }
  /// "[127.0.0.1]:PORT ssh-ed25519 ..." with this server's host key.
  std::string known_hosts_file() const { return dir_.path() + "/known_hosts"; }

  /// An endpoint at 127.0.0.1:port() with the right key and known_hosts, forwarding to
  /// 127.0.0.1:target_port, with server_nodelay off (this server has no shell to exec).
  sshpool::endpoint make_endpoint(std::uint16_t target_port) const;

  counters snapshot() const;
  /// Waits until `pred` holds for the counters (woken by every change); false on timeout.
  bool wait_until(const std::function<bool(const counters&)>& pred,
                  std::chrono::milliseconds timeout) const;

  // -- fault switches ------------------------------------------------------------------------
  std::atomic<bool> refuse_channel_open{false};
  std::atomic<bool> ignore_keepalives{false};
  std::atomic<bool> zero_window{false};
  std::atomic<std::chrono::milliseconds> delay_channel_open{std::chrono::milliseconds{0}};

private:
  class connection;
  friend class connection;

  void accept_loop();
  /// Stops the threads and frees what the constructor got so far (also on its failure).
  void release() noexcept;
  void update(const std::function<void(counters&)>& change);

  temp_dir dir_{"sshpool-fault"};
  std::uint16_t port_ = 0;
  int listen_fd_ = -1;
  /// Written once by the destructor and never drained: readable for every poll from then on.
  int stop_fd_ = -1;
  ssh_bind_struct* bind_ = nullptr;
  /// The authorised user key (its public half is what authentication compares).
  ssh_key_struct* user_key_ = nullptr;

  std::thread acceptor_;
  /// Connection threads, joined by the destructor (only the acceptor adds to it).
  std::vector<std::thread> workers_;

  mutable std::mutex mx_;
  mutable std::condition_variable cv_;
  counters counters_;
};

} // namespace sshpool::test
