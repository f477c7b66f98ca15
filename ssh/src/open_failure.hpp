// Refused direct-tcpip opens: what the SSH server said, as an error value.
#pragma once

#include <string_view>

#include "sshpool/error.hpp"

namespace sshpool::ssh {

/// The error of a channel open that the server refused, from libssh's session error text
/// `libssh_error` ("Channel opening failure: channel N error (CODE) TEXT", the only place
/// where libssh 0.10 keeps the server's reason; RFC 4254, 5.1). Reason 1 (administratively
/// prohibited: the server's forwarding policy) is `forwarding_prohibited`, any other reason
/// `channel_open_failed`; the message names `target` and gives the reason's code, name and
/// text. A text without a reason gives `channel_open_failed` with that text.
error open_failure_error(std::string_view libssh_error, std::string_view target);

} // namespace sshpool::ssh
