// sshpool-demo end to end: the real binary as a child process, a private sshd, in-process
// backends, and a plain HTTP client. Routing (X-User-Id and /u/<user>/), header hygiene,
// every error mapping, streaming chunk by chunk, backpressure to a client that stops
// reading, /metrics (promtool and counters), and the drain on SIGTERM.
#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>

#include <nlohmann/json.hpp>

#include "backend/http_backend.hpp"
#include "gateway/gateway_harness.hpp"
#include "support/script_backend.hpp"
#include "support/test_sshd.hpp"
#include "support/timing.hpp"

using namespace sshpool::test;
using namespace std::chrono_literals;
using sshpool::demo::http_backend;
using json = nlohmann::json;

namespace {

http_backend::options backend_options(std::string name,
                                      std::chrono::milliseconds token_delay = 50ms,
                                      std::size_t tokens = 12) {
  http_backend::options opts;
  opts.name = std::move(name);
  opts.token_delay = token_delay;
  opts.tokens = tokens;
  return opts;
}

json body_json(const http_response& res) {
  return json::parse(res.body, nullptr, false);
}

/// Whether `res` is the gateway's JSON error with `code`, and its request id matches.
void check_error(const http_response& res, int status, const std::string& code) {
  INFO("status " << res.status << " body " << res.body);
  CHECK(res.status == status);
  auto body = body_json(res);
  REQUIRE(body.is_object());
  CHECK(body["code"] == code);
  CHECK(body["message"].is_string());
  CHECK(body["error"] == body["message"]); // what Ollama's clients show
  CHECK(body["request_id"] == res.header("X-Request-Id"));
  CHECK(res.header("Content-Type") == "application/json");
}

/// A gateway serving "alice", whose service is backend-a, through a private sshd.
struct alice_gateway {
  test_sshd sshd;
  http_backend a{backend_options("backend-a")};
  temp_dir dir;
  running_gateway gw{dir.write("config.json", make_config(sshd, {{"alice", a.port()}}))};
};

std::string fetch_metrics(std::uint16_t port) {
  auto res = fetch(port, "GET", "/metrics");
  REQUIRE(res.status == 200);
  return res.body;
}

} // namespace

