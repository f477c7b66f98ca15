// HTTP/1.1 framing of forwarded requests: serialize_request.
//
// serialize_request validates everything it writes, because it is the last line of defence
// against request smuggling into the user's service: a CR/LF, a non-token name or a second
// framing header from the caller would let one request be read as two. It validates first
// and writes afterwards, so that a rejected request leaves the output untouched, and it
// computes the exact size so that the output grows once.
#include "sshpool/ssh/http.hpp"
#include "sshpool/ssh/http_framing.hpp"
#include "sshpool/text.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <initializer_list>

namespace sshpool::ssh {

namespace {

// -- character classes and small helpers ---------------------------------------------------

/// The offset of the first byte of `s` that `allowed` refuses, or npos.
template <class Allowed>
std::size_t first_not(std::string_view s, Allowed allowed) noexcept {
  auto it = std::find_if_not(s.begin(), s.end(), allowed);
  return it == s.end() ? std::string_view::npos : static_cast<std::size_t>(it - s.begin());
}

/// Whether `c` may stand in a request target: no control character, space or DEL.
constexpr bool is_target_byte(char c) noexcept {
  auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u != 0x7f;
}

/// Names a byte for an error message: "CR", "LF", "NUL", "space", "'x'" or "byte 0xNN".
std::string describe_byte(char ch) {
  auto c = static_cast<unsigned char>(ch);
  switch (c) {
  case '\r':
    return "CR";
  case '\n':
    return "LF";
  case '\0':
    return "NUL";
  case ' ':
    return "space";
  case '\t':
    return "HTAB";
  default:
    break;
  }
  if (c > 0x20 && c < 0x7f)
    return std::string{'\''} + ch + '\'';
  static constexpr char hex[] = "0123456789abcdef";
  return std::string{"byte 0x"} + hex[c >> 4] + hex[c & 0xf];
}

/// Quotes a token (only printable characters) for an error message, truncating long ones.
std::string quoted(std::string_view token) {
  constexpr std::size_t max_shown = 64;
  std::string result{'\''};
  result.append(token.substr(0, max_shown));
  if (token.size() > max_shown)
    result.append("...");
  result += '\'';
  return result;
}

/// Why a value was rejected; never shows the value, which may be a secret.
std::string bad_value_message(char ch, const std::string& where) {
  if (ch == '\r' || ch == '\n')
    return "CR/LF in " + where;
  if (ch == '\0')
    return "NUL in " + where;
  return "control character (" + describe_byte(ch) + ") in " + where;
}

// -- request serialisation -----------------------------------------------------------------

/// Headers that serialize_request treats specially.
enum class special_header { none, content_length, host, transfer_encoding, upgrade, connection };

special_header classify(std::string_view name) noexcept {
  switch (name.size()) {
  case 4:
    return text::iequals(name, "host") ? special_header::host : special_header::none;
  case 7:
    return text::iequals(name, "upgrade") ? special_header::upgrade : special_header::none;
  case 10:
    return text::iequals(name, "connection") ? special_header::connection : special_header::none;
  case 14:
    return text::iequals(name, "content-length") ? special_header::content_length
                                                 : special_header::none;
  case 17:
    return text::iequals(name, "transfer-encoding") ? special_header::transfer_encoding
                                                    : special_header::none;
  default:
    return special_header::none;
  }
}

/// Whether a Content-Length value (1*DIGIT with optional surrounding OWS) equals `size`.
bool content_length_equals(std::string_view value, std::size_t size) noexcept {
  value = text::trim(value);
  if (value.empty())
    return false;
  std::size_t parsed = 0;
  for (char c : value) {
    if (c < '0' || c > '9')
      return false;
    auto digit = static_cast<std::size_t>(c - '0');
    if (digit > size || parsed > (size - digit) / 10)
      return false;
    parsed = parsed * 10 + digit;
  }
  return parsed == size;
}

/// Whether a Connection value (a comma-separated token list) holds "close".
bool has_close_token(std::string_view value) noexcept {
  while (!value.empty()) {
    auto comma = value.find(',');
    if (text::iequals(text::trim(value.substr(0, comma)), "close"))
      return true;
    if (comma == std::string_view::npos)
      break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

bool is_one_of(std::string_view method, std::initializer_list<std::string_view> names) noexcept {
  return std::find(names.begin(), names.end(), method) != names.end();
}

expected<request_info> rejected(std::string message) {
  return {errc::invalid_request, std::move(message)};
}

constexpr std::string_view crlf = "\r\n";
constexpr std::string_view version_crlf = " HTTP/1.1\r\n";
constexpr std::string_view host_prefix = "Host: ";
constexpr std::string_view content_length_prefix = "Content-Length: ";

} // namespace

bool idempotent_method(std::string_view method) noexcept {
  return is_one_of(method, {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"});
}

expected<request_info> serialize_request(const request& req, std::string_view host_header,
                                         std::string& out) {
  const std::string_view method = req.method;
  const std::string_view path = req.path;

  if (method.empty())
    return rejected("empty method");
  if (auto i = first_not(method, is_tchar); i != std::string_view::npos)
    return rejected("method is not a token (" + describe_byte(method[i]) + " at offset " +
                    std::to_string(i) + ")");
  if (text::iequals(method, "CONNECT"))
    return rejected("method CONNECT is not allowed");
  if (path.empty())
    return rejected("empty path");
  if (path[0] != '/' && !(path == "*" && method == "OPTIONS"))
    return rejected("path must start with '/' (or be \"*\" for OPTIONS)");
  if (auto i = first_not(path, is_target_byte); i != std::string_view::npos)
    return rejected("path holds a control character, space or DEL (" + describe_byte(path[i]) +
                    " at offset " + std::to_string(i) + ")");

  request_info info;
  info.head = method == "HEAD";
  info.idempotent = idempotent_method(method);

  std::size_t size = method.size() + 1 + path.size() + version_crlf.size();
  bool caller_host = false;
  bool caller_content_length = false;
  for (std::size_t index = 0; index < req.headers.size(); ++index) {
    const std::string_view name = req.headers[index].first;
    const std::string_view value = req.headers[index].second;
    if (name.empty())
      return rejected("header #" + std::to_string(index + 1) + " has an empty name");
    if (auto i = first_not(name, is_tchar); i != std::string_view::npos) {
      auto message = "header name #" + std::to_string(index + 1) + " is not a token (" +
                     describe_byte(name[i]) + " at offset " + std::to_string(i);
      if (i > 0)
        message += ", after " + quoted(name.substr(0, i));
      return rejected(message + ")");
    }
    if (auto i = first_not(value, is_field_value_byte); i != std::string_view::npos)
      return rejected(bad_value_message(value[i], "value of header " + quoted(name)));
    switch (classify(name)) {
    case special_header::content_length:
      if (caller_content_length)
        return rejected("duplicate Content-Length header");
      if (!content_length_equals(value, req.body.size()))
        return rejected("Content-Length header does not match the body size (" +
                        std::to_string(req.body.size()) + " bytes)");
      caller_content_length = true;
      continue; // replaced by ours, not counted in `size`
    case special_header::host:
      if (caller_host)
        return rejected("duplicate Host header");
      caller_host = true;
      break;
    case special_header::transfer_encoding:
      return rejected("header " + quoted(name) +
                      " is not allowed: the engine frames the body itself");
    case special_header::upgrade:
      return rejected("header " + quoted(name) +
                      " is not allowed: protocol upgrades cannot be forwarded");
    case special_header::connection:
      info.close = info.close || has_close_token(value);
      break;
    case special_header::none:
      break;
    }
    size += name.size() + 2 + value.size() + crlf.size();
  }

  if (!caller_host) {
    if (auto i = first_not(host_header, is_field_value_byte); i != std::string_view::npos)
      return rejected(bad_value_message(host_header[i], "host_header"));
    size += host_prefix.size() + host_header.size() + crlf.size();
  }

  std::array<char, 24> length_digits{};
  std::string_view length_text;
  if (!req.body.empty() || caller_content_length || is_one_of(method, {"POST", "PUT", "PATCH"})) {
    auto end = std::to_chars(length_digits.data(), length_digits.data() + length_digits.size(),
                             req.body.size())
                   .ptr;
    length_text = std::string_view{length_digits.data(),
                                   static_cast<std::size_t>(end - length_digits.data())};
    size += content_length_prefix.size() + length_text.size() + crlf.size();
  }
  size += crlf.size() + req.body.size();

  out.reserve(out.size() + size);
  out.append(method).append(1, ' ').append(path).append(version_crlf);
  for (auto& [name, value] : req.headers) {
    if (classify(name) == special_header::content_length)
      continue;
    out.append(name).append(": ").append(value).append(crlf);
  }
  if (!caller_host)
    out.append(host_prefix).append(host_header).append(crlf);
  if (!length_text.empty())
    out.append(content_length_prefix).append(length_text).append(crlf);
  out.append(crlf).append(req.body);
  return info;
}

} // namespace sshpool::ssh
