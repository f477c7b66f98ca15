// Reverse mode end to end through the engine (issue 14, the pool side): users' machines dial
// in with the stock OpenSSH client (`ssh -N -R`), the engine's agent listener hands each
// agent to the user's pool, and the blocking facade leases them like dialed connections.
#include <catch2/catch.hpp>

#include <csignal>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "backend/http_backend.hpp"
#include "sshpool/sshpool.hpp"
#include "support/agent_home.hpp"
#include "support/child_process.hpp"
#include "support/os.hpp"
#include "support/requests.hpp"
#include "support/slow_backend.hpp"
#include "support/test_sshd.hpp"
#include "support/timing.hpp"
#include "support/world.hpp"

using namespace sshpool;
using namespace sshpool::test;
using namespace std::chrono_literals;
using sshpool::demo::http_backend;

namespace {

/// An engine with an agent listener, a backend on the agents' side and their machines'
/// home (keys, known_hosts pinning the listener's host key).
struct gateway {
  temp_dir tmp{"sshpool-agent-pool"};
  const std::string& dir = tmp.path();
  agent_home home;
  http_backend backend;
  std::unique_ptr<engine> eng;
  std::uint16_t port = 0;

  explicit gateway(engine_config cfg = config(), http_backend::options backend_opts = {})
      : backend(std::move(backend_opts)) {
    cfg.agents.listen = "127.0.0.1:0";
    cfg.agents.host_key_file = dir + "/agent_host_ed25519";
    eng = std::make_unique<engine>(std::move(cfg));
    auto status = eng->agent_listener();
    REQUIRE(status);
    port = status->port;
    home.trust(port, status->public_key);
  }

  static engine_config config() { return quiet_config(10s, 10s); }

  /// Makes `user` an agent user whose machine forwards the backend's port.
  void add_agent_user(const std::string& user) {
    auto keys = dir + "/" + user + ".keys";
    write_file(keys, home.public_key(user) + "\n");
    endpoint ep;
    ep.mode = endpoint_mode::agent;
    ep.authorized_keys_file = keys;
    ep.target_port = backend.port();
    REQUIRE(eng->set_endpoint(user, ep));
  }

  /// `ssh -N -R` of `user`'s machine, exposing the backend.
  std::unique_ptr<logged_process> dial(const std::string& user) {
    auto p = std::to_string(backend.port());
    return std::make_unique<logged_process>(
        home.log_file("agent-" + user),
        home.ssh(user, port,
                 {"-N", "-R", p + ":127.0.0.1:" + p, "-o", "ServerAliveInterval=15", "-o",
                  "ExitOnForwardFailure=yes"},
                 {}, user));
  }

  /// An agent user `user` whose machine has dialed in, and a lease of its connection.
  /// An agent dialed in for `user` and a lease on its connection.
  struct leased_agent {
    std::unique_ptr<logged_process> ssh;
    connection conn;
  };

  leased_agent lease_agent(const std::string& user) {
    add_agent_user(user);
    auto ssh = dial(user);
    auto conn = eng->pool().get_connection(user);
    REQUIRE(conn);
    return {std::move(ssh), *conn};
  }

  user_stats stats(const std::string& user) {
    for (auto& u : eng->pool().get_pool_stats().users)
      if (u.user == user)
        return u;
    return {};
  }

  /// Waits until `user` has `n` agents connected.
  bool agents(const std::string& user, std::uint32_t n) {
    return eventually([&] { return stats(user).agents == n; });
  }
};

} // namespace

