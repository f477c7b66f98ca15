// Ending a libssh session from the thread that owns it.
#pragma once

#include <string>

#include <libssh/libssh.h>

namespace sshpool::ssh {

/// Sends SSH_MSG_DISCONNECT with `reason` (the peer's ssh prints it; empty: "Bye Bye") and
/// frees `s`, which must be in no `ssh_event`. Nothing waits: the descriptor is made
/// non-blocking, so a stalled peer cannot hold the calling thread (docs/libssh.md, trap
/// 12); the message goes if the socket takes it. Input not yet read is discarded first and
/// libssh is told the socket is writable, or the message would never reach the peer
/// (trap 14).
void disconnect(ssh_session s, const std::string& reason = {});

} // namespace sshpool::ssh
