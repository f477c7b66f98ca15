// A deliberately broken HTTP service for fault tests: each request's path picks a
// misbehaviour that a well-behaved backend (app/backend) never shows.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>

namespace sshpool::test {

/// Listens on `bind`:ephemeral port; one thread accepts, one thread serves each connection
/// (tests open few). Requests are read up to the end of their head (bodies are not expected).
///
/// Paths:
///   /ok/MS        "ok" after MS milliseconds, keep-alive
///   /silence      read, never answered (until the peer closes)
///   /cut          Content-Length 1000, 10 body bytes, then close
///   /stall        Content-Length 1000, 10 body bytes, then nothing (until the peer closes)
///   /endless      a chunked body that never ends (16 KiB chunks as fast as they are taken)
///   /bare-cr      "HTTP/1.1 200 OK\rSet-Cookie: x" (a CR without LF in the status line)
///   /bad-status   "HTTP/1.1 2x0 OK" (malformed status line)
///   /bad-chunk    chunked body whose first chunk size is "zz"
///   /big/N        N body bytes with Content-Length
///   /huge-head/N  a 200 whose head has N bytes of headers
///   /trickle/MS   Content-Length 1000, one byte every MS milliseconds
///   anything else 404
class script_backend {
public:
  explicit script_backend(const std::string& bind = "127.0.0.1");
  /// Stops accepting, wakes and joins every thread, closes every socket.
  ~script_backend();
  script_backend(const script_backend&) = delete;
  script_backend& operator=(const script_backend&) = delete;

  std::uint16_t port() const { return port_; }
  /// Closes the listening socket: new connections are refused, accepted ones go on.
  void stop_listening();
  /// Waits until at least `n` request heads were read; false on timeout.
  bool wait_for_requests(std::uint64_t n, std::chrono::milliseconds timeout);

private:
  void accept_loop();
  void serve(int fd);
  /// Waits up to `ms` for the stop event; false once stopping.
  bool pause(int ms) const;

  int listen_fd_ = -1;
  int stop_fd_ = -1;
  /// Keeps the port bound after stop_listening.
  int hold_fd_ = -1;
  sockaddr_in addr_{};
  std::uint16_t port_ = 0;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::uint64_t requests_ = 0;
  std::vector<std::thread> workers_;
  /// Workers that returned and wait to be joined.
  std::vector<std::thread::id> finished_;
  /// Sockets being served, shut down by the destructor to unblock a worker stuck in send().
  std::vector<int> clients_;
  std::thread acceptor_;
};

} // namespace sshpool::test