TEST_CASE("a leased agent carries a GET, a POST and a streamed response", "[agent_pool]") {
  gateway g{gateway::config(), slow_stream(10ms, http_backend::options{}.tokens)};
  g.add_agent_user("alice");
  auto ssh = g.dial("alice");
  // No agent yet: the lease waits for it to dial in.
  auto conn = g.eng->pool().get_connection("alice");
  REQUIRE(conn);
  CHECK(conn->is_healthy());

  auto get = conn->forward(make_request("g", "GET", "/info?x=1"));
  REQUIRE(get);
  CHECK(get->status == 200);
  CHECK(get->body.find("\"path\":\"/info?x=1\"") != std::string::npos);
  auto body = pattern(256 << 10);
  auto post = conn->forward(make_request("p", "POST", "/echo", body));
  REQUIRE(post);
  CHECK(post->body == body);

  std::size_t chunks = 0;
  std::string streamed;
  bool first_was_last = false;
  stream_handlers h;
  h.on_chunk = [&](std::string_view c) {
    if (chunks++ == 0)
      first_was_last = c.find("\"done\":true") != std::string_view::npos;
    streamed += c;
    return true;
  };
  auto head = conn->forward_stream(make_request("s", "POST", "/api/chat", "{}"), h);
  REQUIRE(head);
  CHECK(head->status == 200);
  // Streamed, not buffered whole: the tokens came 10 ms apart, so the first piece came before
  // the last token (a busy machine may still merge neighbours: no exact count).
  CHECK(chunks > 1);
  CHECK_FALSE(first_was_last);
  CHECK(streamed.find("\"done\":true") != std::string::npos);
  auto st = g.stats("alice");
  CHECK(st.agents == 1);
  CHECK(st.connections == 1);
  CHECK(st.handshakes == 0);
  CHECK(g.eng->pool().release_connection("alice", *conn));
}

TEST_CASE("200 concurrent requests over two agents of one user use both", "[agent_pool]") {
  gateway g;
  g.add_agent_user("alice");
  auto a = g.dial("alice");
  REQUIRE(g.agents("alice", 1));
  auto b = g.dial("alice");
  REQUIRE(g.agents("alice", 2));

  std::mutex mx;
  std::set<std::uint64_t> used;
  std::atomic<int> ok{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 25; ++t)
    callers.emplace_back([&, t] {
      for (int i = 0; i < 8; ++i) {
        auto conn = g.eng->pool().get_connection("alice");
        if (!conn)
          continue;
        auto tag = std::to_string(t) + "-" + std::to_string(i);
        auto res = conn->forward(make_request(tag, "POST", "/echo", tag));
        if (res && res->body == tag)
          ++ok;
        {
          std::lock_guard<std::mutex> guard{mx};
          used.insert(conn->id());
        }
        g.eng->pool().release_connection("alice", *conn);
      }
    });
  for (auto& c : callers)
    c.join();
  CHECK(ok == 200);
  CHECK(used.size() == 2);
}

TEST_CASE("with no agent connected a lease fails with agent_offline", "[agent_pool]") {
  auto cfg = gateway::config();
  cfg.pool.acquire_timeout = 300ms;
  gateway g{cfg};
  g.add_agent_user("alice");
  auto start = std::chrono::steady_clock::now();
  auto conn = g.eng->pool().get_connection("alice");
  REQUIRE_FALSE(conn);
  CHECK(conn.error().code() == errc::agent_offline);
  CHECK(ms_since(start) >= 300);
  CHECK(g.stats("alice").acquire_timeouts == 1);
}

TEST_CASE("an agent killed mid-stream fails it at once; the next agent serves again",
          "[agent_pool]") {
  gateway g{gateway::config(), slow_stream(100ms, 100)};
  auto agent = g.lease_agent("alice");
  std::chrono::steady_clock::time_point killed;
  stream_handlers h;
  h.on_chunk = [&](std::string_view) {
    if (killed == std::chrono::steady_clock::time_point{}) {
      killed = std::chrono::steady_clock::now();
      agent.ssh->signal(SIGKILL);
    }
    return true;
  };
  auto res = agent.conn.forward_stream(make_request("s", "POST", "/api/chat", "{}"), h);
  REQUIRE_FALSE(res);
  CHECK(res.error().code() == errc::connection_lost);
  CHECK(ms_since(killed) < 3000); // not the 10 s idle deadline
  g.eng->pool().release_connection("alice", agent.conn);
  REQUIRE(g.agents("alice", 0));

  auto again = g.dial("alice"); // the machine reconnects
  auto next = g.eng->pool().get_connection("alice");
  REQUIRE(next);
  CHECK(next->id() != agent.conn.id());
  auto get = next->forward(make_request("g", "GET", "/info"));
  REQUIRE(get);
  CHECK(get->status == 200);
}

