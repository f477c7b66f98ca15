// The HTTP/1.1 front end of sshpool-demo: one thread, one epoll loop, non-blocking sockets
// (no thread per client), requests parsed by the Debian http-parser, keep-alive and
// pipelining (one exchange at a time per connection), limits on the request head and body,
// timeouts for clients that stall, and admission that keeps slow or idle clients from
// holding every slot: a short head deadline, a cap per source address, and, when full, the
// longest-waiting connection without an exchange closed for the newcomer.
//
// It knows nothing about users or the engine. Each complete request goes to an
// `http_handler` on the loop thread, which answers at once (`respond`) or later, from
// tasks posted to the loop (`loop_queue`), as a stream: `send_head`, `send_body` pieces,
// `finish`. Body pieces are reported back (`on_body_sent`) only once the socket took them,
// which is what lets the handler acknowledge bytes upstream at the client's pace: a slow
// client slows the stream down instead of growing buffers. The unsent output of a
// connection is also capped (`max_unsent_bytes`); a stream that exceeds it is cut.
//
// With a certificate and key (options::tls_cert_file / tls_key_file) every connection speaks
// TLS (tls.hpp): the handshake runs in the same loop, non-blocking, and must complete within
// `header_timeout` like a request head (a stuck handshake is a slow client); the certificate
// and key can be re-read while serving (`reload_tls`). Without them reads and writes are the
// plain socket calls.
//
// This file and its .cpp are CAF-free on purpose (CAF translation units compile slowly).
//
// Thread-safety: the constructor, `shutdown` and the destructor are called by the owner;
// `respond`, `send_head`, `send_body`, `finish` only on the loop thread (from handler
// callbacks or posted tasks); `loop_queue::post` and the counters from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "net/request_reader.hpp"
#include "sshpool/error.hpp"
#include "sshpool/metrics.hpp"
#include "sshpool/types.hpp"

namespace sshpool {
class engine;
} // namespace sshpool

namespace sshpool::gateway {

/// A complete request as received (net::request: method, target, headers, body, http10).
struct http_request : net::request {
  /// Identifies the exchange (request + response) in every later call; never reused.
  std::uint64_t exchange = 0;
  /// The peer's address, "ip:port".
  std::string peer;
  /// The handler refused the head (`admit_head`): the body was not read (`body` is empty)
  /// and the connection closes after the answer.
  bool body_withheld = false;
  /// Whom `admit_head` found the client to be (empty: nobody, or not asked), so that the
  /// handler need not verify the same credential twice.
  std::string principal;
};

/// The head of a response. The server adds Content-Length or Transfer-Encoding and
/// Connection; `headers` must hold end-to-end headers only.
struct response_head {
  int status = 200;
  /// Empty: the standard phrase.
  std::string reason;
  header_list headers;
  /// The body length if known in advance (sent as Content-Length, the body raw); else the
  /// body is chunked (close-delimited for HTTP/1.0 clients).
  std::optional<std::uint64_t> content_length;
  /// No body follows whatever the length says (answers to HEAD, 204, 304).
  bool no_body = false;
  /// Close the connection after this response.
  bool close = false;
};

/// Receives the server's events, on the loop thread.
class http_handler {
public:
  virtual ~http_handler() = default;

  /// The head of a request is complete, its body not read yet: false stops reading the
  /// connection, and the request comes to `on_request` at once, `body_withheld`, to be
  /// refused (so that a client that will be refused cannot make the server hold its body).
  /// What it sets `principal` to comes with the request (`http_request::principal`).
  virtual bool admit_head(const net::request& /*head*/, const std::string& /*peer*/,
                          std::string& /*principal*/) {
    return true;
  }

  /// A complete request. Answer with `respond`, or `send_head` ... `finish`, now or later.
  virtual void on_request(http_request req) = 0;

  /// A request that could not be accepted (`status`: 400 malformed, 408 too slow, 413 body
  /// too large, 431 head too large); `req` holds what was parsed. Answer it with `respond`;
  /// the connection closes afterwards.
  virtual void on_bad_request(http_request req, int status, std::string why) = 0;

  /// `bytes` more body bytes of the exchange's response were taken by the socket.
  virtual void on_body_sent(std::uint64_t exchange, std::size_t bytes) = 0;

  /// The exchange is over: the whole response was taken by the socket (`complete`), or the
  /// connection closed first (client gone, timeout, a stream cut by `finish(false)`).
  /// Called exactly once per exchange; the id is invalid afterwards.
  virtual void on_done(std::uint64_t exchange, bool complete, std::uint64_t bytes_sent) = 0;
};

/// Tasks for the loop thread, posted from any thread. Once the server stopped, posted
/// tasks are dropped without running.
class loop_queue {
public:
  void post(std::function<void()> task);

private:
  friend class http_server;
  std::mutex mutex_;
  std::vector<std::function<void()>> tasks_;
  int wake_fd_ = -1;
  bool closed_ = false;
};

/// The front end's counters (monotonic, but for `open_connections`; see `load_all`).
template <class Counter>
struct front_end_counters {
  /// Client connections open now, and accepted so far.
  Counter open_connections{};
  Counter connections_accepted{};
  Counter bytes_received{};
  Counter bytes_sent{};
  /// Connections closed to make room for a new client (full, or its source at its limit).
  Counter shed_connections{};
  /// New clients answered 503 at once: full, and every slot carried an exchange.
  Counter refused_connections{};
  /// Connections closed (or answered 408) for not completing a head within header_timeout.
  Counter header_timeouts{};
  /// TLS handshakes completed / failed (a protocol error, plain HTTP, the peer gone) / not
  /// complete within header_timeout (also counted in header_timeouts).
  Counter tls_handshakes{};
  Counter tls_handshake_failures{};
  Counter tls_handshake_timeouts{};

