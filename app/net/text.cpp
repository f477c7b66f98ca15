// See text.hpp.
#include "net/text.hpp"

#include <charconv>

namespace sshpool::net {

std::optional<std::uint64_t> parse_unsigned(std::string_view s) noexcept {
  if (s.empty() || s.front() < '0' || s.front() > '9')
    return std::nullopt;
  std::uint64_t out = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec != std::errc{} || end != s.data() + s.size())
    return std::nullopt;
  return out;
}

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

void append_number(std::string& out, std::uint64_t value, int base) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, base);
  out.append(buf, end);
}

namespace {

/// The length of the well-formed UTF-8 sequence that starts `s` (1 to 4), or 0.
std::size_t utf8_sequence(std::string_view s) noexcept {
  auto at = [&s](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = at(0);
  if (c < 0x80)
    return 1;
  std::size_t n = c >= 0xc2 && c <= 0xdf   ? 2
                  : c >= 0xe0 && c <= 0xef ? 3
                  : c >= 0xf0 && c <= 0xf4 ? 4
                                           : 0;
  if (n == 0 || s.size() < n)
    return 0;
  // The second byte's range excludes overlong forms, surrogates and code points past U+10FFFF.
  const unsigned char lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
  const unsigned char hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
  if (at(1) < lo || at(1) > hi)
    return 0;
  for (std::size_t i = 2; i < n; ++i)
    if (at(i) < 0x80 || at(i) > 0xbf)
      return 0;
  return n;
}

} // namespace

bool valid_utf8(std::string_view s) noexcept {
  while (!s.empty()) {
    std::size_t n = utf8_sequence(s);
    if (n == 0)
      return false;
    s.remove_prefix(n);
  }
  return true;
}

void append_json_escaped(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  while (!s.empty()) {
    const char ch = s.front();
    auto c = static_cast<unsigned char>(ch);
    std::size_t used = 1;
    if (c >= 0x80) {
      used = utf8_sequence(s);
      if (used == 0) {
        out += "\\ufffd";
        used = 1;
      } else {
        out.append(s.data(), used);
      }
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else {
      out += ch;
    }
    s.remove_prefix(used);
  }
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  append_json_escaped(out, s);
  out += '"';
}

} // namespace sshpool::net
