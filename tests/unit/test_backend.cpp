// Unit tests of the demo/test HTTP backend (sshpool::demo::http_backend).
//
// The backend is the peer every integration test and benchmark talks to, so its framing
// must be right independently of sshpool's own HTTP code: these tests drive it with a plain
// blocking socket client and check the raw bytes. Every socket has SO_RCVTIMEO/SO_SNDTIMEO
// so a bug fails a test instead of hanging it; nothing sleeps, ordering is asserted through
// events (responses received, counters observed).
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "backend/http_backend.hpp"
#include "sshpool/text.hpp"
#include "support/requests.hpp"
#include "support/timing.hpp"

namespace {

using sshpool::demo::http_backend;
using sshpool::test::eventually;
using sshpool::test::pattern;
using sshpool::text::lower;

http_backend::options test_options() {
  http_backend::options opts;
  opts.name = "test-backend";
  opts.token_delay = std::chrono::milliseconds(1);
  opts.tokens = 12;
  return opts;
}

/// A parsed response.
struct response {
  int status = 0;
  std::string status_line;
  /// Header names lowercased.
  std::map<std::string, std::string> headers;
  std::string body;
  /// Chunk payloads when the body was chunked.
  std::vector<std::string> chunks;

  bool has(const std::string& name) const { return headers.count(name) != 0; }
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

/// A blocking TCP client with receive/send timeouts and a read buffer.
class client {
public:
  explicit client(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0)
      throw std::runtime_error("socket failed");
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int on = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      throw std::runtime_error(std::string("connect failed: ") + std::strerror(errno));
    }
  }
  ~client() { ::close(fd_); }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  void send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        throw std::runtime_error(std::string("send failed: ") + std::strerror(errno));
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

  /// Everything up to and including `delim`.
  std::string read_until(std::string_view delim) {
    std::size_t pos;
    while ((pos = buf_.find(delim)) == std::string::npos)
      if (!fill())
        throw std::runtime_error("EOF before delimiter");
    return take(pos + delim.size());
  }

  std::string read_exact(std::size_t n) {
    while (buf_.size() < n)
      if (!fill())
        throw std::runtime_error("EOF before " + std::to_string(n) + " bytes");
    return take(n);
  }

  /// Everything until the peer's EOF.
  std::string read_to_eof() {
    while (fill()) {
    }
    return take(buf_.size());
  }

  /// True if no byte is available right now (nothing buffered, recv would block).
  bool nothing_pending() {
    if (!buf_.empty())
      return false;
    char c;
    ssize_t n = ::recv(fd_, &c, 1, MSG_DONTWAIT | MSG_PEEK);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }

  /// Sends `request` and reads its response.
  response exchange(std::string_view request) {
    send(request);
    return read_response();
  }

  /// Reads one response; `head_request` says the body is absent whatever the headers say.
  response read_response(bool head_request = false) {
    response r;
    std::string head = read_until("\r\n\r\n");
    std::size_t eol = head.find("\r\n");
    r.status_line = head.substr(0, eol);
    if (r.status_line.compare(0, 9, "HTTP/1.1 ") != 0)
      throw std::runtime_error("bad status line: " + r.status_line);
    r.status = std::stoi(r.status_line.substr(9, 3));
    for (std::size_t pos = eol + 2; pos < head.size() - 2;) {
      std::size_t end = head.find("\r\n", pos);
      std::string line = head.substr(pos, end - pos);
      std::size_t colon = line.find(':');
      if (colon == std::string::npos)
        throw std::runtime_error("bad header line: " + line);
      std::size_t value = line.find_first_not_of(' ', colon + 1);
      r.headers[lower(line.substr(0, colon))] =
          value == std::string::npos ? std::string() : line.substr(value);
      pos = end + 2;
    }
    if (head_request || r.status == 204 || r.status == 304)
      return r;
    if (lower(r.header("transfer-encoding")) == "chunked") {
      for (;;) {
        std::string size_line = read_until("\r\n");
        std::size_t size = std::stoul(size_line, nullptr, 16);
        if (size == 0) {
          if (read_exact(2) != "\r\n")
            throw std::runtime_error("trailers not expected");
          break;
        }
        std::string data = read_exact(size);
        if (read_exact(2) != "\r\n")
          throw std::runtime_error("chunk not followed by CRLF");
        r.body += data;
        r.chunks.push_back(std::move(data));
      }
    } else if (r.has("content-length")) {
      r.body = read_exact(std::stoul(r.header("content-length")));
    } else {
      r.body = read_to_eof();
    }
    return r;
  }

private:
  /// One recv into the buffer; false on EOF (or reset), throws on timeout.
  bool fill() {
    char tmp[65536];
    for (;;) {
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n > 0) {
        buf_.append(tmp, static_cast<std::size_t>(n));
        return true;
      }
      if (n == 0 || (n < 0 && errno == ECONNRESET))
        return false;
      if (errno != EINTR)
        throw std::runtime_error(std::string("recv failed: ") + std::strerror(errno));
    }
  }

  std::string take(std::size_t n) {
    std::string s = buf_.substr(0, n);
    buf_.erase(0, n);
    return s;
  }

  int fd_;
  std::string buf_;
};