TEST_CASE("requests are routed by X-User-Id or /u/<user>/, with clean headers", "[gateway]") {
  test_sshd sshd;
  http_backend a{backend_options("backend-a")};
  http_backend b{backend_options("backend-b")};
  temp_dir dir;
  auto cfg = dir.write("config.json", make_config(sshd, {{"alice", a.port()}, {"bob", b.port()}}));
  running_gateway gw{cfg};

  SECTION("by path prefix, stripped before forwarding, query kept") {
    auto res = fetch(gw.port, "GET", "/u/alice/info?x=1&y=2",
                     {{"Connection", "keep-alive, X-Drop-Me"},
                      {"X-Drop-Me", "1"},
                      {"Keep-Alive", "timeout=5"},
                      {"TE", "trailers"},
                      {"Proxy-Authorization", "Basic xyz"},
                      {"X-Request-Id", "client-id-1"},
                      {"X-Custom", "kept"}});
    REQUIRE(res.status == 200);
    CHECK(res.header("X-Backend") == "backend-a");
    CHECK(res.header("X-Request-Id") == "client-id-1");
    auto info = body_json(res);
    REQUIRE(info.is_object());
    CHECK(info["backend"] == "backend-a");
    CHECK(info["path"] == "/info?x=1&y=2");
    auto& h = info["headers"];
    CHECK(h["X-Request-Id"] == "client-id-1");
    CHECK(h["X-Custom"] == "kept");
    for (const char* gone : {"Connection", "X-Drop-Me", "Keep-Alive", "TE", "Proxy-Authorization",
                             "X-User-Id", "Transfer-Encoding"})
      CHECK_FALSE(h.contains(gone));
  }

  SECTION("by header, request id generated when absent, user never forwarded") {
    auto res = fetch(gw.port, "GET", "/info", {{"X-User-Id", "bob"}});
    REQUIRE(res.status == 200);
    CHECK(res.header("X-Backend") == "backend-b");
    auto id = res.header("X-Request-Id");
    CHECK_FALSE(id.empty());
    auto info = body_json(res);
    CHECK(info["path"] == "/info");
    CHECK(info["headers"]["X-Request-Id"] == id);
    CHECK_FALSE(info["headers"].contains("X-User-Id"));
  }

  SECTION("/u/<user> alone is the root path; both ways agreeing is fine") {
    auto res = fetch(gw.port, "GET", "/u/alice?q=1", {{"X-User-Id", "alice"}});
    CHECK(res.status == 404); // the backend's own 404 for "/"
    CHECK(res.header("X-Backend") == "backend-a");
    CHECK(a.received().back().path == "/?q=1");
  }

  SECTION("keep-alive: many requests and users on one connection, bodies both ways") {
    http_client c{gw.port};
    for (int i = 0; i < 6; ++i) {
      std::string user = i % 2 == 0 ? "alice" : "bob";
      std::string body(1000 * (i + 1), static_cast<char>('a' + i));
      c.send_request("POST", "/u/" + user + "/echo", {{"Content-Type", "text/plain"}}, body);
      auto res = c.read_response();
      REQUIRE(res.status == 200);
      CHECK(res.header("X-Backend") == "backend-" + std::string{i % 2 == 0 ? "a" : "b"});
      CHECK(res.body == body);
      CHECK(res.header("Content-Length") == std::to_string(body.size())); // preserved
    }
  }

  SECTION("pipelined requests are answered in order") {
    http_client c{gw.port};
    c.send_raw("GET /u/alice/echo HTTP/1.1\r\nHost: x\r\nX-Request-Id: p1\r\n\r\n"
               "GET /u/bob/echo HTTP/1.1\r\nHost: x\r\nX-Request-Id: p2\r\n\r\n");
    auto first = c.read_response();
    auto second = c.read_response();
    CHECK(first.header("X-Request-Id") == "p1");
    CHECK(first.header("X-Backend") == "backend-a");
    CHECK(second.header("X-Request-Id") == "p2");
    CHECK(second.header("X-Backend") == "backend-b");
  }

  SECTION("trailer fields are dropped, never merged into the header section") {
    http_client c{gw.port};
    c.send_raw("POST /u/alice/info HTTP/1.1\r\nHost: x\r\nX-Request-Id: head-id\r\n"
               "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
               "X-User-Id: bob\r\nX-Request-Id: trailer-id\r\nX-Trailer: t\r\n\r\n");
    auto res = c.read_response();
    REQUIRE(res.status == 200);
    CHECK(res.header("X-Backend") == "backend-a"); // routed by the path, not the trailer
    CHECK(res.header("X-Request-Id") == "head-id");
    auto info = body_json(res);
    auto& h = info["headers"];
    CHECK(h["X-Request-Id"] == "head-id");
    CHECK_FALSE(h.contains("X-Trailer"));
    CHECK_FALSE(h.contains("X-User-Id"));
  }

  SECTION("an Upgrade request is served as plain HTTP and the connection goes on") {
    http_client c{gw.port};
    c.send_request("GET", "/u/alice/info", {{"Connection", "Upgrade"}, {"Upgrade", "h2c"}});
    auto upgraded = c.read_response();
    REQUIRE(upgraded.status == 200);
    CHECK_FALSE(body_json(upgraded)["headers"].contains("Upgrade")); // hop-by-hop
    c.send_raw("GET /u/alice/echo HTTP/1.1\r\n"); // the next request in two segments
    c.send_raw("Host: x\r\nX-Request-Id: after-upgrade\r\n\r\n");
    auto next = c.read_response();
    CHECK(next.status == 200);
    CHECK(next.header("X-Request-Id") == "after-upgrade");
  }

  SECTION("HEAD keeps the upstream length without a body; upstream statuses pass through") {
    http_client c{gw.port};
    c.send_request("HEAD", "/u/alice/bytes/1234");
    auto head = c.read_head();
    CHECK(head.status == 200);
    CHECK(head.header("Content-Length") == "1234");
    c.send_request("GET", "/u/alice/status/418");
    auto teapot = c.read_response();
    CHECK(teapot.status == 418);
  }

  CHECK(gw.proc.pid() > 0);
}

