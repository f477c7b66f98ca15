// authorized_keys files (see sshpool/ssh/authorized_keys.hpp): a line reader, the options
// and the source address patterns of `from`.
#include "sshpool/ssh/authorized_keys.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "key_loader.hpp"
#include "patterns.hpp"
#include "small_file.hpp"
#include "sshpool/text.hpp"

namespace sshpool::ssh {

namespace {

constexpr std::size_t max_file_bytes = std::size_t{1} << 20;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_space(s.back()))
    s.remove_suffix(1);
  return s;
}

/// The next white-space separated field of `line`; `line` keeps the rest.
std::string_view next_field(std::string_view& line) {
  line = trim(line);
  std::size_t end = 0;
  while (end < line.size() && !is_space(line[end]))
    ++end;
  auto field = line.substr(0, end);
  line.remove_prefix(end);
  return field;
}

/// The options field: up to the first white space outside double quotes. Empty if a quote
/// is not closed.
std::string_view options_field(std::string_view& line) {
  bool quoted = false;
  std::size_t i = 0;
  for (; i < line.size() && (quoted || !is_space(line[i])); ++i) {
    if (line[i] == '\\' && quoted && i + 1 < line.size())
      ++i;
    else if (line[i] == '"')
      quoted = !quoted;
  }
  if (quoted)
    return {};
  auto field = line.substr(0, i);
  line.remove_prefix(i);
  return field;
}

/// An IPv4 or IPv6 address in network byte order (4 or 16 bytes); empty if not numeric.
std::string address_bytes(std::string_view text) {
  std::string s{text};
  unsigned char buf[16];
  if (::inet_pton(AF_INET, s.c_str(), buf) == 1)
    return std::string(reinterpret_cast<char*>(buf), 4);
  if (::inet_pton(AF_INET6, s.c_str(), buf) == 1)
    return std::string(reinterpret_cast<char*>(buf), 16);
  return {};
}

/// Parses "ADDRESS/BITS"; false if malformed.
bool parse_cidr(std::string_view entry, std::string& network, unsigned& bits) {
  auto slash = entry.find('/');
  network = address_bytes(entry.substr(0, slash));
  auto digits = entry.substr(slash + 1);
  if (network.empty() || digits.empty() || digits.size() > 3 ||
      digits.find_first_not_of("0123456789") != std::string_view::npos)
    return false;
  bits = static_cast<unsigned>(std::stoul(std::string{digits}));
  return bits <= network.size() * 8;
}

bool in_network(const std::string& address, const std::string& network, unsigned bits) {
  if (address.size() != network.size())
    return false;
  for (std::size_t i = 0; i < network.size() && bits > 0; ++i, bits -= std::min(bits, 8u)) {
    auto mask = static_cast<unsigned char>(0xff << (8 - std::min(bits, 8u)));
    if ((static_cast<unsigned char>(address[i]) & mask) !=
        (static_cast<unsigned char>(network[i]) & mask))
      return false;
  }
  return true;
}

/// Every CIDR entry of a `from` list is well formed.
bool valid_from(std::string_view list) {
  while (!list.empty()) {
    auto comma = list.find(',');
    auto entry = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    if (!entry.empty() && entry[0] == '!')
      entry.remove_prefix(1);
    std::string network;
    unsigned bits = 0;
    if (entry.empty() ||
        (entry.find('/') != std::string_view::npos && !parse_cidr(entry, network, bits)))
      return false;
  }
  return true;
}

