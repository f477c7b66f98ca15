// A strict decoder of HTTP/1.1 chunked request bodies (RFC 9112 section 7.1).
//
// http-parser is lenient where a proxy must not be: it ends a chunk-size line only at CRLF
// and takes a bare LF inside a chunk extension as part of it, while nginx and other peers
// end the line at the LF, so the two frame the same bytes differently (a smuggling vector).
// The front end therefore lets http-parser read the head only and decodes the body here:
// every line ends in CRLF, a size is 1-16 hex digits, an extension holds no CR, LF, NUL or
// other control character, and the trailer section is read, bounded and dropped (trailer
// fields are never merged into the header section, RFC 9110 section 6.5.1).
//
// Thread-safety: one decoder per request, used by one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sshpool::net {

class chunked_decoder {
public:
  enum class status {
    /// All of `data` was consumed; more input is needed.
    more,
    /// The body ended (last chunk and trailer section read); `consumed` says where.
    done,
    /// Not valid chunked framing; `why()` says what.
    bad,
    /// The decoded body exceeds `max_body`, or the trailer section `max_trailer`.
    too_large,
  };

  chunked_decoder(std::size_t max_body, std::size_t max_trailer)
      : max_body_(max_body), max_trailer_(max_trailer) {}

  /// Decodes from `data`, appending body bytes to `body`. `consumed` is set to the bytes of
  /// `data` used (all of them unless the body ended inside it, or on an error).
  status feed(std::string_view data, std::string& body, std::size_t& consumed);

  /// Why the input was refused (`bad` or `too_large`).
  const std::string& why() const noexcept { return why_; }

private:
  enum class state { size, size_ws, ext, size_lf, data, data_cr, data_lf, trailer, trailer_lf };

  status fail(status s, std::string why);

  std::size_t max_body_;
  std::size_t max_trailer_;
  state st_ = state::size;
  std::uint64_t chunk_ = 0;
  int digits_ = 0;
  std::uint64_t left_ = 0;
  std::size_t trailer_bytes_ = 0;
  /// Bytes on the current trailer line (0 before its first byte: an empty line ends it).
  std::size_t line_bytes_ = 0;
  /// The current trailer line's name and colon were read.
  bool in_value_ = false;
  std::string why_;
};

} // namespace sshpool::net
