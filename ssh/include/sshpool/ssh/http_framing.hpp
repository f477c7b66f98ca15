// HTTP/1.1 framing rules written once for the ssh layer's response parser and the demo's
// servers (app/), which include this header alone: it depends on nothing.
//
// Thread-safety: pure functions.
#pragma once

namespace sshpool {

/// Whether a response has no body whatever its headers say (RFC 9112 6.3): the answer to a
/// HEAD request, an interim (1xx), 204 No Content or 304 Not Modified.
constexpr bool has_no_body(bool head_request, int status) noexcept {
  return head_request || status / 100 == 1 || status == 204 || status == 304;
}

} // namespace sshpool