  template <class Self, class F>
  static void each(Self& x, F&& f) {
    f(x.open_connections, x.connections_accepted, x.bytes_received, x.bytes_sent,
      x.shed_connections, x.refused_connections, x.header_timeouts, x.tls_handshakes,
      x.tls_handshake_failures, x.tls_handshake_timeouts);
  }
};
using front_end_counts = front_end_counters<std::uint64_t>;

class http_server {
public:
  struct options {
    /// Numeric address or host name, and port (0: ephemeral; see `port()`).
    std::string bind = "127.0.0.1";
    std::uint16_t port = 0;
    std::size_t max_header_bytes = std::size_t{64} << 10;
    std::size_t max_body_bytes = std::size_t{16} << 20;
    /// Client connections served at once. When full, a new client takes the slot of the
    /// connection that has waited longest without a request in progress (an idle keep-alive
    /// connection, or one still sending its head or body); if every slot carries an
    /// exchange, it is answered 503 at once (see `shed_connections`).
    std::size_t max_clients = 1024;
    /// Open connections from one source address (0: no limit); the same shedding applies
    /// within that source. Behind a proxy every client shares its address: set 0 there.
    std::size_t max_clients_per_source = 256;
    /// Output waiting for a slow client beyond which its stream is cut (the handler's
    /// acknowledgements normally keep it far below).
    std::size_t max_unsent_bytes = std::size_t{4} << 20;
    /// Idle keep-alive, incomplete request or no write progress for this long: closed.
    std::chrono::milliseconds client_timeout{std::chrono::seconds(30)};
    /// A new connection must send a complete request head within this, and so must a kept-
    /// alive connection from the first byte of its next request: 408 then (a connection
    /// that sent nothing is just closed). Short, so that dripping bytes holds no slot long.
    std::chrono::milliseconds header_timeout{std::chrono::seconds(5)};
    /// TLS on every connection: the PEM certificate chain and private key (both empty:
    /// plain HTTP). The TLS handshake counts against `header_timeout`.
    std::string tls_cert_file;
    std::string tls_key_file;
  };

  /// Binds and listens (connections wait in the backlog until `start`). Throws
  /// std::system_error on failure, std::invalid_argument if the TLS certificate or key
  /// cannot be loaded.
  http_server(options opts, http_handler& handler);

  /// `shutdown(0)` if not done yet.
  ~http_server();

  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// Starts the loop: on a thread of its own, or, given an engine that can host it
  /// (engine::host), on that engine's first scheduler thread between the actors' jobs, so
  /// that requests and answers between the handler and the actors cross no thread. The
  /// handler is called from the loop's thread from now on.
  void start(engine* host = nullptr);

  /// The port actually listened on.
  std::uint16_t port() const noexcept { return port_; }

  /// Re-reads the TLS certificate and key files: new connections get them, live ones keep
  /// the pair they started with. A pair that cannot be loaded is refused (error value,
  /// logged) and the current one stays. Blocking (reads the files); any thread.
  expected<void> reload_tls();

  /// Posts tasks to the loop thread (shared: it may outlive the server).
  const std::shared_ptr<loop_queue>& queue() const noexcept { return queue_; }

  /// Stops accepting, closes idle connections, lets responses in progress finish for at
  /// most `grace`, then closes the rest and joins the loop thread (or leaves the engine
  /// that hosts it). Blocking; not from the loop thread.
  void shutdown(std::chrono::milliseconds grace);

  // -- loop thread: answers -----------------------------------------------------------------

  /// A complete response with this body (Content-Length; nothing for HEAD).
  void respond(std::uint64_t exchange, response_head head, std::string body);
  /// Starts a streamed response.
  void send_head(std::uint64_t exchange, response_head head);
  /// A piece of the body (framed as the head said).
  void send_body(std::uint64_t exchange, std::string data);
  /// Ends the body: complete (the last chunk is sent) or cut (the connection closes once
  /// what is queued was sent, so the client sees an incomplete body).
  void finish(std::uint64_t exchange, bool complete);

  // -- any thread: counters -----------------------------------------------------------------

  /// The counters, read now.
  front_end_counts counters() const noexcept { return load_all<front_end_counters>(counters_); }

private:
  class loop;
  std::shared_ptr<loop_queue> queue_;
  std::unique_ptr<loop> loop_;
  std::uint16_t port_ = 0;
  front_end_counters<std::atomic<std::uint64_t>> counters_;
};

} // namespace sshpool::gateway
