// Bulk downloads (see bulk.hpp).
#include "bulk.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sshpool/sshpool.hpp"

namespace sshpool::bench {

namespace {

using clock_type = std::chrono::steady_clock;

/// Closes a socket when it goes out of scope.
struct fd_guard {
  int fd;
  ~fd_guard() {
    if (fd >= 0)
      ::close(fd);
  }
};

std::string size_error(std::uint64_t got, std::uint64_t expected) {
  return "got " + std::to_string(got) + " body bytes, expected " + std::to_string(expected);
}

} // namespace

bulk_result engine_download(engine& e, const std::string& user, const std::string& path,
                            std::uint64_t expected_bytes, std::atomic<std::uint64_t>& progress) {
  bulk_result r;
  auto conn = e.pool().get_connection(user);
  if (!conn) {
    r.error = "get_connection: " + conn.error().to_string();
    return r;
  }
  request req;
  req.id = "bulk";
  req.path = path;
  stream_handlers handlers;
  handlers.on_head = [](const response&) {};
  handlers.on_chunk = [&r, &progress](std::string_view chunk) {
    r.bytes += chunk.size();
    ++r.chunks;
    progress.fetch_add(chunk.size(), std::memory_order_relaxed);
    return true;
  };
  auto start = clock_type::now();
  auto head = conn->forward_stream(req, handlers);
  r.elapsed = clock_type::now() - start;
  if (!head)
    r.error = head.error().to_string();
  else if (head->status != 200)
    r.error = "status " + std::to_string(head->status);
  else if (r.bytes != expected_bytes)
    r.error = size_error(r.bytes, expected_bytes);
  if (auto ok = e.pool().release_connection(user, *conn); !ok && r.error.empty())
    r.error = "release: " + ok.error().to_string();
  return r;
}

bulk_result tcp_download(std::uint16_t port, const std::string& path, std::uint64_t expected_bytes,
                         std::atomic<std::uint64_t>& progress) {
  bulk_result r;
  auto start = clock_type::now();
  fd_guard sock{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (sock.fd < 0 || ::connect(sock.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    r.error = std::string{"connect: "} + std::strerror(errno);
    return r;
  }
  timeval timeout{30, 0};
  ::setsockopt(sock.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  auto text = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (::send(sock.fd, text.data(), text.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(text.size())) {
    r.error = std::string{"send: "} + std::strerror(errno);
    return r;
  }
  std::vector<char> buf(1 << 20);
  std::string head;
  std::uint64_t content_length = 0;
  bool in_body = false;
  for (;;) {
    auto n = ::recv(sock.fd, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      r.error = std::string{"recv: "} + std::strerror(errno);
      return r;
    }
    if (n == 0)
      break;
    ++r.chunks;
    if (in_body) {
      r.bytes += static_cast<std::uint64_t>(n);
      progress.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    } else {
      head.append(buf.data(), static_cast<std::size_t>(n));
      auto end = head.find("\r\n\r\n");
      if (end == std::string::npos)
        continue;
      if (head.compare(0, 12, "HTTP/1.1 200") != 0) {
        r.error = "not a 200: " + head.substr(0, head.find('\r'));
        return r;
      }
      std::string lower = head.substr(0, end);
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      auto cl = lower.find("\r\ncontent-length:");
      if (cl != std::string::npos)
        content_length = std::strtoull(lower.c_str() + cl + 17, nullptr, 10);
      r.bytes = head.size() - end - 4;
      in_body = true;
    }
    if (in_body && content_length > 0 && r.bytes >= content_length)
      break;
  }
  r.elapsed = clock_type::now() - start;
  if (r.bytes != expected_bytes)
    r.error = size_error(r.bytes, expected_bytes);
  return r;
}

bulk_result parallel_downloads(std::size_t streams, const std::function<bulk_result()>& download) {
  std::vector<bulk_result> results(streams);
  std::vector<std::thread> threads;
  auto start = clock_type::now();
  for (std::size_t i = 0; i < streams; ++i)
    threads.emplace_back([&results, &download, i] { results[i] = download(); });
  for (auto& t : threads)
    t.join();
  bulk_result total;
  total.elapsed = clock_type::now() - start;
  for (auto& r : results) {
    total.bytes += r.bytes;
    total.chunks += r.chunks;
    if (total.error.empty())
      total.error = r.error;
  }
  return total;
}

} // namespace sshpool::bench
