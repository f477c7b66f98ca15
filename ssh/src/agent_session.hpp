// The policy of an agent's SSH session, for its whole life (reverse mode, see
// sshpool/ssh/agent_listener.hpp). libssh hands every message of a server session (service
// and authentication requests, channel opens, channel and global requests) to one callback,
// `agent_session::on_message`, which answers it at once:
//
//   state          message                                     answer
//   any            service ssh-userauth                        accepted
//   any            another service                             the session ends (bad_service)
//   unauthed       auth none                                   failure, "publickey" offered
//   unauthed       auth publickey, key authorizes the user     PK_OK (probe) / success (signed)
//   unauthed       auth publickey, anything else               failure (auth_failed)
//   unauthed       auth password, keyboard-interactive, ...    failure (auth_method)
//   unauthed       max_auth_tries failures                     the session ends
//   authed         auth anything                               failure
//   any            channel open (session, direct-tcpip, ...)   open failure, prohibited
//   authed         tcpip-forward, allowed port and address     success with the port
//   any            tcpip-forward, anything else                failure (forward_not_allowed)
//   authed         cancel-tcpip-forward of a bound forward     success; if it was the one in
//                                                              use, the session ends
//   any            channel request                             failure (if a reply is wanted)
//
// keepalive@openssh.com is answered by libssh itself, and so are global requests it does
// not know (streamlocal-forward@openssh.com among them: refused before we see them; docs/
// libssh.md, trap 16). GSSAPI, which libssh would run itself, is refused through the server
// callbacks; this callback gets everything else (trap 18).
//
// The callbacks run on the thread that drives the session: the listener's, then a
// reactor's (the hand-over between them is ordered by the reactor's command queue). Only
// that thread touches this state; the counters it updates are atomics shared with the
// listener (`agent_shared`).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/server.h>

#include "sshpool/ssh/agent_listener.hpp"

namespace sshpool::ssh {

/// What the listener and all its sessions share: settings, the user lookup, counters and
/// the rate-limited log of refusals. Thread-safe.
class agent_shared {
public:
  agent_shared(agent_listener_options opts, agent_listener::lookup_fn lookup);

  const agent_listener_options& options() const noexcept { return opts_; }

  /// The user's policy (nullptr: unknown; also when the lookup throws).
  std::shared_ptr<const agent_policy> lookup(const std::string& user) const;

  /// Counts `why` and logs `text` at info, at most `log_burst` lines at once and
  /// `log_per_second` after that; the next line logged says how many were dropped.
  void refuse(agent_refusal why, const std::string& text);

  /// Adds one to `counter` (one of those below) and wakes `wait_for`.
  void count(std::atomic<std::uint64_t>& counter);
  /// Wakes `wait_for` (a counter or a gauge changed).
  void notify();
  /// Waits until `pred` holds (checked at each change) or `timeout` passes; its result.
  template <class Pred>
  bool wait_for(Pred pred, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> guard{wait_mx_};
    return wait_cv_.wait_for(guard, timeout, pred);
  }

  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> authenticated{0};
  std::atomic<std::uint64_t> agents{0};
  std::array<std::atomic<std::uint64_t>, agent_refusal_count> refused{};

private:
  std::mutex wait_mx_;
  std::condition_variable wait_cv_;
  agent_listener_options opts_;
  agent_listener::lookup_fn lookup_;
  std::mutex log_mx_;
  double log_tokens_;
  std::chrono::steady_clock::time_point log_refill_;
  std::uint64_t log_dropped_ = 0;
};

class agent_session {
public:
  /// A bound tcpip-forward: the address as the agent gave it, and the port.
  struct forward {
    std::string address;
    std::uint16_t port = 0;
  };

  agent_session(std::shared_ptr<agent_shared> shared, std::string source,
                std::uint16_t source_port);
  agent_session(const agent_session&) = delete;
  agent_session& operator=(const agent_session&) = delete;

  /// Installs the callbacks on the new server session `s` (before its key exchange); this
  /// object must outlive `s`.
  void attach(ssh_session s);

  bool authenticated() const noexcept { return authenticated_; }
  /// Failed authentication attempts so far.
  std::size_t auth_failures() const noexcept { return auth_failures_; }
  /// The forward a transport uses: the first one bound; none yet if empty.
  const std::vector<forward>& forwards() const noexcept { return forwards_; }

  /// The session must end: what ended it (nullopt: not ended) and the reason for the peer.
  const std::optional<agent_refusal>& ended() const noexcept { return ended_; }
  const std::string& end_message() const noexcept { return end_message_; }

  /// The authenticated user (empty before).
  const std::string& user() const noexcept { return user_; }
  const std::string& source() const noexcept { return source_; }
  std::uint16_t source_port() const noexcept { return source_port_; }
  agent_shared& shared() noexcept { return *shared_; }
  /// "alice from 127.0.0.2:41234" (the user name made printable), for logs.
  std::string describe() const;

private:
  static int on_message(ssh_session s, ssh_message msg, void* self);
  static ssh_string on_gssapi(ssh_session s, const char* user, int n_oid, ssh_string* oids,
                              void* self);
  void on_service(ssh_message msg);
  void on_auth(ssh_message msg);
  void on_publickey(ssh_message msg);
  void on_channel_open(ssh_message msg);
  void on_global(ssh_message msg);
  /// A failed attempt: counts it, and ends the session at `max_auth_tries`.
  void auth_failed(agent_refusal why, const std::string& text);
  void end(agent_refusal why, std::string message);
  /// The key of the user's policy that `offered` matches and that may be used now from
  /// this source; else nullptr and `why` says what failed.
  const authorized_key* match(const std::string& user, ssh_key offered, std::string& why);

  std::shared_ptr<agent_shared> shared_;
  std::string source_;
  std::uint16_t source_port_;
  ssh_server_callbacks_struct server_callbacks_{};
  bool authenticated_ = false;
  std::size_t auth_failures_ = 0;
  std::string user_;
  /// The policy last looked up, and for which user name.
  std::string policy_user_;
  std::shared_ptr<const agent_policy> policy_;
  /// The key that authenticated the user (its options hold for the session's life).
  authorized_key key_;
  std::vector<forward> forwards_;
  std::optional<agent_refusal> ended_;
  std::string end_message_;
};

/// What an `agent_handle` holds: the session and its policy (see agent_listener.hpp).
struct agent_handle::state {
  ssh_session session = nullptr;
  std::shared_ptr<agent_session> agent;
  std::uint64_t id = 0;
};

/// `text` with control and non-ASCII bytes escaped (\xNN), cut at `max` bytes: for names
/// that come from the network and go into logs.
std::string printable(std::string_view text, std::size_t max = 64);

} // namespace sshpool::ssh
