// sshpool-demo's client slots under attack: thousands of connections that drip a request head
// or send nothing must not keep a normal client out. The head deadline (header_timeout),
// the cap per source address (max_clients_per_source), shedding the longest-waiting
// connection without a request when full, and 503 at once when every slot carries a
// request. The real binary as a child process, a private sshd, an in-process backend, and
// the flood of tests/support/slow_flood.
#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/http_backend.hpp"
#include "gateway/gateway_harness.hpp"
#include "support/slow_flood.hpp"
#include "support/test_sshd.hpp"
#include "support/timing.hpp"

using namespace sshpool::test;
using namespace std::chrono_literals;
using sshpool::demo::http_backend;

namespace {

/// `count` requests by a well-behaved client, each on a fresh connection (as a new client
/// arrives while the flood holds the slots); the slowest one's time to its whole response.
long long normal_client(std::uint16_t port, int count) {
  long long worst = 0;
  for (int i = 0; i < count; ++i) {
    auto start = steady::now();
    auto res = fetch(port, "GET", "/u/alice/echo");
    auto took = ms_since(start);
    INFO("request " << i << ": status " << res.status << " after " << took << " ms");
    CHECK(res.status == 200);
    worst = std::max(worst, took);
  }
  return worst;
}

} // namespace

TEST_CASE("a flood of slow or idle connections does not keep a normal client out",
          "[gateway][slots]") {
  REQUIRE(raise_fd_limit() >= 16000);
  test_sshd sshd;
  http_backend backend{http_backend::options{}};
  temp_dir dir;
  // The defaults: max_clients 1024, max_clients_per_source 256, header_timeout 5 s.
  auto cfg = dir.write("config.json", make_config(sshd, {{"alice", backend.port()}}));
  running_gateway gw{cfg};
  REQUIRE(fetch(gw.port, "GET", "/u/alice/echo").status == 200); // the SSH connection is up

  // The gateway holds its 1,024 slots (the rest of a flood waits in its backlog), and a
  // normal client that arrives meanwhile is served within 2 s.
  auto served_under = [&](const flood_options& opts) {
    slow_flood flood{opts};
    REQUIRE(flood.wait_established(30s));
    CHECK(
        eventually([&] { return metric(gw.port, "sshpool_gateway_client_connections") >= 1000; }));
    auto worst = normal_client(gw.port, 20);
    INFO("slowest normal request: " << worst << " ms");
    CHECK(worst < 2000);
    CHECK(metric(gw.port, "sshpool_gateway_client_connections_shed_total") > 0);
    CHECK(flood.closed_by_server() > 0);
  };
  SECTION("2,000 connections that send a head byte every 3 s, from 32 addresses") {
    served_under({gw.port, 2000, 3000ms, 32});
  }
  SECTION("5,000 idle connections") {
    served_under({gw.port, 5000, 0ms, 32});
  }

  SECTION("one address holds at most max_clients_per_source slots") {
    slow_flood flood{{gw.port, 400, 3000ms, 1}};
    REQUIRE(flood.wait_established(20s));
    // Each of its connections over 256 takes the slot of its own oldest one.
    CHECK(normal_client(gw.port, 5) < 2000);
    REQUIRE(eventually([&] { return flood.closed_by_server() >= 144; }));
    auto open = metric(gw.port, "sshpool_gateway_client_connections");
    INFO("open client connections: " << open);
    CHECK(open <= 256 + 1);
  }
}

TEST_CASE("when full, the connection without a request that has waited longest is shed",
          "[gateway][slots]") {
  test_sshd sshd;
  http_backend backend{http_backend::options{}};
  temp_dir dir;
  auto cfg = dir.write("config.json", make_config(sshd, {{"alice", backend.port()}},
                                                  R"("max_clients":3,"admin_listen":"127.0.0.1:0",)"
                                                  R"("header_timeout":60000)"));
  running_gateway gw{cfg};
  auto admin = gw.proc.admin_port();
  REQUIRE(admin != 0);
  auto open_clients = [&] { return metric(admin, "sshpool_gateway_client_connections"); };
  auto shed = [&] { return metric(admin, "sshpool_gateway_client_connections_shed_total"); };
  // The gateway has read everything sent so far (nothing is left in a socket for it).
  double sent = 0;
  auto read_all = [&](std::size_t bytes) {
    sent += static_cast<double>(bytes);
    return eventually(
        [&] { return metric(admin, "sshpool_gateway_received_bytes_total") == sent; });
  };
  const std::string line = "GET /u/alice/echo HTTP/1.1\r\n";
  const std::string head = line + "Host: x\r\n\r\n";

  // Each step is awaited (its bytes read by the gateway, or the connection counted open),
  // so each connection starts to wait after the step before it.
  http_client a{gw.port}; // served once, then idle
  a.send_raw(head);
  REQUIRE(a.read_response().status == 200);
  REQUIRE(read_all(head.size()));
  http_client b{gw.port}; // sends nothing
  REQUIRE(eventually([&] { return open_clients() == 2; }));
  http_client c{gw.port}; // begins a head, then drips it
  c.send_raw(line);
  REQUIRE(read_all(line.size()));
  a.send_raw(line); // a's next head: a now waits from here
  REQUIRE(read_all(line.size()));
  c.send_raw("X"); // a drip, after it, does not make c younger
  REQUIRE(read_all(1));
  CHECK(shed() == 0);

  // Waiting the longest: b (since its accept), then c (since its head's first byte), then a.
  auto only_closed = [&](http_client& victim, std::vector<http_client*> kept) {
    CHECK(victim.closed_by_server(10s));
    for (auto* k : kept)
      CHECK_FALSE(k->closed_by_server(200ms));
  };
  http_client d{gw.port};
  only_closed(b, {&a, &c});
  CHECK(shed() == 1);
  http_client e{gw.port};
  only_closed(c, {&a, &d});
  http_client f{gw.port};
  only_closed(a, {&d, &e});
  CHECK(shed() == 3);

  // A connection served again waits from the end of its exchange: e, then f, go before d.
  d.send_raw(head);
  REQUIRE(d.read_response().status == 200);
  http_client g{gw.port};
  only_closed(e, {&d, &f});
  http_client h{gw.port};
  only_closed(f, {&d, &g});
  CHECK(shed() == 5);
  CHECK(eventually([&] { return open_clients() == 3; }));
}

