// Ending a libssh session from the thread that owns it.
#pragma once

#include <string>

#include <libssh/libssh.h>

namespace sshpool::ssh {

/// Sends SSH_MSG_DISCONNECT with `reason` (the peer's ssh prints it; empty: "Bye Bye") and
/// frees `s`. The session must be in no `ssh_event`. Its socket is non-blocking and the
/// libssh timeout is set to 50 ms first, so a stalled peer cannot hold the calling thread
/// (docs/libssh.md, trap 12): the message goes if the socket takes it.
void disconnect(ssh_session s, const std::string& reason = {});

} // namespace sshpool::ssh
