// Resource figures of the test process itself, read from /proc, so that tests and benchmarks
// can check that threads, file descriptors and memory do not leak.
#pragma once

#include <cstddef>

namespace sshpool::test {

/// Threads of this process (entries in /proc/self/task).
std::size_t thread_count();

/// Open file descriptors of this process (entries in /proc/self/fd, not counting the one used
/// to list them).
std::size_t open_fd_count();

/// Resident set size of this process in bytes (from /proc/self/statm).
std::size_t rss_bytes();

} // namespace sshpool::test