TEST_CASE("gateway errors: 400, 404, 502, 503 exhausted, 504", "[gateway][errors]") {
  test_sshd sshd;
  http_backend a{backend_options("backend-a")};
  // A port with nothing listening: a backend that is gone.
  std::uint16_t closed_port = 0;
  {
    http_backend gone{backend_options("gone")};
    closed_port = gone.port();
  }
  temp_dir dir;
  auto cfg =
      dir.write("config.json", make_config(sshd, {{"alice", a.port()}, {"closed", closed_port}},
                                           "\"max_connections_per_user\":1,\"ssh_max_channels\":1,"
                                           "\"acquire_timeout\":300,\"request_timeout\":1500"));
  running_gateway gw{cfg};

  SECTION("400 for malformed requests, with a JSON body") {
    http_client c{gw.port};
    c.send_raw("THIS IS NOT HTTP\r\n\r\n");
    auto res = c.read_response();
    check_error(res, 400, "invalid_request");
    CHECK(c.closed_by_server(5s));
    check_error(fetch(gw.port, "GET", "/api/tags"), 400, "invalid_request"); // no user
    check_error(fetch(gw.port, "GET", "/u/alice/x", {{"X-User-Id", "bob"}}), 400,
                "invalid_request");
    check_error(fetch(gw.port, "GET", "/u//x"), 400, "invalid_request");
    // Framing that another peer could read differently: 400, and the connection closes.
    for (const char* raw : {
             "GET /u/alice/echo HTTP/1.1\r\n\r\n", // no Host
             "GET /u/alice/echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
             // nginx ends a chunk-size line at a bare LF, http-parser does not
             "POST /u/alice/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "3;ext\nabc\r\n0\r\n\r\n",
             "POST /u/alice/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n"
             "3\r\nabc\r\n0\r\n\r\n",
             "POST /u/alice/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
             "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
             "POST /u/alice/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
             "Content-Length: 4\r\n\r\nabcd",
             "POST /u/alice/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
         }) {
      INFO(raw);
      http_client framed{gw.port};
      framed.send_raw(raw);
      check_error(framed.read_response(), 400, "invalid_request");
      CHECK(framed.closed_by_server(5s));
    }
    check_error(fetch(gw.port, "GET", "/x", {{"X-User-Id", "alice"}, {"X-User-Id", "bob"}}), 400,
                "invalid_request");
    check_error(fetch(gw.port, "GET", "/x", {{"X-User-Id", "alice"}, {"x-user-id", "alice"}}), 400,
                "invalid_request");
  }

  SECTION("413 and 431 for requests over the limits") {
    http_client big{gw.port};
    big.send_raw("POST /u/alice/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n");
    check_error(big.read_response(), 413, "invalid_request");
    http_client fat{gw.port};
    fat.send_raw("GET /u/alice/echo HTTP/1.1\r\nX-Big: " + std::string(70000, 'x') + "\r\n\r\n");
    check_error(fat.read_response(), 431, "invalid_request");
  }

  SECTION("404 for an unknown user") {
    check_error(fetch(gw.port, "GET", "/u/nobody/api/tags"), 404, "unknown_user");
    check_error(fetch(gw.port, "GET", "/api/tags", {{"X-User-Id", "nobody"}}), 404, "unknown_user");
  }

  SECTION("502 when the user's service does not listen") {
    check_error(fetch(gw.port, "GET", "/u/closed/api/tags"), 502, "channel_open_failed");
  }

  SECTION("503 with Retry-After when the pool is exhausted, 504 on the upstream timeout") {
    http_client holder{gw.port};
    holder.send_request("GET", "/u/alice/hang");
    REQUIRE(a.wait_for_requests(a.requests_received() + 1, 10s)); // the one lease is taken
    auto started = steady::now();
    auto busy = fetch(gw.port, "GET", "/u/alice/echo");
    check_error(busy, 503, "pool_exhausted");
    CHECK(busy.header("Retry-After") == "1");
    CHECK(ms_since(started) >= 250); // waited acquire_timeout for a lease
    auto timed_out = holder.read_response(10s);
    check_error(timed_out, 504, "request_timeout");
    auto after = fetch(gw.port, "GET", "/u/alice/echo"); // the lease came back
    CHECK(after.status == 200);
  }

  SECTION("the one lease serves every client; an idle keep-alive client holds none") {
    // The gateway keeps a freed lease for the user's next request, whichever client sends
    // it, and gives it back to the pool once the requests stop.
    http_client idle{gw.port};
    idle.send_request("GET", "/u/alice/echo");
    CHECK(idle.read_response().status == 200); // connected, idle from now on
    for (int i = 0; i < 5; ++i)
      CHECK(fetch(gw.port, "GET", "/u/alice/echo").status == 200); // not 503 pool_exhausted
    CHECK(eventually([&] {
      auto stats = json::parse(fetch(gw.port, "GET", "/stats").body, nullptr, false);
      return stats["pool"]["leases"] == 0;
    }));
    idle.send_request("GET", "/u/alice/echo");
    CHECK(idle.read_response().status == 200);
  }
}

