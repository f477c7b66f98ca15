// Reads the test process's thread, fd and memory figures from /proc.
#include "support/process_info.hpp"

#include <dirent.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

namespace sshpool::test {

namespace {

/// Entries of `path` other than "." and ".."; with `skip_own_fd`, not counting the entry for
/// the fd of the listing itself (for /proc/self/fd).
std::size_t count_entries(const char* path, bool skip_own_fd) {
  DIR* dir = ::opendir(path);
  if (dir == nullptr)
    return 0;
  const std::string own_fd = std::to_string(::dirfd(dir));
  std::size_t count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (std::strcmp(entry->d_name, ".") == 0 || std::strcmp(entry->d_name, "..") == 0)
      continue;
    if (skip_own_fd && own_fd == entry->d_name)
      continue;
    ++count;
  }
  ::closedir(dir);
  return count;
}

} // namespace

std::size_t thread_count() {
  return count_entries("/proc/self/task", false);
}

std::size_t open_fd_count() {
  return count_entries("/proc/self/fd", true);
}

std::size_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t size_pages = 0;
  std::size_t resident_pages = 0;
  if (!(statm >> size_pages >> resident_pages))
    return 0;
  return resident_pages * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

} // namespace sshpool::test
