// Reading a small configuration file (known_hosts, authorized_keys) whole, with a size cap.
#pragma once

#include <cstddef>
#include <string>

namespace sshpool::ssh {

/// What `read_small_file` found.
struct small_file {
  std::string text;
  /// The errno of the failed open or read; 0 if the file was read.
  int error = 0;
  /// The file holds more than the cap (`text` then holds a part of it).
  bool over_limit = false;
};

/// Reads `path` whole, blocking, up to `limit` bytes. It is opened with O_NONBLOCK, so a
/// FIFO in its place does not wait for a writer.
small_file read_small_file(const std::string& path, std::size_t limit);

} // namespace sshpool::ssh