TEST_CASE("a request the pool refuses at once gets the 503; the one waiting keeps its turn",
          "[gateway][errors]") {
  test_sshd sshd;
  http_backend a{backend_options("backend-a")};
  temp_dir dir;
  running_gateway gw{
      dir.write("config.json", make_config(sshd, {{"alice", a.port()}},
                                           "\"max_connections_per_user\":1,\"ssh_max_channels\":1,"
                                           "\"max_waiters_per_user\":1,\"acquire_timeout\":10000,"
                                           "\"request_timeout\":1000"))};
  http_client holder{gw.port};
  holder.send_request("GET", "/u/alice/hang");
  REQUIRE(a.wait_for_requests(a.requests_received() + 1, 10s)); // the one lease is taken
  http_client waiting{gw.port};
  waiting.send_request("GET", "/u/alice/echo");
  REQUIRE(eventually([&] {
    auto stats = json::parse(fetch(gw.port, "GET", "/stats").body, nullptr, false);
    return stats["pool"]["waiters"] == 1;
  }));
  // The pool's one waiter slot is taken: the newcomer is refused, not the caller waiting.
  check_error(fetch(gw.port, "GET", "/u/alice/echo"), 503, "pool_exhausted");
  check_error(holder.read_response(10s), 504, "request_timeout");
  CHECK(waiting.read_response(10s).status == 200); // served by the lease the timeout freed
}

