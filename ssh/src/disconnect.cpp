// Ending a libssh session (see disconnect.hpp).
#include "disconnect.hpp"

#include <fcntl.h>

namespace sshpool::ssh {

void disconnect(ssh_session s, const std::string& reason) {
  long secs = 0;
  long usecs = 50000;
  ssh_options_set(s, SSH_OPTIONS_TIMEOUT, &secs);
  ssh_options_set(s, SSH_OPTIONS_TIMEOUT_USEC, &usecs);
  if (int fd = ssh_get_fd(s); fd >= 0)
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  ssh_set_blocking(s, 1);
  if (!reason.empty())
    ssh_session_set_disconnect_message(s, reason.c_str());
  ssh_disconnect(s);
  ssh_free(s);
}

} // namespace sshpool::ssh