std::string get(std::string_view target, std::string_view extra_headers = "") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" + std::string(extra_headers) +
         "\r\n";
}

std::string post(std::string_view target, std::string_view body,
                 std::string_view extra_headers = "") {
  return "POST " + std::string(target) +
         " HTTP/1.1\r\nHost: test\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         std::string(extra_headers) + "\r\n" + std::string(body);
}

/// A backend with the test options and a client connected to it.
struct connected {
  http_backend backend{test_options()};
  client c{backend.port()};
};

} // namespace

TEST_CASE("echo returns the body and describes the request", "[backend]") {
  http_backend backend(test_options());
  REQUIRE(backend.port() != 0);
  client c(backend.port());
  response r = c.exchange(
      post("/echo?x=1&y=2", "hello world", "Content-Type: text/plain\r\nX-Request-Id: req-42\r\n"));
  CHECK(r.status == 200);
  CHECK(r.status_line == "HTTP/1.1 200 OK");
  CHECK(r.body == "hello world");
  CHECK(r.header("content-length") == "11");
  CHECK(r.header("content-type") == "text/plain");
  CHECK(r.header("x-backend") == "test-backend");
  CHECK(r.header("x-method") == "POST");
  CHECK(r.header("x-path") == "/echo?x=1&y=2");
  CHECK(r.header("x-request-id") == "req-42");

  response empty = c.exchange(get("/echo"));
  CHECK(empty.body.empty());
  CHECK(empty.header("content-type") == "application/octet-stream");
  CHECK_FALSE(empty.has("x-request-id"));
}

TEST_CASE_METHOD(connected, "keep-alive serves several requests on one connection", "[backend]") {
  CHECK(c.exchange(post("/echo", "first")).body == "first");
  response r = c.exchange(post("/echo", "second"));
  CHECK(r.body == "second");
  CHECK_FALSE(r.has("connection"));
  CHECK(backend.connections_accepted() == 1);
  CHECK(backend.requests_received() == 2);
}

TEST_CASE_METHOD(connected, "pipelined requests are answered in order", "[backend]") {
  // The delayed answer comes first: the later ones must wait for it.
  response slow = c.exchange(get("/slow/20") + post("/echo", "one") + get("/status/503") +
                             post("/echo", "two"));
  CHECK(slow.status == 200);
  CHECK(slow.body == "slow");
  CHECK(c.read_response().body == "one");
  CHECK(c.read_response().status == 503);
  CHECK(c.read_response().body == "two");
  CHECK(c.nothing_pending());
}

TEST_CASE_METHOD(connected, "/bytes/N sends exactly N pattern bytes", "[backend]") {
  response r = c.exchange(get("/bytes/1048576"));
  CHECK(r.status == 200);
  CHECK(r.header("content-length") == "1048576");
  REQUIRE(r.body.size() == 1048576);
  CHECK(r.body == pattern(1048576));

  response none = c.exchange(get("/bytes/0"));
  CHECK(none.header("content-length") == "0");
  CHECK(none.body.empty());

  c.send("HEAD /bytes/500 HTTP/1.1\r\nHost: test\r\n\r\n");
  response head = c.read_response(true);
  CHECK(head.header("content-length") == "500");
  CHECK(c.exchange(get("/bytes/3?ignored=1")).body == "abc"); // the HEAD answer had no body
}