TEST_CASE("a connection lost before any response byte: a GET is retried on another "
          "connection, a POST (maybe sent) fails with 502 connection_lost",
          "[gateway][errors]") {
  test_sshd sshd;
  http_backend backend{backend_options("backend")};
  temp_dir dir;
  running_gateway gw{dir.write("config.json", make_config(sshd, {{"alice", backend.port()}})),
                     {"LOG_LEVEL=warn"}};
  REQUIRE(fetch(gw.port, "GET", "/u/alice/echo").status == 200); // a connection, kept
  http_client get_client{gw.port};
  http_client post_client{gw.port};
  // 3 s each: the kill lands well before either is answered, even on a loaded machine.
  get_client.send_request("GET", "/u/alice/slow/3000");
  post_client.send_request("POST", "/u/alice/slow/3000", {}, "once only");
  // Both reached the backend; then every connection of sshd dies (its listener lives on).
  REQUIRE(eventually([&] { return backend.requests_received() == 3; }));
  auto pids = sshd.connection_pids();
  REQUIRE_FALSE(pids.empty());
  for (auto pid : pids)
    ::kill(pid, SIGKILL);

  auto got = get_client.read_response(20s);
  auto posted = post_client.read_response(20s);
  INFO("GET: " << got.status << " " << got.body << "\nPOST: " << posted.status << " "
               << posted.body);
  CHECK(got.status == 200);
  check_error(posted, 502, "connection_lost");
  auto received = backend.received();
  auto slow_gets = std::count_if(received.begin(), received.end(), [](auto& r) {
    return r.method == "GET" && r.path == "/slow/3000";
  });
  CHECK(slow_gets == 2);
  // The POST, which the service may have acted on, reached it once.
  CHECK(std::count_if(received.begin(), received.end(),
                      [](auto& r) { return r.method == "POST"; }) == 1);
  auto metrics = fetch(gw.port, "GET", "/metrics").body;
  // One retry, or two if the first found another connection of the dead sshd not yet known
  // dead.
  auto retries = metric_value(metrics, "sshpool_gateway_upstream_retries_total");
  CHECK((retries == "1" || retries == "2"));
}

TEST_CASE("hostile upstreams: a refusal by sshd's policy, a refused connect, a bare CR and an "
          "endless stream each get their own code",
          "[gateway]") {
  // Issue #12. "script" reaches a misbehaving backend; sshd's PermitOpen lets "down" reach
  // a port where nothing listens any more, and refuses "denied" by its policy.
  script_backend backend;
  script_backend gone;
  gone.stop_listening();
  script_backend other;
  sshd_options opts;
  opts.extra_config = {"PermitOpen 127.0.0.1:" + std::to_string(backend.port()) +
                       " 127.0.0.1:" + std::to_string(gone.port())};
  test_sshd sshd{opts};
  temp_dir dir;
  auto cfg = dir.write(
      "config.json",
      make_config(sshd,
                  {{"script", backend.port()}, {"down", gone.port()}, {"denied", other.port()}},
                  "\"max_response_bytes\":1048576"));
  running_gateway gw{cfg};

  check_error(fetch(gw.port, "GET", "/u/denied/x"), 502, "forwarding_prohibited");
  CHECK(gw.proc.wait_for_output("code=forwarding_prohibited", 5s, true));
  CHECK(gw.proc.wait_for_output("SSH reason 1 (administratively prohibited)", 5s, true));
  check_error(fetch(gw.port, "GET", "/u/down/x"), 502, "channel_open_failed");
  CHECK(gw.proc.wait_for_output("SSH reason 2 (connect failed)", 5s, true));
  CHECK_FALSE(other.wait_for_requests(1, 0ms));

  auto bare = fetch(gw.port, "GET", "/u/script/bare-cr");
  check_error(bare, 502, "bad_response");
  CHECK(bare.header("et-Cookie").empty());

  http_client c{gw.port};
  c.send_request("GET", "/u/script/endless");
  auto endless = c.read_response(20s);
  CHECK(endless.status == 200);
  CHECK(endless.truncated);
  CHECK(endless.body.size() <= std::size_t{1} << 20);
  CHECK(gw.proc.wait_for_output("code=response_too_large", 10s, true));
  CHECK(eventually([&] {
    return metric_value(fetch_metrics(gw.port), "sshpool_gateway_requests_total{status=\"200\","
                                                "code=\"response_too_large\"}") == "1";
  }));
}

