// The gateway's way into the engine: one event-based CAF actor, the bridge (see
// upstream.cpp), forwards every request of the gateway. It leases connections of each user
// from the supervisor and keeps them across requests (a lease freed by one request serves
// the next one of that user; leases unused for a moment, or held for long, go back to the
// pool), streams each response from the leased connection actor, hands head, chunks and end
// to an `upstream_listener`, and acknowledges body bytes only when told the client took
// them. A request its connection fails before any response byte is retried once on another
// (when it was not sent, or its method is idempotent). Nothing here blocks: the front end's thread
// only queues work for the bridge.
//
// This header is CAF-free so that the front end and the gateway compile without CAF; the
// actor lives in upstream.cpp.
//
// Thread-safety: `upstream_bridge::start` and the `upstream_call` methods may be called
// from any thread (the gateway calls them from the front end's loop thread). Listener
// callbacks run on CAF scheduler threads, one at a time, in order for each request.
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
  /// Instead of all three: the whole response at once (status, headers and body), when it
  /// was complete before its head came. Nothing else follows.
  virtual void on_response(response whole) = 0;
};

/// The front end's handle on one forwarded request.
class upstream_call {
public:
  virtual ~upstream_call() = default;
  /// The client took `bytes` more body bytes: the engine may send that many more.
  virtual void ack(std::size_t bytes) = 0;
  /// The client went away: the engine abandons the stream (its channel closes) and the
  /// lease serves other requests. No listener callback follows.
  virtual void cancel() = 0;
};

/// Forwards requests through an engine, all of them through one actor.
class upstream_bridge {
public:
  explicit upstream_bridge(engine& eng);
  /// Stops the bridge (the streams still running are abandoned).
  ~upstream_bridge();

  upstream_bridge(const upstream_bridge&) = delete;
  upstream_bridge& operator=(const upstream_bridge&) = delete;

  /// Forwards `req` to `user`'s service; events go to `listener`.
  std::unique_ptr<upstream_call> start(std::string user, request req,
                                       std::shared_ptr<upstream_listener> listener);

  /// Requests retried on another connection so far: their connection failed them before
  /// any response byte (see upstream.cpp).
  std::uint64_t retries() const;

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace sshpool::gateway
