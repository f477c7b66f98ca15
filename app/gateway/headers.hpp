// The gateway's header hygiene as a proxy: which fields travel end to end (RFC 9110 7.6.1
// hop-by-hop fields never do, nor those a Connection field names), which request ids a
// client may choose, and the path that logs show.
//
// Thread-safety: pure functions.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

#include "sshpool/types.hpp"

namespace sshpool::gateway {

/// `headers` without the hop-by-hop fields (Connection, Keep-Alive, Transfer-Encoding, TE,
/// Trailer, Upgrade, Proxy-*), the fields their Connection names, and those named in
/// `also_drop` (lower-case); the order of the rest is kept.
header_list end_to_end(header_list headers, std::initializer_list<std::string_view> also_drop);

/// Whether a client's X-Request-Id may be used: 1-128 visible ASCII characters without
/// quotes or backslashes.
bool valid_request_id(const std::string& id);

/// The path of a target without its query string (what the logs show).
std::string path_only(const std::string& target);

/// Whether `path` is one of the gateway's own: /healthz, /readyz, /metrics, /stats.
bool is_operational_path(const std::string& path);

} // namespace sshpool::gateway
