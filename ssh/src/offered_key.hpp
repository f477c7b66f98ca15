// The key a publickey authentication request offers, for the server side (the agent
// listener, and the tests' scripted SSH server).
#pragma once

#include <libssh/libssh.h>
#include <libssh/server.h>

namespace sshpool::ssh {

/// The key `msg` (an SSH_REQUEST_AUTH / SSH_AUTH_METHOD_PUBLICKEY message) offers, and in
/// `state` whether it came with a signature. libssh 0.10 marks these getters deprecated in
/// favour of server callbacks, but once server callbacks are set libssh answers at once
/// every message they do not handle; one message callback keeps every answer with the
/// caller (the agent listener's policy, the scripted server's delayed confirmations).
inline ssh_key offered_key(ssh_message msg, ssh_publickey_state_e& state) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  state = ssh_message_auth_publickey_state(msg);
  return ssh_message_auth_pubkey(msg);
#pragma GCC diagnostic pop
}

} // namespace sshpool::ssh
