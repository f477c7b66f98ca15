// Reverse mode under faults (issue 14, the SSH layer): agents killed or frozen mid-stream,
// 100 agents dialing in at once, and a pre-auth flood while a real agent gets in.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <set>

#include "integration/agent_world.hpp"
#include "support/process_info.hpp"
#include "support/slow_backend.hpp"
#include "support/slow_flood.hpp"

using namespace sshpool;
using namespace std::chrono_literals;
using namespace sshpool::test;

namespace {

using steady = std::chrono::steady_clock;

/// The agent of `user`, dialed in with `extra` ssh options and adopted as a transport.
struct connected {
  std::unique_ptr<test::logged_process> ssh;
  std::shared_ptr<recording_sink> sink = std::make_shared<recording_sink>();
  std::unique_ptr<ssh::transport> transport;

  connected(agent_world& w, const std::string& user, const std::vector<std::string>& extra = {}) {
    ssh = w.dial(user, extra);
    transport = w.adopt(w.next_agent(), sink);
  }
};

} // namespace

TEST_CASE("an agent killed mid-stream is lost at once", "[agents][faults]") {
  agent_world w{agent_world::options(), slow_stream(50ms, 200)};
  w.allow("alice", {"id"}, {w.backend.port()});
  connected a{w, "alice"};
  a.transport->forward(1, make_request("POST", "/api/chat", "{}", true));
  auto first = a.sink->next_chunk(1, 5s);
  REQUIRE(first.has_value());
  a.transport->ack(1, first->size());

  auto killed = steady::now();
  a.ssh->signal(SIGKILL);
  auto lost = a.sink->wait_lost(5s);
  REQUIRE(lost.has_value());
  CHECK(steady::now() - killed < 1s);
  CHECK(lost->code() == errc::connection_lost);
  CHECK(lost->message().find("agent session of alice from 127.0.0.1") != std::string::npos);
  // The stream got no further event: the owner fails it with connection_lost.
  CHECK_FALSE(a.sink->wait_result(1, 0ms).has_value());
}

TEST_CASE("a frozen agent answers no probe; thawed, it answers again", "[agents][faults]") {
  agent_world w;
  w.allow("alice", {"id"}, {w.backend.port()});
  connected a{w, "alice"};
  a.transport->probe();
  REQUIRE(a.sink->wait_alive(1, 5s));

  a.ssh->signal(SIGSTOP);
  a.transport->probe();
  CHECK_FALSE(a.sink->wait_alive(2, 1s)); // the owner's keepalive deadline would fire here
  a.ssh->signal(SIGCONT);
  CHECK(a.sink->wait_alive(2, 5s));
  a.transport->forward(1, make_request("GET", "/info"));
  CHECK(a.sink->wait_result(1, 10s).value_or(error{errc::timeout, ""}));
}

TEST_CASE("100 agents dialing in at once all get in and serve", "[agents][faults]") {
  agent_world w;
  std::vector<std::unique_ptr<test::logged_process>> ssh;
  for (int i = 0; i < 100; ++i) {
    auto user = "user" + std::to_string(i);
    w.allow(user, {"id"}, {w.backend.port()});
    // Each machine from an address of its own, as agents on the Internet would be.
    ssh.push_back(w.dial(user, {"-o", "BindAddress=127.0.1." + std::to_string(i + 1)}));
  }
  std::vector<std::shared_ptr<recording_sink>> sinks;
  std::vector<std::unique_ptr<ssh::transport>> transports;
  std::set<std::string> users;
  for (int i = 0; i < 100; ++i) {
    auto agent = w.next_agent(30s);
    REQUIRE(agent);
    users.insert(agent.user());
    sinks.push_back(std::make_shared<recording_sink>());
    transports.push_back(w.adopt(std::move(agent), sinks.back()));
    transports.back()->forward(1, make_request("GET", "/info"));
  }
  CHECK(users.size() == 100);
  for (auto& sink : sinks) {
    auto r = sink->wait_result(1, 20s);
    REQUIRE(r.has_value());
    CHECK(*r);
  }
  auto stats = w.listener->stats();
  CHECK(stats.agents == 100);
  CHECK(stats.refused_for(ssh::agent_refusal::max_startups) == 0);
  CHECK(w.backend.requests_received() == 100);
}

TEST_CASE("a flood of 500 silent or stalled connections from one source keeps no agent out",
          "[agents][faults]") {
  test::raise_fd_limit();
  auto opts = agent_world::options();
  opts.login_grace = 2s;
  agent_world w{opts};
  w.allow("alice", {"id"}, {w.backend.port()});

  // 500 connections from 127.0.0.1: the odd ones send nothing, the even ones our banner and
  // then nothing (a key exchange that stops).
  std::vector<int> flood;
  for (int i = 0; i < 500; ++i) {
    int fd = test::connect_from("127.0.0.1", w.listener->port());
    REQUIRE(fd >= 0);
    if (i % 2 == 0) {
      static const char banner[] = "SSH-2.0-flood\r\n";
      CHECK(::send(fd, banner, sizeof banner - 1, MSG_NOSIGNAL) > 0);
    }
    flood.push_back(fd);
  }
  REQUIRE(w.wait_stats([](const ssh::agent_listener_stats& s) { return s.connections >= 500; }));

  // The agent, from another source, gets in while the flood holds its slots.
  auto started = steady::now();
  connected a{w, "alice", {"-o", "BindAddress=127.0.0.2"}};
  CHECK(steady::now() - started < 3s);
  a.transport->forward(1, make_request("GET", "/info"));
  CHECK(a.sink->wait_result(1, 10s).value_or(error{errc::timeout, ""}));

  auto stats = w.listener->stats();
  CHECK(stats.refused_for(ssh::agent_refusal::max_startups_per_source) == 490);
  CHECK(stats.refused_for(ssh::agent_refusal::max_startups) == 0);
  CHECK(stats.agents == 1);
  // The ten that held a slot end at the login grace, and their source is penalized.
  CHECK(w.wait_stats([](const ssh::agent_listener_stats& s) {
    return s.refused_for(ssh::agent_refusal::login_grace) == 10 && s.penalized_sources == 1;
  }));
  for (int fd : flood)
    ::close(fd);
}
