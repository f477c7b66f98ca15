// known_hosts, read the way OpenSSH reads it (see known_hosts.hpp).
#include "known_hosts.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <optional>
#include <vector>

#include "patterns.hpp"
#include "sshpool/text.hpp"

namespace sshpool::ssh {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/// Decodes padded standard base64; nullopt if `text` is anything else.
std::optional<std::string> decode_base64(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z')
      return c - 'A';
    if (c >= 'a' && c <= 'z')
      return c - 'a' + 26;
    if (c >= '0' && c <= '9')
      return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
  };
  if (text.size() % 4 != 0)
    return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    bool last = i + 4 == text.size();
    int pad = last ? (text[i + 3] == '=') + (text[i + 2] == '=' && text[i + 3] == '=') : 0;
    std::uint32_t group = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      int v = j >= 4 - static_cast<std::size_t>(pad) ? 0 : value(text[i + j]);
      if (v < 0)
        return std::nullopt;
      group = group << 6 | static_cast<std::uint32_t>(v);
    }
    out.push_back(static_cast<char>(group >> 16));
    if (pad < 2)
      out.push_back(static_cast<char>(group >> 8 & 0xff));
    if (pad < 1)
      out.push_back(static_cast<char>(group & 0xff));
  }
  return out;
}

/// A hashed name `|1|SALT|HASH`: HASH = HMAC-SHA1 keyed with SALT over the host's name.
bool hashed_match(std::string_view name, std::string_view field) {
  if (field.substr(0, 3) != "|1|")
    return false;
  field.remove_prefix(3);
  auto bar = field.find('|');
  if (bar == std::string_view::npos)
    return false;
  auto salt = decode_base64(field.substr(0, bar));
  auto hash = decode_base64(field.substr(bar + 1));
  if (!salt || !hash || salt->empty())
    return false;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha1(), salt->data(), static_cast<int>(salt->size()),
           reinterpret_cast<const unsigned char*>(name.data()), name.size(), mac,
           &mac_len) == nullptr)
    return false;
  return hash->size() == mac_len &&
         hash->compare(0, mac_len, reinterpret_cast<char*>(mac), mac_len) == 0;
}

/// The white-space separated fields of a line, up to `max` (the rest is a comment).
std::vector<std::string_view> fields(std::string_view line, std::size_t max) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (out.size() < max) {
    while (i < line.size() && is_space(line[i]))
      ++i;
    if (i == line.size())
      break;
    auto start = i;
    while (i < line.size() && !is_space(line[i]))
      ++i;
    out.push_back(line.substr(start, i - start));
  }
  return out;
}

} // namespace

std::string known_hosts_name(std::string_view host, std::uint16_t port) {
  auto name = text::lower(host);
  return port == 22 ? name : "[" + name + "]:" + std::to_string(port);
}

host_key_status check_host_key(std::string_view known_hosts, std::string_view name,
                               std::string_view key_base64) {
  const auto key = decode_base64(key_base64);
  bool named = false;
  bool found = false;
  while (!known_hosts.empty()) {
    auto eol = known_hosts.find('\n');
    auto line = known_hosts.substr(0, eol);
    known_hosts = eol == std::string_view::npos ? std::string_view{} : known_hosts.substr(eol + 1);
    auto f = fields(line, 4);
    if (f.empty() || f[0][0] == '#')
      continue;
    bool revoked = f[0] == "@revoked";
    if (f[0][0] == '@' && !revoked)
      continue; // @cert-authority (no certificates here) or an unknown marker
    if (revoked)
      f.erase(f.begin());
    if (f.size() < 3)
      continue;
    auto blob = decode_base64(f[2]);
    if (!blob || blob->empty())
      continue;
    if (f[0][0] == '|' ? !hashed_match(name, f[0]) : !patterns_match(name, f[0]))
      continue;
    bool same = key && *blob == *key;
    if (revoked) {
      if (same)
        return host_key_status::revoked;
      continue;
    }
    named = true;
    found = found || same;
  }
  return found   ? host_key_status::known
         : named ? host_key_status::mismatch
                 : host_key_status::unknown;
}

std::string known_hosts_entry(std::string_view known_hosts, std::string_view name,
                              std::string_view key_type, std::string_view key_base64) {
  std::string line = known_hosts.empty() || known_hosts.back() == '\n' ? "" : "\n";
  line.append(name).append(" ").append(key_type).append(" ").append(key_base64).append("\n");
  return line;
}

} // namespace sshpool::ssh