TEST_CASE("a stream reaches the client chunk by chunk as the backend produces it",
          "[gateway][stream]") {
  test_sshd sshd;
  constexpr auto delay = 150ms;
  constexpr std::size_t tokens = 8;
  http_backend a{backend_options("backend-a", delay, tokens)};
  temp_dir dir;
  auto cfg = dir.write("config.json", make_config(sshd, {{"alice", a.port()}}));
  running_gateway gw{cfg};
  fetch(gw.port, "GET", "/u/alice/echo"); // the SSH connection is up

  http_client c{gw.port};
  auto sent = steady::now();
  c.send_request("POST", "/u/alice/api/chat", {{"Content-Type", "application/json"}},
                 R"({"model":"demo-llm","messages":[{"role":"user","content":"hi"}]})");
  auto res = c.read_response(20s);
  REQUIRE(res.status == 200);
  CHECK(res.chunked);
  CHECK(res.header("Content-Type") == "application/x-ndjson");
  CHECK_FALSE(res.truncated);
  // The body is the backend's NDJSON lines, all of them, in order.
  std::size_t lines = std::count(res.body.begin(), res.body.end(), '\n');
  CHECK(lines == tokens + 1);
  REQUIRE(res.pieces.size() >= tokens);
  auto first_ms = ms(res.pieces.front().first - sent);
  auto last_ms = ms(res.pieces.back().first - sent);
  // The backend sends token i at i * delay; the first must not wait for the last.
  INFO("first piece after " << first_ms << " ms, last after " << last_ms << " ms");
  CHECK(first_ms < 150 * 3);
  CHECK(last_ms >= static_cast<long long>(delay.count() * (tokens - 1)));
  CHECK(last_ms - first_ms >= static_cast<long long>(delay.count() * (tokens - 3)));
}

TEST_CASE("a client that leaves mid-stream cancels it upstream", "[gateway][stream]") {
  test_sshd sshd;
  http_backend a{backend_options("backend-a", 200ms, 50)};
  temp_dir dir;
  auto cfg = dir.write("config.json", make_config(sshd, {{"alice", a.port()}}));
  running_gateway gw{cfg};
  {
    http_client c{gw.port};
    c.send_request("POST", "/u/alice/api/chat", {}, "{}");
    auto head = c.read_head();
    REQUIRE(head.status == 200);
  } // closed after the head, 10 s before the stream would end
  // The engine abandons the stream: its channel closes, and the backend sees it.
  CHECK(eventually([&] { return a.open_connections() == 0; }));
  CHECK(eventually([&] {
    auto stats = json::parse(fetch(gw.port, "GET", "/stats").body, nullptr, false);
    return stats["gateway"]["forwards_in_flight"] == 0 && stats["pool"]["leases"] == 0;
  }));
  auto metrics = fetch_metrics(gw.port);
  CHECK(metric_value(metrics,
                     "sshpool_gateway_requests_total{status=\"200\",code=\"client_closed\"}") ==
        "1");
}

