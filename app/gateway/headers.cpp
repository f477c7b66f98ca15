// See headers.hpp.
#include "gateway/headers.hpp"

#include <algorithm>
#include <unordered_set>

#include "sshpool/text.hpp"

namespace sshpool::gateway {

namespace {

/// Longest accepted X-Request-Id.
constexpr std::size_t max_request_id = 128;

/// Hop-by-hop headers (RFC 9110 7.6.1) plus those named in `Connection`, lower-case.
std::unordered_set<std::string> hop_by_hop(const header_list& headers) {
  std::unordered_set<std::string> names = {"connection", "keep-alive", "transfer-encoding",
                                           "te",         "trailer",    "upgrade"};
  for (auto& [name, value] : headers) {
    if (!text::iequals(name, "connection"))
      continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      auto token = text::trim(rest.substr(0, comma));
      if (!token.empty())
        names.insert(text::lower(token));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
  }
  return names;
}

} // namespace

header_list end_to_end(header_list headers, std::initializer_list<std::string_view> also_drop) {
  auto drop = hop_by_hop(headers);
  for (auto name : also_drop)
    drop.emplace(name);
  auto hop = [&](const auto& header) {
    auto key = text::lower(header.first);
    return drop.count(key) != 0 || key.rfind("proxy-", 0) == 0;
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

} // namespace sshpool::gateway
