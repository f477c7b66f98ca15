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

void append_json_escaped(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
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
  }
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  append_json_escaped(out, s);
  out += '"';
}

} // namespace sshpool::net
