// A small, fast, real HTTP/1.1 server that stands in for the service on a user's machine
// (e.g. a local LLM server such as Ollama) in the integration tests, the demo and the
// benchmarks. It exists so that sshpool is always exercised against a genuine network peer
// with keep-alive, pipelining, chunked and close-delimited bodies, slow and hanging answers
// and token streaming, instead of against a mock that shares our own framing code.
//
// One thread runs an epoll loop over non-blocking sockets (no thread per client); timers
// for delayed answers live in the same loop. Requests are parsed with the Debian-packaged
// http-parser 2.9.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace sshpool::demo {

/// One request as the backend received it (kept for the tests' assertions).
struct recorded_request {
  std::string method;
  /// The request target exactly as received, query string included.
  std::string path;
  /// Header fields in arrival order, names spelled as received.
  std::vector<std::pair<std::string, std::string>> headers;
  /// The first 64 KiB of the body (after chunked decoding).
  std::string body;
  /// The full body size.
  std::size_t body_size = 0;
};

/// The HTTP/1.1 backend: binds, listens and serves on its own thread from construction
/// until destruction.
///
/// Routes (matched on the path part of the target):
///   /echo            the request body back, with X-Method, X-Path, X-Request-Id
///   /info            JSON description of the request
///   /bytes/N         N bytes of the pattern 'a' + i % 26, Content-Length, streamed
///   /chunked/N/K     N chunks of K pattern bytes, Transfer-Encoding: chunked
///   /close/N         N pattern bytes delimited by the server closing the connection
///   /status/CODE     that status with a small text body
///   /slow/MS         "slow" after MS milliseconds
///   /hang            never answered
///   GET /api/tags    Ollama-like model list
///   POST /api/chat   Ollama-like NDJSON token stream (or one object with "stream":false)
///   anything else    404 with a small JSON body
/// Every response carries `X-Backend: <name>`.
///
/// Thread-safety: the observers (`port`, the counters and `received`) may be called from
/// any thread at any time; construction and destruction must not race with them.
class http_backend {
public:
  /// Construction parameters.
  struct options {
    /// Reported in `X-Backend` and in JSON bodies.
    std::string name = "backend";
    /// Address to bind (numeric IPv4/IPv6 or a resolvable host name).
    std::string bind = "127.0.0.1";
    /// TCP port; 0 picks an ephemeral port (see `port()`).
    std::uint16_t port = 0;
    /// Interval between two lines of the /api/chat stream.
    std::chrono::milliseconds token_delay{50};
    /// Number of token lines in an /api/chat answer.
    std::size_t tokens = 12;
  };

  /// Binds, listens and starts the serving thread.
  /// Throws std::system_error when the address cannot be resolved or bound.
  explicit http_backend(options opts);

  /// Stops the loop, closes every connection and joins the thread.
  ~http_backend();

  http_backend(const http_backend&) = delete;
  http_backend& operator=(const http_backend&) = delete;

  /// The port actually listened on.
  std::uint16_t port() const;

  /// Number of complete requests parsed so far.
  std::uint64_t requests_received() const;

  /// Waits until at least `n` requests were parsed (an event, not polling); false on timeout.
  bool wait_for_requests(std::uint64_t n, std::chrono::milliseconds timeout) const;

  /// Number of TCP connections accepted so far.
  std::uint64_t connections_accepted() const;

  /// Number of client connections currently open.
  std::size_t open_connections() const;

  /// Copies of the last (up to 1000) complete requests, oldest first.
  std::vector<recorded_request> received() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace sshpool::demo