TEST_CASE("a third agent over max_connections_per_user=2 is refused and told why", "[agent_pool]") {
  auto cfg = gateway::config();
  cfg.pool.max_connections_per_user = 2;
  gateway g{cfg};
  g.add_agent_user("alice");
  auto a = g.dial("alice");
  REQUIRE(g.agents("alice", 1));
  auto b = g.dial("alice");
  REQUIRE(g.agents("alice", 2));
  auto c = g.dial("alice");
  CHECK(c->wait(10s) == 255);
  CHECK(c->output().find("user alice has 2 agents connected already") != std::string::npos);
  auto st = g.stats("alice");
  CHECK(st.agents == 2);
  CHECK(st.agents_refused == 1);
  CHECK_FALSE(a->wait(0ms).has_value()); // the first two stay
  CHECK_FALSE(b->wait(0ms).has_value());
}

TEST_CASE("an engine shut down with an agent connected tells its ssh why", "[agent_pool]") {
  gateway g;
  g.add_agent_user("alice");
  auto ssh = g.dial("alice");
  REQUIRE(g.agents("alice", 1));
  g.eng.reset();
  CHECK(ssh->wait(10s) == 255);
  INFO(ssh->output());
  CHECK(ssh->output().find("gateway shutting down") != std::string::npos);
}

TEST_CASE("an agent's ssh SIGSTOPped mid-stream is found by the keepalive; then agent_offline",
          "[agent_pool]") {
  auto cfg = gateway::config();
  cfg.pool.keepalive_interval = 300ms;
  cfg.pool.keepalive_timeout = 300ms;
  cfg.pool.acquire_timeout = 500ms;
  gateway g{cfg, slow_stream(100ms, 100)};
  g.add_agent_user("alice");
  auto ssh = g.dial("alice");
  REQUIRE(g.agents("alice", 1));
  auto conn = g.eng->pool().get_connection("alice");
  REQUIRE(conn);
  std::chrono::steady_clock::time_point stopped;
  stream_handlers h;
  h.on_chunk = [&](std::string_view) {
    if (stopped == std::chrono::steady_clock::time_point{}) {
      stopped = std::chrono::steady_clock::now();
      ssh->signal(SIGSTOP); // hung: its TCP connection stays up, nothing answers
    }
    return true;
  };
  auto res = conn->forward_stream(make_request("s", "POST", "/api/chat", "{}"), h);
  auto found_ms = ms_since(stopped);
  REQUIRE_FALSE(res);
  CHECK(res.error().code() == errc::connection_lost);
  // The failing probe goes out within an interval (or two, if a packet of the stream
  // answered the first) and fails a timeout later; a second of slack for a loaded machine,
  // far below the 10 s idle deadline of the stream.
  CHECK(found_ms < 2 * 300 + 300 + 1000);
  CHECK_FALSE(conn->is_healthy());
  CHECK(g.eng->metrics().keepalive_failures >= 1);
  g.eng->pool().release_connection("alice", *conn); // its connection is gone
  REQUIRE(g.agents("alice", 0));

  // The engine cannot dial the machine back: the next lease waits for an agent, then fails.
  auto start = std::chrono::steady_clock::now();
  auto next = g.eng->pool().get_connection("alice");
  REQUIRE_FALSE(next);
  CHECK(next.error().code() == errc::agent_offline);
  CHECK(ms_since(start) >= 500);

  // Woken up, the stopped ssh finds its session closed and exits.
  ssh->signal(SIGCONT);
  CHECK(ssh->wait(10s) == 255);
}

