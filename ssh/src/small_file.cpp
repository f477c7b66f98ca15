// See small_file.hpp.
#include "small_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace sshpool::ssh {

small_file read_small_file(const std::string& path, std::size_t limit) {
  small_file out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    out.error = errno;
    return out;
  }
  char buf[8192];
  ssize_t n = 0;
  while (out.text.size() <= limit &&
         ((n = ::read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)))
    out.text.append(buf, static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
  if (n < 0)
    out.error = errno;
  ::close(fd);
  out.over_limit = out.error == 0 && out.text.size() > limit;
  return out;
}

} // namespace sshpool::ssh
