// OpenSSH's host patterns, shared by the known_hosts reader and the `from=` option of
// authorized_keys: `*` matches any run of characters, `?` any one, and in a comma-separated
// list a matching `!pattern` excludes the name whatever else matches.
#pragma once

#include <string>
#include <string_view>

namespace sshpool::ssh {

/// OpenSSH's match_pattern: `*` matches any run of characters, `?` any one.
bool wildcard_match(std::string_view text, std::string_view pattern);

/// OpenSSH's match_hostname over a comma-separated list (patterns compared in lower case):
/// true if a pattern matches `name` and no matching pattern is negated with `!`.
bool patterns_match(std::string_view name, std::string_view list);

} // namespace sshpool::ssh