TEST_CASE("a client that stops reading does not make the gateway buffer the stream",
          "[gateway][backpressure]") {
  test_sshd sshd;
  http_backend a{backend_options("backend-a")};
  temp_dir dir;
  // A request timeout far shorter than the stall: a consumer holding the stream back is
  // not an idle upstream.
  auto cfg = dir.write("config.json",
                       make_config(sshd, {{"alice", a.port()}},
                                   "\"max_response_bytes\":1000000000,\"request_timeout\":1000"));
  running_gateway gw{cfg};
  fetch(gw.port, "GET", "/u/alice/bytes/100000"); // warm: connection, channel, allocator
  auto baseline = gw.proc.rss_bytes();
  REQUIRE(baseline > 0);

  http_client lazy{gw.port, 16384};
  lazy.send_request("GET", "/u/alice/bytes/200000000");
  auto head = lazy.read_head();
  REQUIRE(head.status == 200);
  CHECK(head.header("Content-Length") == "200000000");
  // Wait until the flow stalls: the bytes waiting in the client's socket stop growing
  // (every buffer between the backend and the client is full).
  const auto last = settled([&] { return lazy.pending_bytes(); });
  REQUIRE(last > 0);
  auto rss = gw.proc.rss_bytes();
  auto growth = rss > baseline ? rss - baseline : 0;
  INFO("RSS " << baseline / 1024 << " KiB -> " << rss / 1024 << " KiB; the client holds " << last
              << " bytes of 200000000");
#ifdef __SANITIZE_ADDRESS__
  // ASan's quarantine keeps freed memory resident (up to 256 MiB by default); a buffered
  // body (200 MB) would still show far above this bound.
  constexpr std::size_t growth_bound = std::size_t{96} << 20;
#else
  constexpr std::size_t growth_bound = std::size_t{24} << 20;
#endif
  CHECK(growth < growth_bound);
  // Stalled throughout an interval longer than request_timeout (1000 ms): an upstream idle
  // as long would be cut with 504 by now.
  constexpr auto stall = 1500ms;
  hold_for(stall);
  // Paused, not cut: the stream is still in flight and its lease held.
  auto stats = json::parse(fetch(gw.port, "GET", "/stats").body, nullptr, false);
  CHECK(stats["gateway"]["forwards_in_flight"] == 1);
  CHECK(stats["pool"]["leases"] == 1);
  gw.proc.wait_for_output("client_output_overflow", 100ms, true);
  CHECK(gw.proc.err().find("client_output_overflow") == std::string::npos);
  // Dropping the client ends the stream upstream and frees everything.
  lazy.close();
  CHECK(eventually([&] { return a.open_connections() == 0; }));
  CHECK(eventually([&] {
    return metric_value(fetch_metrics(gw.port),
                        "sshpool_gateway_requests_total{status=\"200\",code=\"client_closed\"}") ==
           "1";
  }));
  CHECK(fetch(gw.port, "GET", "/u/alice/echo").status == 200);
}

TEST_CASE_METHOD(alice_gateway, "one client's sequential requests keep using one SSH connection",
                 "[gateway]") {
  // The client sends each request as soon as it has the previous response. The lease must
  // be back in the pool by then, or the pool opens a second connection.
  http_client c{gw.port};
  for (int i = 0; i < 60; ++i) {
    c.send_request("GET", "/u/alice/bytes/" + std::to_string(i));
    CHECK(c.read_response().status == 200);
    c.send_request("HEAD", "/u/alice/bytes/100");
    CHECK(c.read_head().status == 200);
    c.send_request("GET", "/u/alice/status/204");
    CHECK(c.read_head().status == 204);
  }
  auto text = fetch(gw.port, "GET", "/metrics").body;
  CHECK(metric_value(text, "sshpool_ssh_handshakes_total") == "1");
  CHECK(metric_value(text, "sshpool_pool_connections") == "1");
}

