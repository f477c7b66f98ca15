// The request side of the demo's two HTTP/1.1 servers: http-parser's callbacks building one
// request at a time (method, target, headers, body, HTTP/1.0, keep-alive), with the head and
// body limits, and the strict checks a server in front of other HTTP peers needs (written
// once, so the mock backend is exactly as strict as the gateway's front end):
//   - no whitespace between a field name and its colon (http-parser would take
//     "Transfer-Encoding : chunked" as framing), 400;
//   - exactly one Host in an HTTP/1.1 request (RFC 9112 3.2), 400;
//   - a head over `max_head` bytes (request line and fields), 431; a body over `max_body`,
//     413, refused from Content-Length before any body byte is read;
//   - chunked bodies decoded by the strict `chunked_decoder`, not by http-parser, which frames
//     some malformed chunk lines differently from other peers (see chunked.hpp).
// An Upgrade or CONNECT request is read as a plain request (what follows it is HTTP/1.1).
// The reader stops after each request: the server decides when to read the next one.
// Also here: the standard reason phrase both servers put in their status lines.
//
// Thread-safety: one reader per connection, used by one thread.
#pragma once

#include <http_parser.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "net/chunked.hpp"

namespace sshpool::net {

/// A request as read from the wire.
struct request {
  std::string method;
  /// The request target exactly as received, query string included.
  std::string target;
  /// Header fields in arrival order, names as received, values without trailing whitespace.
  std::vector<std::pair<std::string, std::string>> headers;
  /// The body (chunked encoding removed).
  std::string body;
  /// HTTP/1.0 (no chunked responses; keep-alive only on request).
  bool http10 = false;

  /// The value of the first header named `name` (case-insensitive), or nullptr.
  const std::string* header(std::string_view name) const;
};

/// The standard reason phrase of `status` ("Unknown" for a code http-parser does not name).
const char* reason_phrase(int status) noexcept;

/// Reads requests from a connection's bytes, one at a time.
class request_reader {
public:
  /// What `feed` ended with.
  enum class result {
    /// All input was used; the request is not complete yet.
    more,
    /// A request is complete: `take` it, then feed what follows it.
    request,
    /// The input was refused (`status`, `why`); nothing more can be read.
    error,
  };

  /// A reader refusing heads over `max_head` bytes and bodies over `max_body`.
  request_reader(std::size_t max_head, std::size_t max_body);

  request_reader(const request_reader&) = delete;
  request_reader& operator=(const request_reader&) = delete;

  /// Reads from `data` until a request is complete, the input is refused or `data` is used
  /// up; `used` is set to the bytes read.
  result feed(std::string_view data, std::size_t& used);

  /// Moves the request read so far (the complete one after `result::request`) into `into`;
  /// the reader then waits for the next one.
  void take(request& into);

  /// The error status (400, 413 or 431) and its explanation after `result::error`.
  int status() const noexcept { return status_; }
  const std::string& why() const noexcept { return why_; }

  /// Whether the last complete request lets the connection carry more (Connection, version).
  bool keep_alive() const noexcept { return keep_alive_; }
  /// Whether the last complete request asked for an Upgrade (or was a CONNECT).
  bool upgrade() const noexcept { return upgrade_; }

  /// Whether a "100 Continue" is due (the head asked for it and the body is not here yet);
  /// true once per request.
  bool take_expect_continue() noexcept { return std::exchange(expect_continue_, false); }

  /// A request has begun (its first byte was read) and was not taken yet.
  bool in_message() const noexcept { return in_message_; }
  /// The head of the request in progress is complete.
  bool head_done() const noexcept { return head_done_; }
  /// The request in progress as read so far (its method, target and headers once
  /// `head_done`).
  const request& current() const noexcept { return current_; }
  /// When the request in progress began.
  std::chrono::steady_clock::time_point started() const noexcept { return started_; }

private:
  static int on_message_begin(http_parser* p);
  static int on_url(http_parser* p, const char* at, std::size_t n);
  static int on_header_field(http_parser* p, const char* at, std::size_t n);
  static int on_header_value(http_parser* p, const char* at, std::size_t n);
  static int on_headers_complete(http_parser* p);
  static int on_body(http_parser* p, const char* at, std::size_t n);
  static int on_message_complete(http_parser* p);
  static const http_parser_settings settings_;

  /// Counts head bytes; false (after noting a 431) when over the limit.
  bool count_head(std::size_t n);
  /// Notes why the request is refused; -1 for http-parser.
  int refuse(int status, std::string why);
  /// Feeds the chunked decoder.
  result read_chunked(std::string_view data, std::size_t& used);

  http_parser parser_{};
  std::size_t max_head_;
  std::size_t max_body_;
  request current_;
  std::optional<chunked_decoder> chunked_;
  /// The head is parsed and `chunked_` is reading the body.
  bool reading_chunked_ = false;
  bool in_header_value_ = false;
  std::size_t head_bytes_ = 0;
  int status_ = 0;
  std::string why_;
  bool keep_alive_ = true;
  bool upgrade_ = false;
  bool expect_continue_ = false;
  bool in_message_ = false;
  bool head_done_ = false;
  std::chrono::steady_clock::time_point started_;
};

} // namespace sshpool::net
