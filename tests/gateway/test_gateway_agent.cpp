// sshpool-demo in reverse mode, end to end: the real binary with an agent listener, the real
// OpenSSH client dialing in with `ssh -N -R` (its own key, the listener's host key pinned),
// an in-process backend behind it, and a plain HTTP client. With no agent connected a request
// gets 503 agent_offline with Retry-After; once the agent is in, a GET and a stream go through
// it; /stats and /metrics show the agent session and the listener's refusals by reason.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

#include <nlohmann/json.hpp>

#include "backend/http_backend.hpp"
#include "gateway/gateway_harness.hpp"
#include "support/agent_home.hpp"
#include "support/child_process.hpp"
#include "support/timing.hpp"

using namespace sshpool::test;
using namespace std::chrono_literals;
using sshpool::demo::http_backend;
using json = nlohmann::json;

namespace {

/// The port bob's agent gives to -R (virtual: nothing listens on it).
constexpr std::uint16_t bob_port = 8000;

json stats_of(std::uint16_t port) {
  auto res = fetch(port, "GET", "/stats");
  REQUIRE(res.status == 200);
  auto doc = json::parse(res.body, nullptr, false);
  REQUIRE(doc.is_object());
  return doc;
}

/// bob's agent sessions as /stats shows them.
int bob_agents(std::uint16_t port) {
  auto stats = stats_of(port);
  for (auto& u : stats["pool"]["per_user"])
    if (u["user"] == "bob")
      return u["agents"].get<int>();
  return 0;
}

/// A gateway whose user bob is reached in agent mode; his machine (`home`) runs the backend.
struct agent_gateway {
  http_backend backend{[] {
    http_backend::options opts;
    opts.name = "bob-machine";
    opts.token_delay = 30ms;
    opts.tokens = 8;
    return opts;
  }()};
  agent_home home;
  temp_dir dir;
  running_gateway gw{[this] {
    dir.write("bob.keys", home.public_key() + "\n");
    return dir.write("config.json",
                     R"({"listen":"127.0.0.1:0","agent_listen":"127.0.0.1:0",)"
                     R"("agent_host_key":"host_key","acquire_timeout":1500,)"
                     R"("users":{"bob":{"mode":"agent","authorized_keys_file":"bob.keys",)"
                     R"("target_port":)" +
                         std::to_string(bob_port) + "}}}");
  }()};
  std::uint16_t listener_port = gw.proc.agent_port();

  /// Starts bob's `ssh -N -R` against the listener, its host key pinned from /stats.
  logged_process start_agent() {
    home.trust(listener_port, stats_of(gw.port)["agents"]["host_public_key"].get<std::string>());
    return logged_process{
        home.log_file("agent"),
        home.ssh("bob", listener_port,
                 {"-N", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=5", "-R",
                  std::to_string(bob_port) + ":127.0.0.1:" + std::to_string(backend.port())})};
  }
};

} // namespace

TEST_CASE_METHOD(agent_gateway,
                 "reverse mode: 503 agent_offline with Retry-After without an agent; through an "
                 "ssh -R agent a GET and a stream reach the user's service",
                 "[gateway][agent]") {
  auto offline = fetch(gw.port, "GET", "/u/bob/api/tags");
  INFO("body " << offline.body);
  CHECK(offline.status == 503);
  CHECK(offline.header("Retry-After") == "5");
  auto body = json::parse(offline.body, nullptr, false);
  REQUIRE(body.is_object());
  CHECK(body["code"] == "agent_offline");
  CHECK(body["request_id"] == offline.header("X-Request-Id"));

  auto agent = start_agent();
  if (!eventually([&] { return bob_agents(gw.port) == 1; }))
    FAIL("the agent did not connect; ssh says: " << agent.output());

  auto tags = fetch(gw.port, "GET", "/u/bob/api/tags");
  CHECK(tags.status == 200);
  CHECK(tags.header("X-Backend") == "bob-machine");

  http_client c{gw.port};
  c.send_request("POST", "/u/bob/api/chat", {{"Content-Type", "application/json"}},
                 R"({"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true})");
  auto stream = c.read_head();
  REQUIRE(stream.status == 200);
  c.read_body(stream, 20s);
  CHECK_FALSE(stream.truncated);
  CHECK(std::count(stream.body.begin(), stream.body.end(), '\n') == 9); // 8 tokens + summary
  CHECK(stream.pieces.size() >= 4); // token by token, not in one piece

  // Keep-alive: the second request on the client connection goes through the same agent.
  c.send_request("GET", "/u/bob/echo");
  CHECK(c.read_response().status == 200);
  CHECK(bob_agents(gw.port) == 1);
}

TEST_CASE_METHOD(agent_gateway,
                 "reverse mode: /stats and /metrics show the agent session and the listener's "
                 "refusals by reason; promtool accepts them",
                 "[gateway][agent][metrics]") {
  auto agent = start_agent();
  if (!eventually([&] { return bob_agents(gw.port) == 1; }))
    FAIL("the agent did not connect; ssh says: " << agent.output());
  CHECK(fetch(gw.port, "GET", "/u/bob/api/tags").status == 200);

  // bob's key trying -W (a direct-tcpip channel into the gateway's network): refused.
  logged_process reach_in{
      home.log_file("reach-in"),
      home.ssh("bob", listener_port, {"-W", "127.0.0.1:" + std::to_string(backend.port())})};
  auto code = reach_in.wait(20s);
  INFO("reach-in: " << reach_in.output());
  REQUIRE(code.has_value());
  CHECK(*code != 0);

  std::string text;
  REQUIRE(eventually([&] {
    text = fetch(gw.port, "GET", "/metrics").body;
    return metric_value(text, "sshpool_agent_refused_total{reason=\"direct_tcpip\"}") == "1";
  }));
  CHECK(metric_value(text, "sshpool_agent_sessions{user=\"bob\"}") == "1");
  CHECK(metric_value(text, "sshpool_agent_sessions_refused_total{user=\"bob\"}") == "0");
  CHECK(metric_value(text, "sshpool_agent_sessions_started_total") == "1");
  CHECK(metric_value(text, "sshpool_agent_refused_total{reason=\"forward_not_allowed\"}") == "0");
  CHECK(metric_value(text, "sshpool_agent_pre_auth_connections") != "");
  CHECK(metric_value(text, "sshpool_agent_penalized_sources") != "");
  CHECK(std::stoi(metric_value(text, "sshpool_agent_connections_total")) >= 2);
  CHECK(std::stoi(metric_value(text, "sshpool_agent_authenticated_total")) >= 2);

  auto stats = stats_of(gw.port);
  auto& agents = stats["agents"];
  CHECK(agents["port"] == listener_port);
  CHECK(agents["host_key_fingerprint"].get<std::string>().rfind("SHA256:", 0) == 0);
  CHECK(agents["refused"]["direct_tcpip"] == 1);
  CHECK(agents["agents"] == 1);
  bool bob_shown = false;
  for (auto& u : stats["pool"]["per_user"])
    if (u["user"] == "bob") {
      bob_shown = true;
      CHECK(u["agents"] == 1);
      CHECK(u["agents_refused"] == 0);
    }
  CHECK(bob_shown);

  check_promtool(dir, text);
}