TEST_CASE_METHOD(alice_gateway, "/metrics passes promtool and counts the requests sent",
                 "[gateway][metrics]") {
  for (int i = 0; i < 3; ++i)
    CHECK(fetch(gw.port, "GET", "/u/alice/api/tags").status == 200);
  CHECK(fetch(gw.port, "GET", "/u/alice/status/500").status == 500);
  CHECK(fetch(gw.port, "GET", "/u/nobody/x").status == 404);
  CHECK(fetch(gw.port, "GET", "/no-user").status == 400);
  CHECK(fetch(gw.port, "GET", "/healthz").status == 200); // operational: not counted
  CHECK(fetch(gw.port, "GET", "/readyz").status == 200);
  // The lease the gateway kept for alice's next request goes back to the pool.
  CHECK(eventually([&] {
    auto stats = json::parse(fetch(gw.port, "GET", "/stats").body, nullptr, false);
    return stats["pool"]["leases"] == 0;
  }));

  auto res = fetch(gw.port, "GET", "/metrics");
  REQUIRE(res.status == 200);
  CHECK(res.header("Content-Type").rfind("text/plain; version=0.0.4", 0) == 0);
  auto& text = res.body;
  CHECK(metric_value(text, "sshpool_gateway_requests_total{status=\"200\",code=\"ok\"}") == "3");
  CHECK(metric_value(text, "sshpool_gateway_requests_total{status=\"500\",code=\"ok\"}") == "1");
  CHECK(metric_value(
            text, "sshpool_gateway_requests_total{status=\"404\",code=\"unknown_user\"}") == "1");
  CHECK(metric_value(text,
                     "sshpool_gateway_requests_total{status=\"400\",code=\"invalid_request\"}") ==
        "1");
  CHECK(metric_value(text, "sshpool_gateway_request_duration_seconds_count") == "6");
  CHECK(metric_value(text, "sshpool_upstream_requests_total{result=\"ok\"}") == "4");
  CHECK(metric_value(text, "sshpool_pool_connections") == "1");
  CHECK(metric_value(text, "sshpool_pool_connections_by_state{state=\"idle\"}") == "1");
  CHECK(metric_value(text, "sshpool_pool_users") == "1");
  CHECK(metric_value(text, "sshpool_ssh_handshakes_total") == "1");
  CHECK(metric_value(text, "sshpool_ssh_handshake_duration_seconds_count") == "1");
  CHECK(metric_value(text, "sshpool_ssh_channel_open_duration_seconds_count") != "");
  CHECK(metric_value(text, "sshpool_ready") == "1");
  for (const char* family :
       {"sshpool_cleanup_runs_total", "sshpool_cleanup_closed_connections_total",
        "sshpool_ssh_keepalive_failures_total", "sshpool_ssh_batched_writes_total",
        "sshpool_upstream_received_bytes_total", "sshpool_gateway_sent_bytes_total",
        "sshpool_pool_leases", "sshpool_pool_waiters"})
    CHECK(metric_value(text, family) != "");

  auto stats = json::parse(fetch(gw.port, "GET", "/stats").body, nullptr, false);
  REQUIRE(stats.is_object());
  CHECK(stats["pool"]["connections"] == 1);
  CHECK(stats["upstream"]["requests"]["ok"] == 4);
  CHECK(stats["ready"] == true);

  check_promtool(dir, text);
}

TEST_CASE("SIGTERM: /readyz turns 503 and new requests are refused while streams in flight "
          "complete; the report is printed and the exit code is 0",
          "[gateway][shutdown]") {
  test_sshd sshd;
  constexpr std::size_t tokens = 10;
  http_backend a{backend_options("backend-a", 200ms, tokens)};
  temp_dir dir;
  auto cfg = dir.write("config.json",
                       make_config(sshd, {{"alice", a.port()}}, "\"shutdown_grace_period\":20000"));
  running_gateway gw{cfg};
  CHECK(fetch(gw.port, "GET", "/readyz").status == 200);

  http_client streaming{gw.port};
  streaming.send_request("POST", "/u/alice/api/chat", {}, "{}");
  auto head = streaming.read_head();
  REQUIRE(head.status == 200);
  gw.proc.signal(SIGTERM);
  REQUIRE(gw.proc.wait_for_output("signal received", 10s, true));
  auto ready = fetch(gw.port, "GET", "/readyz");
  check_error(ready, 503, "shutting_down");
  check_error(fetch(gw.port, "GET", "/u/alice/echo"), 503, "shutting_down");
  CHECK(fetch(gw.port, "GET", "/healthz").status == 200);

  streaming.read_body(head, 20s);
  CHECK_FALSE(head.truncated);
  CHECK(std::count(head.body.begin(), head.body.end(), '\n') ==
        static_cast<long>(tokens + 1)); // every token and the summary line

  REQUIRE(gw.proc.wait_for_output("shutdown report:", 20s));
  int code = gw.proc.wait_exit(10s);
  INFO(gw.proc.out() << gw.proc.err());
  CHECK(code == 0);
  CHECK(gw.proc.out().find("in_flight_at_start=1 completed_during_drain=1 cut=0 forced=false") !=
        std::string::npos);
  CHECK(gw.proc.err().find("shutdown_report") != std::string::npos);
}