/// OpenSSH's parse_absolute_time: YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, local time, or
/// UTC with a trailing Z.
std::optional<std::chrono::system_clock::time_point> parse_expiry(std::string_view text) {
  bool utc = !text.empty() && (text.back() == 'Z' || text.back() == 'z');
  if (utc)
    text.remove_suffix(1);
  if ((text.size() != 8 && text.size() != 12 && text.size() != 14) ||
      text.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  auto num = [&](std::size_t at, std::size_t len) {
    return at + len <= text.size() ? std::stoi(std::string{text.substr(at, len)}) : 0;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(4, 2) - 1;
  tm.tm_mday = num(6, 2);
  tm.tm_hour = num(8, 2);
  tm.tm_min = num(10, 2);
  tm.tm_sec = num(12, 2);
  tm.tm_isdst = -1;
  if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
      tm.tm_min > 59 || tm.tm_sec > 60)
    return std::nullopt;
  std::time_t t = utc ? ::timegm(&tm) : std::mktime(&tm);
  if (t == static_cast<std::time_t>(-1))
    return std::nullopt;
  return std::chrono::system_clock::from_time_t(t);
}

/// Parses "[host:]port" (host may be "[v6]" or "*", port may be "*").
std::optional<listen_permission> parse_listen(std::string_view value) {
  listen_permission p;
  auto colon = value.rfind(':');
  std::string_view port = value;
  if (colon != std::string_view::npos) {
    auto host = value.substr(0, colon);
    port = value.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    if (host.empty())
      return std::nullopt;
    if (host != "*")
      p.host = text::lower(host);
  }
  if (port == "*")
    return p;
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  auto n = std::stoul(std::string{port});
  if (n == 0 || n > 65535)
    return std::nullopt;
  p.port = static_cast<std::uint16_t>(n);
  return p;
}

/// Applies the options field to `key`; the reason if the line cannot be used.
std::optional<std::string> apply_options(std::string_view field, authorized_key& key) {
  static const char* const no_effect[] = {
      "no-pty", "no-agent-forwarding", "no-x11-forwarding", "no-user-rc", "permitopen",
      "pty",    "agent-forwarding",    "x11-forwarding",    "user-rc"};
  while (!field.empty()) {
    // One option: up to a comma outside quotes.
    std::size_t end = 0;
    bool quoted = false;
    for (; end < field.size() && (quoted || field[end] != ','); ++end) {
      if (field[end] == '\\' && quoted && end + 1 < field.size())
        ++end;
      else if (field[end] == '"')
        quoted = !quoted;
    }
    auto option = field.substr(0, end);
    field.remove_prefix(std::min(end + 1, field.size()));
    auto eq = option.find('=');
    auto name = text::lower(option.substr(0, eq));
    std::optional<std::string> value;
    if (eq != std::string_view::npos) {
      auto raw = option.substr(eq + 1);
      if (raw.size() < 2 || raw.front() != '"' || raw.back() != '"')
        return "option '" + name + "' needs a quoted value";
      value.emplace();
      for (std::size_t i = 1; i + 1 < raw.size(); ++i) {
        if (raw[i] == '\\' && i + 2 < raw.size() && raw[i + 1] == '"')
          ++i;
        value->push_back(raw[i]);
      }
    }
    static const char* const honoured[] = {
        "restrict", "no-port-forwarding", "port-forwarding", "permitlisten", "from", "expiry-time"};
    auto known = [&name](const auto& names) {
      return std::any_of(std::begin(names), std::end(names),
                         [&name](const char* x) { return name == x; });
    };
    if (!known(honoured) && !known(no_effect))
      return "option '" + name + "' is not supported for agents";
    bool wants_value =
        name == "permitlisten" || name == "from" || name == "expiry-time" || name == "permitopen";
    if (wants_value != value.has_value())
      return "option '" + name + (wants_value ? "' needs a value" : "' takes no value");
    if (name == "restrict" || name == "no-port-forwarding") {
      key.port_forwarding = false;
    } else if (name == "port-forwarding") {
      key.port_forwarding = true;
    } else if (name == "permitlisten") {
      auto p = parse_listen(*value);
      if (!p)
        return "permitlisten=\"" + *value + "\" is not [host:]port";
      key.permit_listen.push_back(std::move(*p));
    } else if (name == "from") {
      if (!valid_from(*value))
        return "from=\"" + *value + "\" is not a valid pattern list";
      key.from = key.from.empty() ? *value : key.from + "," + *value;
    } else if (name == "expiry-time") {
      key.expiry = parse_expiry(*value);
      if (!key.expiry)
        return "expiry-time=\"" + *value + "\" is not YYYYMMDD[HHMM[SS]][Z]";
    }
  }
  return std::nullopt;
}

bool is_key_type(std::string_view name) {
  return ssh_key_type_from_name(std::string{name}.c_str()) != SSH_KEYTYPE_UNKNOWN;
}

/// Parses one non-blank, non-comment line; the reason if it cannot be used.
std::optional<std::string> parse_line(std::string_view line, authorized_key& key) {
  auto rest = line;
  auto first = next_field(rest);
  if (!is_key_type(first)) {
    rest = trim(line);
    auto options = options_field(rest);
    if (options.empty())
      return std::string{"unbalanced quotes in the options"};
    if (auto why = apply_options(options, key))
      return why;
    first = next_field(rest);
  }
  auto blob = next_field(rest);
  key.comment = std::string{trim(rest)};
  auto type = ssh_key_type_from_name(std::string{first}.c_str());
  if (type == SSH_KEYTYPE_UNKNOWN || blob.empty())
    return "no key type and key (got '" + std::string{first.substr(0, 40)} + "')";
  if (std::string_view{ssh_key_type_to_char(type)}.find("-cert-") != std::string_view::npos)
    return std::string{"certificates are not supported"};
  ssh_key raw = nullptr;
  if (ssh_pki_import_pubkey_base64(std::string{blob}.c_str(), type, &raw) != SSH_OK)
    return "the " + std::string{first} + " key does not decode";
  key_ptr parsed{raw};
  if (ssh_key_type(raw) != type)
    return "the key is not of type " + std::string{first};
  char* canonical = nullptr;
  if (ssh_pki_export_pubkey_base64(raw, &canonical) != SSH_OK)
    return std::string{"the key cannot be exported"};
  key.base64 = canonical;
  ssh_string_free_char(canonical);
  key.type = std::string{first};
  return std::nullopt;
}

} // namespace

