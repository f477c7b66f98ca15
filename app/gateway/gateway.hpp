// sshpool-demo's gateway: an HTTP front end (http_server) in front of an sshpool engine.
// Each request names its user (X-User-Id header or /u/<user>/ prefix), or with client
// authentication configured its credential decides the user (see auth.hpp), and is streamed to
// that user's service through the engine (upstream_bridge), chunk by chunk, each chunk
// acknowledged upstream only once the client's socket took it. Errors become JSON bodies
// {"code": <errc name>, "message", "request_id"} with the status of `status_of`.
// /healthz, /readyz, /metrics and /stats are answered by the gateway itself: on the front
// end, or only on the admin listener when `admin_listen` is set. With `tls` the front end
// speaks TLS only; a reload (SIGHUP) re-reads its certificate and key.
//
// Threads: the front end's loop thread runs all routing and exchange state; the engine's
// CAF threads run the bridge actor, which posts each request's events to the loop; a small
// stats thread reads the pool and cleanup figures when /metrics or /stats asks (those
// engine calls block, so they must not run on the loop, where they would stall every
// client, nor on a CAF thread) and posts the answer back; concurrent scrapes share one
// reading. The engine's counters and histograms are lock-free and read live on the loop.
// The owner's thread calls `wait`.
//
// Reload: after `handle_reload`, SIGHUP re-reads the configuration, applies its users and
// reads the TLS certificate and key again (reload.cpp); an invalid file changes nothing.
//
// Fair share: with max_in_flight_total, while that many requests are in flight a user above
// its share (budget / users with requests in flight) gets 429 over_fair_share.
//
// Shutdown: after `handle_signals`, SIGTERM/SIGINT start the engine's drain; /readyz turns
// 503 and new requests get 503 shutting_down at once, while streams in flight go on. When
// the drain ends, `wait` lets the front end deliver what it still holds (bounded), stops
// it and returns the engine's report.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "gateway/settings.hpp"
#include "sshpool/engine.hpp"
#include "sshpool/errc.hpp"
#include "sshpool/types.hpp"

namespace sshpool::gateway {

/// The HTTP status for an engine error: 404 unknown_user, 400 invalid_request, 503
/// pool_exhausted / agent_offline / shutting_down, 504 request_timeout / timeout, 502 for the
/// rest.
int status_of(errc code) noexcept;

/// Reads the configuration again, as the start did (load_config), or says why it is invalid.
using config_source = std::function<expected<gateway_config>()>;

class gateway {
public:
  /// Builds the engine, sets every user's endpoint, reads the first statistics and starts
  /// the front end (listening once this returns). Throws std::invalid_argument for a bad
  /// endpoint or a listen address that cannot be bound (the message names `listen`).
  explicit gateway(gateway_config cfg);

  /// Stops the front end (cutting what is in flight), the actors and the engine.
  ~gateway();

  gateway(const gateway&) = delete;
  gateway& operator=(const gateway&) = delete;

  /// The port the front end listens on.
  std::uint16_t port() const;

  /// The admin listener's port (nullopt: none).
  std::optional<std::uint16_t> admin_port() const;

  /// Reverse mode: the agent listener's port, host key and counters (nullopt: none).
  std::optional<agent_listener_status> agent_listener() const;

  /// SIGTERM and SIGINT start a drain (a second one cuts what remains).
  void handle_signals();

  /// SIGHUP re-reads the configuration with `load` and applies it with `reload`, on a thread
  /// of the gateway's own; a configuration `load` refuses is logged with the reason and
  /// changes nothing. SIGHUP must be blocked in every thread: a hangup_signal
  /// (reload_signal.hpp) constructed on the main thread before the gateway.
  void handle_reload(config_source load);

  /// Applies a new configuration (see reload.cpp): added users are served; a user whose
  /// endpoint changed gets it for new connections while the old ones drain; removed users
  /// get 404 unknown_user at once while their requests in flight finish (the engine's
  /// remove_endpoint); the other users' connections are untouched. The settings that cannot
  /// change at run time keep their value, with a warning naming them. Blocks until removed
  /// users are drained. Not during a drain (then it does nothing).
  void reload(const gateway_config& next);

  /// Blocks until a drain was started and has finished, then stops the front end once it
  /// delivered what it holds (at most the client timeout, 5 s at most) and returns the
  /// drain's report.
  shutdown_report wait();

private:
  class impl;
  std::unique_ptr<impl> impl_;
};

} // namespace sshpool::gateway
