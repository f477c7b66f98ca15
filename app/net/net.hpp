// Socket plumbing shared by the demo's two epoll servers, the mock backend
// (sshpool-backend) and the gateway's front end (sshpool-demo): an owned descriptor and a
// non-blocking listening socket (the loop around them is in event_loop.hpp).
//
// Thread-safety: free functions are reentrant; a unique_fd belongs to one owner.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

namespace sshpool::net {

/// Owns a file descriptor.
class unique_fd {
public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  ~unique_fd() { reset(); }
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept;
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

  /// Closes the descriptor (if any).
  void reset();

private:
  int fd_ = -1;
};

/// Throws std::system_error for `err` (an errno value), described by `what`.
[[noreturn]] void throw_errno(int err, const std::string& what);

/// A non-blocking, close-on-exec socket listening on `host`:`port` (numeric or a name; port
/// 0: ephemeral), SO_REUSEADDR set. Throws std::system_error whose message starts with
/// "`who`: bind HOST:PORT".
unique_fd open_listener(const std::string& host, std::uint16_t port, const std::string& who);

} // namespace sshpool::net