authorized_keys parse_authorized_keys(std::string_view text) {
  authorized_keys result;
  std::size_t number = 0;
  while (!text.empty()) {
    auto eol = text.find('\n');
    auto line = trim(text.substr(0, eol));
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    ++number;
    if (line.empty() || line[0] == '#')
      continue;
    authorized_key key;
    if (auto why = parse_line(line, key))
      result.skipped.push_back("line " + std::to_string(number) + ": " + *why);
    else
      result.keys.push_back(std::move(key));
  }
  return result;
}

expected<authorized_keys> load_authorized_keys(const std::string& path) {
  auto file = read_small_file(path, max_file_bytes);
  if (file.error != 0)
    return error{errc::invalid_argument,
                 "cannot read authorized keys '" + path + "': " + std::strerror(file.error)};
  if (file.over_limit)
    return error{errc::invalid_argument,
                 "authorized keys '" + path + "' is over 1 MiB; not an authorized_keys file"};
  return parse_authorized_keys(file.text);
}

bool source_allowed(const authorized_key& key, std::string_view source) {
  if (key.from.empty())
    return true;
  // OpenSSH's addr_match_list: CIDR entries compare numerically, others as wildcards.
  auto address = address_bytes(source);
  auto name = text::lower(source);
  bool positive = false;
  std::string_view list = key.from;
  while (!list.empty()) {
    auto comma = list.find(',');
    auto entry = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    bool negated = !entry.empty() && entry[0] == '!';
    if (negated)
      entry.remove_prefix(1);
    bool match = false;
    if (entry.find('/') != std::string_view::npos) {
      std::string network;
      unsigned bits = 0;
      if (!parse_cidr(entry, network, bits))
        return false;
      match = in_network(address, network, bits);
    } else {
      match = wildcard_match(name, text::lower(entry));
    }
    if (match && negated)
      return false;
    positive = positive || match;
  }
  return positive;
}

bool listen_allowed(const authorized_key& key, std::string_view address, std::uint16_t port) {
  if (!key.port_forwarding)
    return false;
  if (key.permit_listen.empty())
    return true;
  auto host = text::lower(address);
  return std::any_of(key.permit_listen.begin(), key.permit_listen.end(),
                     [&](const listen_permission& p) {
                       return (!p.port || *p.port == port) && (p.host.empty() || p.host == host);
                     });
}

} // namespace sshpool::ssh