TEST_CASE_METHOD(connected, "/chunked/N/K frames N chunks of K bytes", "[backend]") {
  c.send(get("/chunked/3/5"));
  std::string head = c.read_until("\r\n\r\n");
  CHECK(head.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
  CHECK(head.find("Content-Length") == std::string::npos);
  CHECK(c.read_until("0\r\n\r\n") == "5\r\nabcde\r\n5\r\nfghij\r\n5\r\nklmno\r\n0\r\n\r\n");

  response r = c.exchange(get("/chunked/4/100000"));
  REQUIRE(r.chunks.size() == 4);
  for (const auto& chunk : r.chunks)
    CHECK(chunk.size() == 100000);
  CHECK(r.body == pattern(400000));
  CHECK(c.nothing_pending());
}

TEST_CASE_METHOD(connected, "/close/N is delimited by the server closing", "[backend]") {
  response r = c.exchange(get("/close/100000")); // no length, not chunked: reads until EOF
  CHECK(r.status == 200);
  CHECK_FALSE(r.has("content-length"));
  CHECK_FALSE(r.has("transfer-encoding"));
  CHECK(r.header("connection") == "close");
  CHECK(r.body == pattern(100000));
}

TEST_CASE_METHOD(connected, "/status/CODE answers that status", "[backend]") {
  response r = c.exchange(get("/status/503"));
  CHECK(r.status_line == "HTTP/1.1 503 Service Unavailable");
  CHECK(r.body == "503 Service Unavailable\n");
  CHECK(r.header("x-backend") == "test-backend");

  response no_content = c.exchange(get("/status/204"));
  CHECK(no_content.status == 204);
  CHECK_FALSE(no_content.has("content-length"));

  CHECK(c.exchange(get("/status/404")).status_line == "HTTP/1.1 404 Not Found");
  CHECK(c.exchange(get("/status/99")).status == 400);
  CHECK(c.exchange(get("/status/abc")).status == 400);
}

TEST_CASE("Connection: close and HTTP/1.0 close after the response", "[backend]") {
  http_backend backend(test_options());
  SECTION("Connection: close") {
    client c(backend.port());
    response r = c.exchange(get("/echo", "Connection: close\r\n") + get("/echo"));
    CHECK(r.status == 200);
    CHECK(r.header("connection") == "close");
    CHECK(c.read_to_eof().empty()); // the pipelined second request is not answered
  }
  SECTION("HTTP/1.0 without keep-alive") {
    client c(backend.port());
    response r = c.exchange("GET /echo HTTP/1.0\r\n\r\n");
    CHECK(r.header("connection") == "close");
    CHECK(c.read_to_eof().empty());
  }
  SECTION("HTTP/1.0 with keep-alive") {
    client c(backend.port());
    response r = c.exchange("GET /bytes/3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    CHECK(r.header("connection") == "keep-alive");
    CHECK(r.body == "abc");
    CHECK(c.exchange("GET /bytes/2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").body == "ab");
  }
  SECTION("HTTP/1.0 gets a close-delimited stream instead of chunks") {
    client c(backend.port());
    response r = c.exchange("GET /chunked/2/3 HTTP/1.0\r\n\r\n");
    CHECK_FALSE(r.has("transfer-encoding"));
    CHECK(r.body == "abcdef");
  }
  SECTION("client half-close still gets the answer") {
    client c(backend.port());
    c.send(get("/slow/5") + get("/bytes/4"));
    c.shutdown_write();
    CHECK(c.read_response().body == "slow");
    CHECK(c.read_response().body == "abcd");
    CHECK(c.read_to_eof().empty());
  }
}

TEST_CASE_METHOD(connected, "a 1 MiB request body is echoed", "[backend]") {
  std::string body = pattern(1 << 20, 7);
  response r = c.exchange(post("/echo", body));
  CHECK(r.status == 200);
  CHECK(r.body == body);

  // Chunked request bodies are decoded.
  CHECK(c.exchange("POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
            .body == "abcdefg");
}

TEST_CASE_METHOD(connected, "Expect: 100-continue gets an interim response", "[backend]") {
  c.send("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n"
         "Expect: 100-continue\r\n\r\n");
  CHECK(c.read_until("\r\n\r\n") == "HTTP/1.1 100 Continue\r\n\r\n");
  CHECK(c.exchange("data").body == "data");
}

TEST_CASE("malformed and oversized requests are rejected and closed", "[backend]") {
  http_backend backend(test_options());
  SECTION("garbage") {
    client c(backend.port());
    response r = c.exchange("THIS IS NOT HTTP\r\n\r\n");
    CHECK(r.status == 400);
    CHECK(r.header("connection") == "close");
    CHECK(r.header("x-backend") == "test-backend");
    CHECK(c.read_to_eof().empty());
  }
  SECTION("garbage after a good request: the good one is answered first") {
    client c(backend.port());
    CHECK(c.exchange(post("/echo", "ok") + "\x01\x02 nonsense\r\n\r\n").body == "ok");
    CHECK(c.read_response().status == 400);
    CHECK(c.read_to_eof().empty());
  }
  SECTION("declared body over 64 MiB") {
    client c(backend.port());
    CHECK(c.exchange("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100000000\r\n\r\n")
              .status == 413);
    CHECK(c.read_to_eof().empty());
  }
  SECTION("head over 64 KiB") {
    client c(backend.port());
    response r = c.exchange("GET /echo HTTP/1.1\r\nX-Big: " + std::string(70000, 'x') + "\r\n\r\n");
    CHECK((r.status == 431 || r.status == 400));
    CHECK(c.read_to_eof().empty());
  }
  CHECK(backend.requests_received() <= 1);
}

TEST_CASE("/slow does not block other connections", "[backend]") {
  http_backend backend(test_options());
  client slow(backend.port());
  client fast(backend.port());
  slow.send(get("/slow/1000"));
  REQUIRE(eventually([&] { return backend.requests_received() == 1; }));
  fast.send(post("/echo", "fast"));
  CHECK(fast.read_response().body == "fast");
  // The fast answer is complete while the slow one has not started.
  CHECK(slow.nothing_pending());
  auto order = backend.received();
  REQUIRE(order.size() == 2);
  CHECK(order[0].path == "/slow/1000");
  CHECK(order[1].path == "/echo");
  response r = slow.read_response();
  CHECK(r.status == 200);
  CHECK(r.body == "slow");
}

TEST_CASE("/hang never answers and the connection closes when the client leaves", "[backend]") {
  http_backend backend(test_options());
  {
    client c(backend.port());
    c.send(get("/hang"));
    REQUIRE(eventually([&] { return backend.requests_received() == 1; }));
    client other(backend.port());
    other.send(get("/bytes/1"));
    CHECK(other.read_response().body == "a");
    CHECK(c.nothing_pending());
    CHECK(backend.open_connections() == 2);
  }
  CHECK(eventually([&] { return backend.open_connections() == 0; }));
}

TEST_CASE_METHOD(connected, "received() records what arrived", "[backend]") {
  std::string big(100000, 'z');
  response info =
      c.exchange(get("/info?a=b", "X-Test: 1\r\n") + post("/echo", big, "X-Other: two\r\n"));
  CHECK(info.header("content-type") == "application/json");
  CHECK(info.body == R"({"backend":"test-backend","method":"GET","path":"/info?a=b",)"
                     R"("body_bytes":0,"headers":{"Host":"test","X-Test":"1"}})");
  CHECK(c.read_response().body == big);

  CHECK(backend.requests_received() == 2);
  auto got = backend.received();
  REQUIRE(got.size() == 2);
  CHECK(got[0].method == "GET");
  CHECK(got[0].path == "/info?a=b");
  REQUIRE(got[0].headers.size() == 2);
  CHECK(got[0].headers[1] == std::make_pair(std::string("X-Test"), std::string("1")));
  CHECK(got[0].body_size == 0);
  CHECK(got[1].method == "POST");
  CHECK(got[1].body_size == 100000);
  CHECK(got[1].body == std::string(65536, 'z'));
}

TEST_CASE_METHOD(connected, "/info escapes JSON strings", "[backend]") {
  response r = c.exchange(get("/info", "X-Q: a\"b\\c\tz\r\nx-q: second\r\n"));
  CHECK(r.body.find(R"("X-Q":"a\"b\\c\tz, second")") != std::string::npos);
}

TEST_CASE_METHOD(connected, "unknown routes get a 404 JSON body", "[backend]") {
  response r = c.exchange(get("/nowhere?q=1"));
  CHECK(r.status == 404);
  CHECK(r.header("content-type") == "application/json");
  CHECK(r.body == R"({"error":"not found","path":"/nowhere"})");
  CHECK(c.exchange(get("/api/chat")).status == 404);
}

TEST_CASE_METHOD(connected, "the Ollama-like API lists a model and streams tokens", "[backend]") {
  response tags = c.exchange(get("/api/tags"));
  CHECK(tags.status == 200);
  CHECK(tags.body.find(R"({"models":[{"name":"demo-llm:latest")") == 0);

  response chat = c.exchange(
      post("/api/chat", R"({"model":"demo-llm","messages":[{"role":"user","content":"hi"}]})"));
  CHECK(chat.status == 200);
  CHECK(chat.header("content-type") == "application/x-ndjson");
  REQUIRE(chat.chunks.size() == 13); // one chunk per line
  for (std::size_t i = 0; i < chat.chunks.size(); ++i) {
    const std::string& line = chat.chunks[i];
    CHECK(line.find('\n') == line.size() - 1);
    CHECK(line.find(R"({"model":"demo-llm","created_at":")") == 0);
    if (i < 12) {
      CHECK(line.find(R"("message":{"role":"assistant","content":")") != std::string::npos);
      CHECK(line.find(R"("done":false})") != std::string::npos);
    } else {
      CHECK(line.find(R"("done":true)") != std::string::npos);
      CHECK(line.find(R"("eval_count":12})") != std::string::npos);
      CHECK(line.find(R"("total_duration":)") != std::string::npos);
    }
  }

  response single =
      c.exchange(post("/api/chat", R"({"model":"demo-llm","stream": false,"messages":[]})"));
  CHECK(single.header("content-type") == "application/json");
  CHECK(single.chunks.empty());
  CHECK(single.body.find(R"("message":{"role":"assistant","content":"Hello from )") !=
        std::string::npos);
  CHECK(single.body.find(R"("done":true)") != std::string::npos);
}

TEST_CASE("a chat stream with no tokens only sends the summary", "[backend]") {
  auto opts = test_options();
  opts.tokens = 0;
  http_backend backend(opts);
  client c(backend.port());
  response r = c.exchange(post("/api/chat", "{}"));
  REQUIRE(r.chunks.size() == 1);
  CHECK(r.chunks[0].find(R"("eval_count":0})") != std::string::npos);
}

TEST_CASE("the destructor stops while clients are connected", "[backend]") {
  std::vector<std::unique_ptr<client>> clients;
  {
    http_backend backend(test_options());
    for (int i = 0; i < 4; ++i)
      clients.push_back(std::make_unique<client>(backend.port()));
    clients[0]->send(get("/hang"));
    clients[1]->send(get("/bytes/104857600")); // never read: the server's sends block
    clients[2]->send("GET /echo HTTP/1.1\r\nHost: partial");
    clients[3]->send(post("/api/chat", "{}"));
    REQUIRE(eventually([&] { return backend.open_connections() == 4; }));
    REQUIRE(eventually([&] { return backend.requests_received() == 3; }));
  }
  // The server is gone: every client sees its connection end.
  CHECK(clients[0]->read_to_eof().empty());
  CHECK(clients[2]->read_to_eof().empty());
}

TEST_CASE("binding a port in use throws", "[backend]") {
  http_backend first(test_options());
  auto opts = test_options();
  opts.port = first.port();
  CHECK_THROWS_AS(http_backend(opts), std::system_error);
}
