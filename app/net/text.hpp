// The small text helpers of the demo's HTTP code (both epoll servers, the gateway's routing,
// settings and logs), written once: case-insensitive comparison, lower-casing, trimming,
// strict number parsing, decimal/hex formatting and JSON string escaping (for the places
// that write JSON by hand instead of through nlohmann, which costs an allocation per value).
//
// Thread-safety: pure functions, reentrant.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sshpool::net {

/// ASCII case-insensitive equality (header names, tokens).
bool iequals(std::string_view a, std::string_view b) noexcept;

/// An ASCII lower-case copy of `s`.
std::string lower(std::string_view s);

/// `s` without leading and trailing spaces and tabs (HTTP's optional whitespace).
std::string_view trim(std::string_view s) noexcept;

/// A whole decimal number without sign; nullopt if empty, not all digits, or over 2^64-1.
std::optional<std::uint64_t> parse_unsigned(std::string_view s) noexcept;

/// Appends `value` in `base` (10 or 16) to `out`.
void append_number(std::string& out, std::uint64_t value, int base = 10);

/// Appends `s` escaped as the inside of a JSON string (no quotes).
void append_json_escaped(std::string& out, std::string_view s);

/// Appends `s` as a JSON string literal (quotes included).
void append_json_string(std::string& out, std::string_view s);

} // namespace sshpool::net
