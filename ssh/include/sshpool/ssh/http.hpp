// HTTP/1.1 framing for forwarded requests: the request serialiser (which is also the
// validator that keeps request smuggling out of the user's service) and an incremental
// response parser on the Debian-packaged http-parser (nodejs/http-parser 2.9).
// Neither type is thread-safe; each is used by one thread at a time.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "sshpool/error.hpp"
#include "sshpool/types.hpp"

namespace sshpool::ssh {

/// What the sender must know about a serialised request.
struct request_info {
  /// HEAD: the response has no body whatever its headers say.
  bool head = false;
  /// GET, HEAD, PUT, DELETE, OPTIONS, TRACE: may be retried once on a fresh channel when a
  /// reused channel fails before any response byte.
  bool idempotent = false;
  /// The caller sent "Connection: close": the channel is not reused afterwards.
  bool close = false;
};

/// GET, HEAD, PUT, DELETE, OPTIONS, TRACE (RFC 9110, 9.2.2): a request that may be sent
/// twice.
bool idempotent_method(std::string_view method) noexcept;

/// Validates `req` and appends its HTTP/1.1 wire form to `out`:
/// request line, the caller's headers in order, `Host: <host_header>` unless the caller
/// gave one, `Content-Length` when there is a body (or for POST/PUT/PATCH), then the body.
/// Rejected with `errc::invalid_request`, leaving `out` unchanged: an empty method or one
/// that is not a token, CONNECT, a path that is empty, does not start with '/' (or is not
/// "*" for OPTIONS) or holds a control character, space or DEL; a header name that is not a
/// token; CR, LF or NUL in a header value; Transfer-Encoding, Upgrade or a duplicate Host;
/// a Content-Length that is duplicated or differs from the body size.
expected<request_info> serialize_request(const request& req, std::string_view host_header,
                                         std::string& out);

/// Limits applied while parsing a response.
struct response_limits {
  /// Status line and headers together.
  std::size_t max_header_bytes = std::size_t{64} << 10;
  /// Body bytes (after chunked decoding), accumulated in `result().body` or streamed.
  std::size_t max_body_bytes = std::size_t{64} << 20;
};

/// Incremental parser of one HTTP/1.1 response at a time (reusable with `reset`).
///
/// Bytes go in with `feed` in pieces of any size. Interim 1xx responses (except 101, which
/// is an error) are skipped. The response ends when its framing says so (Content-Length,
/// chunked, or the peer's EOF for close-delimited bodies via `finish`), never merely
/// because the stream ended. Errors: `bad_response` (malformed, a CR not followed by LF in
/// the head included), `response_too_large`
/// (over a limit), `upstream_closed` (the stream ended before the response did).
class response_parser {
public:
  /// Optional body sink for streaming: when set, body bytes are handed to it as they are
  /// decoded instead of being appended to `result().body` (`max_body_bytes` still applies to
  /// the total).
  using body_sink = std::function<void(std::string_view)>;

  explicit response_parser(response_limits limits = {});
  ~response_parser();
  response_parser(const response_parser&) = delete;
  response_parser& operator=(const response_parser&) = delete;

  /// Prepares for the next response; `head_request` says whether it answers a HEAD.
  void reset(bool head_request);

  /// Consumes bytes of the response. Returns how many bytes were consumed: all of them,
  /// unless the response completed or failed before the end of `data`. Bytes after a
  /// complete response are not consumed (their presence makes the channel unreusable).
  std::size_t feed(const char* data, std::size_t size);

  /// The peer closed the stream: completes a close-delimited body, otherwise fails with
  /// `upstream_closed` (unless already complete or failed).
  void finish();

  /// Installs (or clears, with nullptr) the streaming body sink.
  void set_body_sink(body_sink sink);

  /// Changes the body limit (of the current response too, if it is being parsed).
  void set_max_body_bytes(std::size_t limit) noexcept;

  /// Status line and headers are parsed (`result()` has status, reason and headers).
  bool head_complete() const noexcept;
  /// The whole response is parsed.
  bool complete() const noexcept;
  bool failed() const noexcept;
  /// The failure, if `failed()`.
  const sshpool::error& failure() const noexcept;
  /// At least one byte was fed since the last `reset`.
  bool received_any() const noexcept;
  /// After `complete()`: the connection may carry another request (HTTP/1.1 keep-alive,
  /// no "Connection: close", body not close-delimited).
  bool keep_alive() const noexcept;
  /// The response parsed so far (`id` is left empty).
  response& result() noexcept;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace sshpool::ssh
