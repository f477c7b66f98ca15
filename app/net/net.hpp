// Socket plumbing shared by the demo's two epoll servers, the mock backend
// (sshpool-backend) and the gateway's front end (sshpool-demo): an owned descriptor, a
// non-blocking listening socket, and non-blocking reads and writes over buffers consumed
// from the front (the loop around them is in event_loop.hpp).
//
// Thread-safety: free functions are reentrant; a unique_fd belongs to one owner.
#pragma once

#include <cstddef>
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

/// What a non-blocking recv came to.
enum class recv_status {
  /// Bytes were read.
  data,
  /// Nothing to read now.
  would_block,
  /// The peer's FIN.
  eof,
  /// The connection failed.
  failed,
};

/// Receives once into `buf` (at most `size` bytes, EINTR retried); `got` is set to the
/// bytes read.
recv_status recv_some(int fd, char* buf, std::size_t size, std::size_t& got);

/// Sends `out` from `off` on until all of it is sent or the socket is full (EINTR retried),
/// advancing `off`; `sent` is set to the bytes sent. False when the connection failed.
bool send_pending(int fd, const std::string& out, std::size_t& off, std::size_t& sent);

/// Drops the consumed bytes [0, `off`) of `buf`: at once when all were consumed, otherwise
/// once `slack` or more of them piled up.
void compact(std::string& buf, std::size_t& off, std::size_t slack);

} // namespace sshpool::net
