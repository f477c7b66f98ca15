// HTTP/1.1 framing rules written once for the ssh layer's request serialiser and response
// parser and the demo's servers (app/), which include this header alone: it depends on
// nothing but the standard library.
//
// Thread-safety: pure functions.
#pragma once

#include <array>
#include <string_view>

namespace sshpool {

namespace detail {

constexpr std::array<bool, 256> make_tchar_table() {
  std::array<bool, 256> table{};
  for (int c = '0'; c <= '9'; ++c)
    table[c] = true;
  for (int c = 'a'; c <= 'z'; ++c)
    table[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c)
    table[c] = true;
  for (char c : std::string_view{"!#$%&'*+-.^_`|~"})
    table[static_cast<unsigned char>(c)] = true;
  return table;
}

inline constexpr std::array<bool, 256> tchar_table = make_tchar_table();

} // namespace detail

/// Whether `c` may stand in a token (RFC 9110 5.6.2 tchar: a method, a field name):
/// DIGIT, ALPHA or one of "!#$%&'*+-.^_`|~".
constexpr bool is_tchar(char c) noexcept {
  return detail::tchar_table[static_cast<unsigned char>(c)];
}

/// Whether `c` may stand in a field value, a reason phrase or a chunk extension (RFC 9110
/// 5.5): visible ASCII, SP, HTAB or obs-text; no other control character, no DEL.
constexpr bool is_field_value_byte(char c) noexcept {
  auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7f);
}

/// Whether a response has no body whatever its headers say (RFC 9112 6.3): the answer to a
/// HEAD request, an interim (1xx), 204 No Content or 304 Not Modified.
constexpr bool has_no_body(bool head_request, int status) noexcept {
  return head_request || status / 100 == 1 || status == 204 || status == 304;
}

} // namespace sshpool
