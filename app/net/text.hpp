// The number and JSON helpers of the demo's HTTP code (both epoll servers, the gateway's
// routing, settings and logs), written once: strict number parsing, decimal/hex formatting
// and JSON string escaping (for the places that write JSON by hand instead of through
// nlohmann, which costs an allocation per value). Case-insensitive comparison, lower-casing
// and trimming are sshpool/text.hpp's, shared with the engine.
//
// Thread-safety: pure functions, reentrant.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sshpool::net {

/// A whole decimal number without sign; nullopt if empty, not all digits, or over 2^64-1.
std::optional<std::uint64_t> parse_unsigned(std::string_view s) noexcept;

/// The value of the hexadecimal digit `c` (either case), or -1.
int hex_digit(char c) noexcept;

/// Appends `value` in `base` (10 or 16) to `out`.
void append_number(std::string& out, std::uint64_t value, int base = 10);

/// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code points over
/// U+10FFFF), the only text JSON can hold.
bool valid_utf8(std::string_view s) noexcept;

/// Appends `s` escaped as the inside of a JSON string (no quotes). A byte that is not part
/// of well-formed UTF-8 becomes U+FFFD, so that the result is always valid JSON.
void append_json_escaped(std::string& out, std::string_view s);

/// Appends `s` as a JSON string literal (quotes included).
void append_json_string(std::string& out, std::string_view s);

} // namespace sshpool::net
