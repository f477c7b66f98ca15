// The blocking facade of sshpool: engine, connection_pool and connection, mirroring the
// seed's ConnectionPool API in C++. Every call blocks its calling thread until the actors
// answer (each with a deadline), so it must NEVER be made from inside a CAF actor handler:
// a CAF-based service talks to the typed actor handles instead (sshpool/actors.hpp). The one
// exception is connection::forward_async, which never blocks.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <caf/fwd.hpp>

#include "sshpool/config.hpp"
#include "sshpool/error.hpp"
#include "sshpool/metrics.hpp"
#include "sshpool/ssh/agent_listener.hpp"
#include "sshpool/types.hpp"

namespace sshpool {

class engine;

/// Registers sshpool's message types (the public ones of sshpool/messages.hpp and the
/// engine's internal ones) and its error category in a CAF configuration. Call it on the
/// configuration of an actor system that you hand to `engine`.
void add_message_types(caf::actor_system_config& cfg);

/// Makes a CAF configuration fit for a cluster node (engine_config::cluster): loads CAF's
/// middleman and OpenSSL manager, sets its certificate, key and CA from `cluster` (mutual
/// TLS: peers without a certificate of that CA are refused) and the middleman's heartbeat
/// from its heartbeat settings. Call it, with `add_message_types`, on the configuration of
/// an actor system that you hand to an `engine` running as a cluster node.
void add_cluster_modules(caf::actor_system_config& cfg, const cluster_config& cluster);

namespace detail {
struct engine_impl;
struct lease_handle;
/// The engine's internals (for sshpool/actors.hpp).
engine_impl& impl_of(const engine& e);
} // namespace detail

/// Receives a streamed response; both run on the thread that called `forward_stream`.
struct stream_handlers {
  /// Status and headers (no body), before any body byte.
  std::function<void(const response& head)> on_head;
  /// A piece of the body as it arrived (chunked encoding removed). Return false to abandon
  /// the stream (e.g. the client went away): its channel is closed. The engine takes the
  /// next piece only after this returns, so a slow consumer slows the server down instead
  /// of making the engine buffer.
  std::function<bool(std::string_view chunk)> on_chunk;
};

/// Takes the result of a `connection::forward_async`.
using response_callback = std::function<void(expected<response>)>;

/// A leased SSH connection of one user. A cheap copyable handle, usable from several
/// threads at once (e.g. many concurrent `forward` calls on one connection). It must not
/// outlive its engine.
class connection {
public:
  connection() = default;

  /// Forwards `req` through a direct-tcpip channel of this connection and returns the
  /// whole response, within the engine's `request_timeout`. `not_leased` once the lease was
  /// released (through any copy of the handle).
  expected<response> forward(const request& req) const;

  /// Same, with an explicit deadline for this request.
  expected<response> forward(const request& req, std::chrono::milliseconds deadline) const;

  /// `forward` without blocking: sends `req` and returns at once; the future becomes ready
  /// with what `forward` would have returned (same deadline, same errors). It always
  /// becomes ready: by the deadline with `request_timeout`, with `connection_lost` (or
  /// `shutting_down`) if the connection closes or the engine stops first. A call on a
  /// released lease fails with `not_leased`; requests sent before the release complete as
  /// usual. Usable from any thread (a CAF actor included, as long as it does not wait on
  /// the future); many may be in flight on one connection (a batch: the seed's
  /// Promise.all), up to max_channels_per_connection on the wire, the rest queued.
  std::future<expected<response>> forward_async(const request& req) const;

  /// Same, with an explicit deadline for this request.
  std::future<expected<response>> forward_async(const request& req,
                                                std::chrono::milliseconds deadline) const;

  /// The callback form: `on_done` gets the result, exactly once. It runs on a CAF scheduler
  /// thread (the connection actor's, which waits for it), or on the calling thread before
  /// this returns if the request is refused at once (empty or released handle, stopped
  /// engine, a connection whose actor has ended: closed or lost): it must be short and must
  /// not block (no blocking facade call, no wait on another request, no lock the caller may
  /// hold); hand the result to your own thread or event loop. An exception it throws is
  /// logged and dropped.
  void forward_async(const request& req, response_callback on_done) const;

  /// Same, with an explicit deadline for this request.
  void forward_async(const request& req, response_callback on_done,
                     std::chrono::milliseconds deadline) const;

