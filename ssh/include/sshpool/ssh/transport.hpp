// The seam between a connection actor and its SSH connection. The actor owns a
// `transport`; the transport reports to a `transport_sink` from I/O threads. The real
// implementation is `ssh_runtime` (runtime.hpp); unit tests use fakes.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "sshpool/error.hpp"
#include "sshpool/ssh/agent_listener.hpp"
#include "sshpool/ssh/http.hpp"
#include "sshpool/types.hpp"

namespace sshpool::ssh {

/// Receives the events of one transport. Called from I/O threads (a connector or a
/// reactor), one event at a time per transport, in order. Implementations must not block
/// and must not call back into the transport.
class transport_sink {
public:
  virtual ~transport_sink();

  /// The handshake finished: `result.code()` is `errc::none` on success.
  virtual void on_open(error result) = 0;

  /// The request `tag` completed with a whole response. For a streamed request: it ended
  /// (`res` has no body; head and chunks came before), or it was complete before its head
  /// was reported (`res` is the whole response, head and body; no head or chunk came).
  virtual void on_response(std::uint64_t tag, response res, transfer_info info) = 0;

  /// Streamed request `tag`: the status line and headers (no body).
  virtual void on_stream_head(std::uint64_t tag, response head) = 0;

  /// Streamed request `tag`: body bytes as they arrived (chunked encoding removed). The
  /// owner acknowledges them with `transport::ack` once its consumer took them.
  virtual void on_stream_chunk(std::uint64_t tag, std::string chunk) = 0;

  /// The request `tag` failed; the connection itself may still be usable.
  virtual void on_failure(std::uint64_t tag, error err, transfer_info info) = 0;

  /// The SSH session is gone; requests in flight get no further event.
  virtual void on_lost(error reason) = 0;

  /// A packet arrived from the server after the last `probe()`: it is alive.
  virtual void on_alive() = 0;
};

/// A request ready for the wire (see `serialize_request`).
struct outbound_request {
  std::string wire;
  request_info info;
  /// Deliver the response as head + chunks (`on_stream_*`) with backpressure.
  bool stream = false;
};

/// Per-connection settings of a transport.
struct transport_options {
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  /// How long a handshake may wait for a free connector (a cold start of many users queues
  /// handshakes); its connect_timeout counts from when a connector takes it.
  std::chrono::milliseconds queue_timeout{std::chrono::seconds(30)};
  std::chrono::milliseconds channel_idle_timeout{std::chrono::seconds(60)};
  /// Channels this connection may have at once, a hard cap on the wire: busy, opening,
  /// kept for reuse, and abandoned while opening (until the server answered the open and
  /// the channel is closed). A request beyond it waits for a channel.
  std::size_t max_channels = 10;
  response_limits limits;
  /// A stream's body bytes delivered but not yet acknowledged, at most: beyond it the
  /// reactor stops taking the channel's data, libssh's window fills and the server stops
  /// sending (a slow consumer never makes the engine buffer without bound). The connection
  /// actor sets it from `pool_config::stream_window_bytes`, the window at which it also
  /// suspends the stream's idle deadline.
  std::size_t stream_window = std::size_t{256} << 10;
};

/// One SSH connection. Its methods never block; they are called by one owner at a time.
/// Destroying a transport closes it like `close()`.
class transport {
public:
  virtual ~transport();

  /// Starts the handshake; `on_open` follows.
  virtual void open() = 0;

  /// Sends a request on an idle channel or a new one; `on_response` or `on_failure`
  /// follows, unless cancelled. The owner keeps at most `max_channels` requests in flight;
  /// even so a request may wait here, in order, for a channel that was cancelled while
  /// opening to close (the server has to answer its open first).
  virtual void forward(std::uint64_t tag, outbound_request req) = 0;

  /// Abandons a request: its channel is closed, no event follows for it.
  virtual void cancel(std::uint64_t tag) = 0;

  /// The consumer of streamed request `tag` took `bytes` more of its body.
  virtual void ack(std::uint64_t tag, std::uint64_t bytes) = 0;

  /// Sends a liveness probe (keepalive@openssh.com); `on_alive` follows once any packet
  /// arrives from the server. A hung server sends nothing: the owner applies the deadline.
  virtual void probe() = 0;

  /// Disconnects; no event follows.
  virtual void close() = 0;

  /// Disconnects with `reason` as the SSH disconnect message, which the peer's user sees
  /// (an agent's ssh prints it); no event follows. The default ignores the reason.
  virtual void disconnect(std::string reason);
};

/// Makes transports.
class transport_factory {
public:
  virtual ~transport_factory();

  virtual std::unique_ptr<transport> make(const endpoint& ep, const transport_options& opts,
                                          std::shared_ptr<transport_sink> sink) = 0;

  /// The transport of an agent that dialed in (reverse mode): `open()` reports `on_open`
  /// with success at once (its session is up). nullptr if the factory cannot take `agent`
  /// (e.g. it is empty).
  virtual std::unique_ptr<transport> adopt(agent_handle agent, const transport_options& opts,
                                           std::shared_ptr<transport_sink> sink) = 0;
};

} // namespace sshpool::ssh