TEST_CASE("a request head must be complete within header_timeout", "[gateway][slots]") {
  test_sshd sshd;
  http_backend backend{http_backend::options{}};
  temp_dir dir;
  auto cfg = dir.write("config.json",
                       make_config(sshd, {{"alice", backend.port()}}, "\"header_timeout\":1000"));
  running_gateway gw{cfg};

  // A head dripped byte by byte: 408 at the deadline, although client_timeout is 30 s.
  http_client dripping{gw.port};
  auto start = steady::now();
  dripping.send_raw("GET /u/alice/echo HTTP/1.1\r\nHost: x\r\n");
  constexpr auto drip_pace = 200ms; // the attacker's pace: one byte of the head each time
  while (ms_since(start) < 3000 && dripping.pending_bytes() == 0) {
    dripping.send_raw("X");
    hold_for(drip_pace);
  }
  auto res = dripping.read_response(3s);
  auto took = ms_since(start);
  INFO("408 after " << took << " ms");
  CHECK(res.status == 408);
  CHECK(took >= 1000);
  CHECK(took < 2000);
  CHECK(dripping.closed_by_server(3s));

  // A connection that sends nothing is closed at the deadline without an answer.
  http_client silent{gw.port};
  start = steady::now();
  CHECK(silent.closed_by_server(3s));
  CHECK(ms_since(start) >= 900);

  // A kept-alive connection idles beyond header_timeout (client_timeout applies there),
  // and its next request is served.
  http_client kept{gw.port};
  kept.send_request("GET", "/u/alice/echo");
  CHECK(kept.read_response().status == 200);
  CHECK_FALSE(kept.closed_by_server(1500ms));
  kept.send_request("GET", "/u/alice/echo");
  CHECK(kept.read_response().status == 200);
  CHECK(metric(gw.port, "sshpool_gateway_client_header_timeouts_total") == 2);
}

TEST_CASE("when every slot carries a request, a new client gets 503 at once", "[gateway][slots]") {
  test_sshd sshd;
  http_backend::options slow;
  slow.token_delay = 500ms;
  slow.tokens = 6; // a 3 s stream
  http_backend backend{slow};
  temp_dir dir;
  auto cfg =
      dir.write("config.json", make_config(sshd, {{"alice", backend.port()}}, "\"max_clients\":3"));
  running_gateway gw{cfg};

  std::vector<std::unique_ptr<http_client>> streams;
  std::vector<http_response> heads;
  for (int i = 0; i < 3; ++i) {
    streams.push_back(std::make_unique<http_client>(gw.port));
    streams.back()->send_request("POST", "/u/alice/api/chat", {}, R"({"model":"m","messages":[]})");
    heads.push_back(streams.back()->read_head(10s));
    REQUIRE(heads.back().status == 200);
  }
  auto start = steady::now();
  auto res = fetch(gw.port, "GET", "/u/alice/echo");
  INFO("answer after " << ms_since(start) << " ms: " << res.body);
  CHECK(res.status == 503);
  CHECK(res.header("Retry-After") == "1");
  auto body = nlohmann::json::parse(res.body, nullptr, false);
  REQUIRE(body.is_object());
  CHECK(body["code"] == "too_many_clients");
  CHECK(ms_since(start) < 1000);
  // The streams in progress were not touched.
  for (std::size_t i = 0; i < streams.size(); ++i) {
    streams[i]->read_body(heads[i], 10s);
    CHECK_FALSE(heads[i].truncated);
  }

  // Their exchanges over, the three connections wait without one: a newcomer is served in
  // the slot of one of them (the one whose stream ended first), not refused.
  CHECK(fetch(gw.port, "GET", "/u/alice/echo").status == 200);
  int closed = 0;
  for (auto& stream : streams) // the one shed was closed before the newcomer was served
    closed += stream->closed_by_server(500ms) ? 1 : 0;
  CHECK(closed == 1);
}