  /// Forwards `req` and streams the response to `handlers` as it arrives (LLM token
  /// streams). Returns the head (no body) once the stream ended, or the error that ended it
  /// (also after the head). The engine's request_timeout bounds the wait for the head and
  /// every gap between chunks.
  expected<response> forward_stream(const request& req, const stream_handlers& handlers) const;

  /// Same, with an explicit idle deadline.
  expected<response> forward_stream(const request& req, const stream_handlers& handlers,
                                    std::chrono::milliseconds idle_deadline) const;

  /// True while the SSH session is up.
  bool is_healthy() const;

  /// Counters of the connection; `healthy` is false if it is gone.
  connection_stats get_stats() const;

  /// The connection's id (stable for its lifetime) and its user.
  std::uint64_t id() const noexcept;
  const std::string& user() const noexcept;

  explicit operator bool() const noexcept { return lease_ != nullptr; }

private:
  friend class connection_pool;
  friend struct detail::lease_handle;
  std::shared_ptr<const detail::lease_handle> lease_;
};

/// The per-user pools of an engine.
class connection_pool {
public:
  /// Leases a connection of `user`: an idle one, a new one (waiting for its handshake), or
  /// a shared one; else waits up to `acquire_timeout` (then `pool_exhausted`). An agent
  /// user's connections are its agents: with none connected, the call waits up to
  /// `acquire_timeout` for one to dial in (then `agent_offline`).
  expected<connection> get_connection(const std::string& user);

  /// Ends a lease. `not_leased` if released twice (through any copy of the handle),
  /// `wrong_user` for another user's lease. Does not wait for the pool: the checks are
  /// local, and calls made afterwards see the lease ended.
  expected<void> release_connection(const std::string& user, const connection& conn);

  /// Closes every connection of `user`; returns how many were closed. Requests in flight
  /// on them fail with `connection_lost`; outstanding leases may still be released.
  expected<std::size_t> close_connection(const std::string& user);

  /// Engine-wide statistics (zeroes if the engine does not answer).
  pool_stats get_pool_stats();

  /// Drains one user: stops admitting it (`shutting_down`), fails its waiters, lets the
  /// requests in flight finish (each within its deadline), then closes its connections.
  /// The user is admitted again afterwards.
  expected<shutdown_report> drain_user(const std::string& user);

private:
  friend class engine;
  explicit connection_pool(std::shared_ptr<detail::engine_impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<detail::engine_impl> impl_;
};

/// The cleanup actor's controls (the seed's ConnectionCleanupService): every
/// cleanup_interval it closes connections idle (no lease, nothing in flight) for longer
/// than max_idle_time. Runs from the engine's start unless `engine_config::start_cleanup`
/// is false.
class cleanup_service {
public:
  expected<void> start();
  expected<void> stop();
  /// Runs a cleanup now; returns how many connections it closed.
  expected<std::size_t> trigger_cleanup();
  /// New interval and idle limit; a running service reschedules at once.
  expected<void> update_config(const cleanup_config& cfg);
  cleanup_stats get_stats();

private:
  friend class engine;
  explicit cleanup_service(std::shared_ptr<detail::engine_impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<detail::engine_impl> impl_;
};

/// What `engine::agent_listener` reports.
struct agent_listener_status {
  std::uint16_t port = 0;
  std::string fingerprint;
  std::string public_key;
  ssh::agent_listener_stats stats;
};

/// An event loop of the embedding service that runs on one of the engine's own scheduler
/// threads (`engine::host`), between the actors' jobs, instead of on a thread of its own.
class hosted_loop {
public:
  virtual ~hosted_loop() = default;
  /// Handles what is ready, waiting for it at most `timeout_ms` (0: not at all; -1: until
  /// the loop's own next deadline, or `wake`). Runs on a scheduler thread: it must not block
  /// otherwise, nor call the blocking facade.
  virtual void run_once(int timeout_ms) = 0;
  /// Makes a `run_once` that waits return soon. Called from any thread, also while no
  /// `run_once` runs (the next one then returns soon).
  virtual void wake() noexcept = 0;
};

/// An sshpool engine: its actor tree, its SSH I/O threads and, unless given one, its own
/// caf::actor_system. The destructor closes every connection and stops everything.
class engine {
public:
  /// Builds an engine with its own actor system. Throws std::invalid_argument if `cfg`
  /// does not pass `validate(cfg)`.
  explicit engine(engine_config cfg = {});

  /// Builds an engine inside a service's actor system, whose configuration must have had
  /// `sshpool::add_message_types(cfg)` applied (and `add_cluster_modules` for a cluster
  /// node: else std::invalid_argument).
  engine(caf::actor_system& sys, engine_config cfg = {});