TEST_CASE("an engine shut down mid-stream through an agent drains it, then tells the agent why",
          "[agent_pool]") {
  gateway g{gateway::config(), slow_stream(100ms, 20)};
  auto agent = g.lease_agent("alice");
  std::promise<void> first_chunk;
  bool started = false;
  std::string streamed;
  stream_handlers h;
  h.on_chunk = [&](std::string_view c) {
    streamed += c;
    if (!started) {
      started = true;
      first_chunk.set_value();
    }
    return true;
  };
  auto stream = std::async(std::launch::async, [&] {
    return agent.conn.forward_stream(make_request("s", "POST", "/api/chat", "{}"), h);
  });
  REQUIRE(first_chunk.get_future().wait_for(10s) == std::future_status::ready);
  auto report = g.eng->shutdown(10s);
  REQUIRE(stream.wait_for(10s) == std::future_status::ready);
  auto res = stream.get();
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(streamed.find("\"done\":true") != std::string::npos); // every token, to the end
  CHECK(report.in_flight_at_start == 1);
  CHECK(report.completed_during_drain == 1);
  CHECK(report.cut == 0);
  CHECK_FALSE(report.forced);
  CHECK(report.connections_closed == 1);
  CHECK(agent.ssh->wait(10s) == 255);
  CHECK(agent.ssh->output().find("gateway shutting down") != std::string::npos);
}

TEST_CASE("dial and agent users live side by side in one engine", "[agent_pool]") {
  gateway g;
  test_sshd sshd;
  http_backend bobs{http_backend::options{"bobs-backend"}};
  REQUIRE(g.eng->set_endpoint("bob", sshd.make_endpoint(bobs.port())));
  g.add_agent_user("alice");
  auto ssh = g.dial("alice");
  for (const char* user : {"alice", "bob"}) {
    auto conn = g.eng->pool().get_connection(user);
    REQUIRE(conn);
    auto res = conn->forward(make_request(user, "GET", "/info"));
    REQUIRE(res);
    CHECK(res->status == 200);
    std::string name = user == std::string{"bob"} ? "bobs-backend" : "backend";
    CHECK(res->body.find("\"backend\":\"" + name + "\"") != std::string::npos);
    CHECK(g.eng->pool().release_connection(user, *conn));
  }
  CHECK(g.stats("alice").agents == 1);
  CHECK(g.stats("bob").agents == 0);
  CHECK(g.stats("bob").handshakes == 1);
  // bob's machine cannot dial in as an agent: bob is a dial user.
  auto intruder = g.dial("bob");
  CHECK(intruder->wait(10s) == 255);
}

TEST_CASE("bad agent settings fail the engine or set_endpoint with the reason", "[agent_pool]") {
  gateway g;
  auto cfg = gateway::config();
  cfg.agents.listen = "127.0.0.1:" + std::to_string(g.port); // taken
  cfg.agents.host_key_file = g.dir + "/other_host_key";
  CHECK_THROWS_AS(engine{cfg}, std::invalid_argument);
  cfg.agents.host_key_file.clear();
  CHECK_THROWS_WITH(engine{cfg}, Catch::Contains("agents.host_key_file"));

  endpoint ep;
  ep.mode = endpoint_mode::agent;
  ep.target_port = g.backend.port();
  auto missing = g.eng->set_endpoint("alice", ep);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message().find("authorized_keys_file") != std::string::npos);
  ep.authorized_keys_file = g.dir + "/nothing.keys";
  auto unreadable = g.eng->set_endpoint("alice", ep);
  REQUIRE_FALSE(unreadable);
  CHECK(unreadable.error().code() == errc::invalid_argument);
  write_file(ep.authorized_keys_file, "command=\"true\" " + g.home.public_key("alice") + "\n");
  auto unusable = g.eng->set_endpoint("alice", ep);
  REQUIRE_FALSE(unusable);
  CHECK(unusable.error().message().find("no usable key") != std::string::npos);
}
