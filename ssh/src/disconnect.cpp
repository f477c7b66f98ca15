// Ending a libssh session (see disconnect.hpp).
#include "disconnect.hpp"

#include <fcntl.h>
#include <sys/socket.h>

namespace sshpool::ssh {

void disconnect(ssh_session s, const std::string& reason) {
  if (int fd = ssh_get_fd(s); fd >= 0) {
    // Trap 12: a send() on a blocking descriptor would wait for a peer that does not read.
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    // Trap 14: closing with unread input makes the kernel send a reset, with which the
    // peer may drop our message unread. A peer that keeps sending is cut off all the same.
    char buf[16384];
    for (int i = 0; i < 16 && ::recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0; ++i) {
    }
  }
  if (!reason.empty())
    ssh_session_set_disconnect_message(s, reason.c_str());
  // Trap 14: libssh writes only after a poll saw the socket writable since its last write;
  // ssh_disconnect polls no more, so without this the message stays in its buffer.
  ssh_set_fd_towrite(s);
  ssh_disconnect(s);
  ssh_free(s);
}

} // namespace sshpool::ssh