  ~engine();

  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  /// Sets (or replaces) how `user`'s machine is reached; new connections use it. The
  /// private key is loaded first, on the calling thread (blocking), so a key that cannot be
  /// used fails here with `invalid_argument` and the reason: unreadable, encrypted with no
  /// `passphrase`, wrong passphrase, not a private key. (`endpoint_atom` sent to the
  /// supervisor directly does not load it: its first handshake reports the same errors.)
  /// An agent endpoint's authorized_keys_file is read instead (`invalid_argument`:
  /// unreadable, or no usable key); from then on its keys authenticate the user's agents.
  /// Replacing an endpoint leaves the user's other work alone: new connections use the new
  /// endpoint, idle connections to the old one close, leased ones close once released
  /// (requests in flight on them finish).
  expected<void> set_endpoint(const std::string& user, endpoint ep);

  /// Removes `user`: from this call on its get_connection calls get `unknown_user`, its
  /// waiters `shutting_down`; its requests in flight finish (those left at the end of
  /// `shutdown_grace_period` are cut), then its connections close. Returns once that is done
  /// with the drain's report; `unknown_user` if the user has no endpoint. An agent user's
  /// agents are refused from then on. Other users are not touched; `set_endpoint` may add
  /// the user again at any time.
  expected<shutdown_report> remove_endpoint(const std::string& user);

  connection_pool& pool() noexcept { return pool_; }

  cleanup_service& cleanup() noexcept { return cleanup_; }

  /// Drains the engine: new get_connection calls and waiters get `shutting_down`, requests
  /// in flight finish, connections close with an SSH disconnect. Returns as soon as that is
  /// done (at once for an idle engine); at the end of `grace` what remains is cut (if
  /// `force_after_grace_period`). Calls made meanwhile, or later, get the same report. A
  /// cluster node first tells the other nodes that it leaves (they stop sending it work).
  shutdown_report shutdown(std::chrono::milliseconds grace);

  /// `shutdown` with the configured `shutdown_grace_period`.
  shutdown_report shutdown();

  /// Opt-in: SIGTERM and SIGINT start `shutdown()` (through a self-pipe watched by one
  /// thread; the handler does nothing else); a second signal cuts what remains at once.
  /// One engine per process may handle signals; the previous handlers come back when it is
  /// destroyed.
  void handle_signals();

  /// Blocks until a drain was started (by a signal or `shutdown`) and has finished.
  shutdown_report wait_for_shutdown();

  /// A drain has started.
  bool is_shutting_down() const noexcept;

  /// Reverse mode: the agent listener's port (the one bound when `agents.listen` asked for
  /// port 0), its host key's fingerprint ("SHA256:...", as `ssh-keygen -lf` prints it) and
  /// public key ("ssh-ed25519 BASE64"), and its counters (refusals by reason); nullopt if the
  /// engine has no listener.
  std::optional<agent_listener_status> agent_listener() const;

  /// Cluster mode: this node's members (itself included), its peers (up or not, connects,
  /// failures, since when), the membership changes, the claims, and the leases asked of
  /// other nodes and served to them; nullopt if the engine is not a cluster node (or does
  /// not answer).
  std::optional<cluster_stats> cluster_status() const;

  /// The engine's counters and latency histograms (handshakes, channel opens, requests by
  /// result, bytes, keepalive failures, connections opened and closed).
  metrics_snapshot metrics() const;

  const engine_config& config() const noexcept;

  /// The actor system the engine runs in.
  caf::actor_system& system() noexcept;

  /// Runs `loop` on the engine's first scheduler thread from now on, between the actors'
  /// jobs (at least once per 16 of them) and while none is queued, until `unhost`. What the
  /// loop hands to the actors and back then needs no thread hand-off. `invalid_argument`
  /// if the engine does not run its own actor system with the `sharing` scheduler, or
  /// already hosts a loop. `loop` must outlive the hosting; call `unhost` before the engine
  /// stops (its destructor, or shutdown of its actor system) ends the scheduler threads.
  expected<void> host(hosted_loop& loop);

  /// Stops running the hosted loop; returns once no thread is in it any more. Not from the
  /// loop itself.
  void unhost();

private:
  friend detail::engine_impl& detail::impl_of(const engine& e);
  std::shared_ptr<detail::engine_impl> impl_;
  connection_pool pool_;
  cleanup_service cleanup_;
};

} // namespace sshpool
