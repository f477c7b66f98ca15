// Resource figures read from /proc: of the test process itself, so that tests and benchmarks
// can check that threads, file descriptors and memory do not leak; of other processes (a
// process tree, the CPU it used), so that fixtures can stop an sshd's connection processes and
// benchmarks can say how busy sshd was; and the machine's TCP sockets, so that tests can count
// connections to a port and see bytes wait in a socket that nobody reads.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sshpool::test {

/// Threads of this process (entries in /proc/self/task).
std::size_t thread_count();

/// Open file descriptors of this process (entries in /proc/self/fd, not counting the one used
/// to list them).
std::size_t open_fd_count();

/// Resident set size of this process in bytes (from /proc/self/statm).
std::size_t rss_bytes();

/// All processes below `root`, from the parent pids in /proc/*/stat.
std::vector<pid_t> descendants(pid_t root);

/// CPU seconds (user + system) used by `pid` and by its children it has waited for, from
/// /proc/PID/stat; 0 if it is gone. Summed over a tree at two moments, the difference is the
/// tree's CPU in between, processes that exited meanwhile included once their parent reaped
/// them.
double cpu_seconds(pid_t pid);

/// cpu_seconds() of `root` and of every process below it.
double tree_cpu_seconds(pid_t root);

/// One IPv4 TCP socket, as /proc/net/tcp lists it.
struct tcp_socket {
  std::uint16_t local_port = 0;
  std::uint16_t remote_port = 0;
  /// In state ESTABLISHED.
  bool established = false;
  /// Bytes written into the socket and not yet acknowledged by its peer (tx_queue): they
  /// pile up while the peer does not read.
  std::size_t send_queue = 0;
};

/// Every IPv4 TCP socket of this network namespace (/proc/net/tcp), listeners included.
std::vector<tcp_socket> tcp_sockets();

} // namespace sshpool::test
