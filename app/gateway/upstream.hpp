// The gateway's way into the engine: each forwarded request becomes one event-based CAF
// actor (see upstream.cpp) that leases a connection of the user from the supervisor,
// streams the response from the leased connection actor, hands head, chunks and end to an
// `upstream_listener`, acknowledges body bytes only when told the client took them, and
// releases the lease at the end. Nothing here blocks: the front end's thread only spawns
// actors and sends them messages.
//
// This header is CAF-free so that the front end and the gateway compile without CAF; the
// actor lives in upstream.cpp.
//
// Thread-safety: `upstream_bridge::start` and the `upstream_call` methods may be called
// from any thread (the gateway calls them from the front end's loop thread). Listener
// callbacks run on CAF scheduler threads, one at a time per request, in order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "sshpool/error.hpp"
#include "sshpool/types.hpp"

namespace sshpool {
class engine;
} // namespace sshpool

namespace sshpool::gateway {

/// Receives the events of one forwarded request. Must not block.
class upstream_listener {
public:
  virtual ~upstream_listener() = default;
  /// Status and headers, before any body byte.
  virtual void on_head(response head) = 0;
  /// A piece of the body, as it arrived. The next pieces come only as earlier ones are
  /// acknowledged (`upstream_call::ack`), within the engine's stream window.
  virtual void on_chunk(std::string data) = 0;
  /// The end, exactly once and last: errc::none when the response is complete, else what
  /// failed (before the head: no lease, no channel...; after it: the stream broke).
  virtual void on_end(error result) = 0;
};

/// The front end's handle on one forwarded request.
class upstream_call {
public:
  virtual ~upstream_call() = default;
  /// The client took `bytes` more body bytes: the engine may send that many more.
  virtual void ack(std::size_t bytes) = 0;
  /// The client went away: the actor releases its lease and quits, and the engine abandons
  /// the stream (its channel closes). No listener callback follows.
  virtual void cancel() = 0;
};

/// Starts forwards through an engine, one actor per request.
class upstream_bridge {
public:
  explicit upstream_bridge(engine& eng);
  /// Stops the actors still running (their streams are abandoned).
  ~upstream_bridge();

  upstream_bridge(const upstream_bridge&) = delete;
  upstream_bridge& operator=(const upstream_bridge&) = delete;

  /// Forwards `req` to `user`'s service; events go to `listener`.
  std::unique_ptr<upstream_call> start(std::string user, request req,
                                       std::shared_ptr<upstream_listener> listener);

  /// Actors running right now.
  std::size_t running() const;

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace sshpool::gateway
