// See headers.hpp.
#include "gateway/headers.hpp"

#include <algorithm>
#include <iterator>
#include <vector>

#include "sshpool/text.hpp"

namespace sshpool::gateway {

namespace {

/// Longest accepted X-Request-Id.
constexpr std::size_t max_request_id = 128;

/// Hop-by-hop headers (RFC 9110 7.6.1), besides Proxy-* and those Connection names.
constexpr std::string_view hop_by_hop[] = {"connection", "keep-alive", "transfer-encoding",
                                           "te",         "trailer",    "upgrade"};

/// The field names that the Connection fields of `headers` list (none: no allocation).
std::vector<std::string> named_by_connection(const header_list& headers) {
  std::vector<std::string> names;
  for (auto& [name, value] : headers) {
    if (!text::iequals(name, "connection"))
      continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      auto token = text::trim(rest.substr(0, comma));
      if (!token.empty())
        names.emplace_back(token);
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
  }
  return names;
}

/// Whether `name` is one of `names`, ignoring ASCII case.
template <class Names>
bool listed(std::string_view name, const Names& names) {
  return std::any_of(std::begin(names), std::end(names),
                     [name](std::string_view n) { return text::iequals(name, n); });
}

} // namespace

// Called twice per forwarded request (request and response): names are compared in place,
// ignoring case, with nothing allocated unless a Connection field names others.
header_list end_to_end(header_list headers, std::initializer_list<std::string_view> also_drop) {
  auto named = named_by_connection(headers);
  auto hop = [&](const auto& header) {
    std::string_view name = header.first;
    return listed(name, hop_by_hop) || listed(name, also_drop) || listed(name, named) ||
           (name.size() >= 6 && text::iequals(name.substr(0, 6), "proxy-"));
  };
  headers.erase(std::remove_if(headers.begin(), headers.end(), hop), headers.end());
  return headers;
}

bool valid_request_id(const std::string& id) {
  if (id.empty() || id.size() > max_request_id)
    return false;
  return std::all_of(id.begin(), id.end(),
                     [](unsigned char c) { return c > 0x20 && c < 0x7f && c != '"' && c != '\\'; });
}

std::string path_only(const std::string& target) {
  return target.substr(0, target.find_first_of("?#"));
}

bool is_operational_path(const std::string& path) {
  return path == "/healthz" || path == "/readyz" || path == "/metrics" || path == "/stats";
}

} // namespace sshpool::gateway
