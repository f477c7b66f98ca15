// Reverse mode end to end (issue 14, the SSH layer): users' machines dial in with the stock
// OpenSSH client (`ssh -N -R`), the agent listener authenticates them and hands them on, a
// runtime reactor adopts each session as a transport, and HTTP goes to a real backend on
// the agent's side through forwarded-tcpip channels.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <csignal>
#include <set>
#include <sstream>
#include <thread>

#include "integration/agent_world.hpp"
#include "support/slow_backend.hpp"

using namespace sshpool;
using namespace std::chrono_literals;
using namespace sshpool::test;

namespace {

/// The agent of `user` (who may forward the backend's port), adopted as a transport.
struct connected {
  std::unique_ptr<test::logged_process> ssh;
  std::shared_ptr<recording_sink> sink = std::make_shared<recording_sink>();
  std::unique_ptr<ssh::transport> transport;

  connected(agent_world& w, const std::string& user, ssh::transport_options opts = {},
            const std::string& key = "id") {
    ssh = w.dial(user, {}, {}, key);
    auto agent = w.next_agent();
    REQUIRE(agent);
    CHECK(agent.user() == user);
    CHECK(agent.bound_port() == w.backend.port());
    CHECK(agent.bound_address() == "localhost");
    CHECK(agent.source_address() == "127.0.0.1");
    transport = w.adopt(std::move(agent), sink, opts);
  }
};

expected<response> result_of(recording_sink& sink, std::uint64_t tag,
                             std::chrono::milliseconds timeout = 10s) {
  auto r = sink.wait_result(tag, timeout);
  REQUIRE(r.has_value());
  return *r;
}

} // namespace

TEST_CASE("an ssh -R agent carries GET and POST of 1 MiB both ways, reusing its channel",
          "[agents]") {
  agent_world w;
  w.allow("alice", {"id"}, {w.backend.port()});
  connected a{w, "alice"};
  auto stats = w.listener->stats();
  CHECK(stats.authenticated == 1);
  CHECK(stats.agents == 1);

  a.transport->forward(1, make_request("GET", "/info?x=1"));
  auto get = result_of(*a.sink, 1);
  REQUIRE(get);
  CHECK(get->status == 200);
  CHECK(get->body.find("\"path\":\"/info?x=1\"") != std::string::npos);

  auto body = pattern(1 << 20);
  a.transport->forward(2, make_request("POST", "/echo", body));
  auto post = result_of(*a.sink, 2);
  REQUIRE(post);
  CHECK(post->status == 200);
  CHECK(post->body == body);

  a.transport->forward(3, make_request("GET", "/bytes/1048576"));
  auto big = result_of(*a.sink, 3);
  REQUIRE(big);
  CHECK(big->body == pattern(1 << 20));

  // One forwarded-tcpip channel is one TCP connection on the agent's side: kept alive, the
  // three requests used one.
  CHECK(w.backend.requests_received() == 3);
  CHECK(w.backend.connections_accepted() == 1);
  CHECK(w.runtime.stats().channels == 1);

  // Closed with a reason: the agent's ssh prints it.
  a.transport->disconnect("the gateway is draining");
  CHECK(a.ssh->wait(10s) == 255);
  CHECK(a.ssh->output().find("the gateway is draining") != std::string::npos);
}

TEST_CASE("a stream from an agent arrives token by token, paused and resumed by acks", "[agents]") {
  agent_world w{agent_world::options(), slow_stream(20ms, 10)};
  w.allow("alice", {"id"}, {w.backend.port()});
  ssh::transport_options opts;
  opts.stream_window = 64; // smaller than two tokens: every chunk waits for its ack
  connected a{w, "alice", opts};

  a.transport->forward(1, make_request("POST", "/api/chat", R"({"model":"m"})", true));
  std::string body;
  std::size_t chunks = 0;
  while (auto chunk = a.sink->next_chunk(1, 5s)) {
    ++chunks;
    body += *chunk;
    a.transport->ack(1, chunk->size());
    if (body.find("\"done\":true") != std::string::npos)
      break;
  }
  auto head = a.sink->head(1);
  REQUIRE(head.has_value());
  CHECK(head->status == 200);
  // The tokens left the backend 20 ms apart. On a loaded machine several may wait in the
  // channel while this thread is descheduled and come as one piece, so only "in pieces, as
  // they came" is certain, not one piece per token.
  CHECK(chunks >= 3);
  CHECK(std::count(body.begin(), body.end(), '\n') == 11);
  auto end = result_of(*a.sink, 1);
  REQUIRE(end);
  CHECK(end->body.empty());

  // Backpressure down to the SSH window: 1 MiB through a 16 KiB window, acked as it comes.
  opts.stream_window = 16 << 10;
  a.transport->forward(2, make_request("GET", "/bytes/1048576", {}, true));
  std::string bytes;
  while (bytes.size() < (1u << 20)) {
    auto chunk = a.sink->next_chunk(2, 5s);
    REQUIRE(chunk.has_value());
    bytes += *chunk;
    a.transport->ack(2, chunk->size());
  }
  CHECK(bytes == pattern(1 << 20));
  REQUIRE(result_of(*a.sink, 2));
}

TEST_CASE("a small streamed response comes whole: one event with its head and body", "[agents]") {
  agent_world w;
  w.allow("alice", {"id"}, {w.backend.port()});
  connected a{w, "alice"};
  // One backend write, one channel packet: complete before its head could be reported.
  a.transport->forward(1, make_request("GET", "/bytes/300", {}, true));
  auto whole = result_of(*a.sink, 1);
  REQUIRE(whole);
  CHECK(whole->status == 200);
  CHECK(whole->body == pattern(300));
  CHECK_FALSE(a.sink->head(1).has_value());
  CHECK_FALSE(a.sink->next_chunk(1, 0ms).has_value());
  // A response too large to be complete at its head still streams piece by piece.
  a.transport->forward(2, make_request("GET", "/bytes/1048576", {}, true));
  std::size_t bytes = 0;
  while (bytes < (1u << 20)) {
    auto chunk = a.sink->next_chunk(2, 5s);
    REQUIRE(chunk.has_value());
    bytes += chunk->size();
    a.transport->ack(2, chunk->size());
  }
  REQUIRE(a.sink->head(2).has_value());
  auto end = result_of(*a.sink, 2);
  REQUIRE(end);
  CHECK(end->body.empty());
}

TEST_CASE("200 concurrent requests over two agents all come back to their callers", "[agents]") {
  agent_world w;
  w.allow("alice", {"id"}, {w.backend.port()});
  w.allow("bob", {"bob"}, {w.backend.port()});
  connected a{w, "alice"};
  connected b{w, "bob", {}, "bob"};
  for (std::uint64_t i = 0; i < 100; ++i) {
    a.transport->forward(i, make_request("POST", "/echo", "alice-" + std::to_string(i)));
    b.transport->forward(i, make_request("POST", "/echo", "bob-" + std::to_string(i)));
  }
  REQUIRE(a.sink->wait_results(100, 20s));
  REQUIRE(b.sink->wait_results(100, 20s));
  for (std::uint64_t i = 0; i < 100; ++i) {
    auto ra = result_of(*a.sink, i, 0s);
    auto rb = result_of(*b.sink, i, 0s);
    REQUIRE(ra);
    REQUIRE(rb);
    CHECK(ra->body == "alice-" + std::to_string(i));
    CHECK(rb->body == "bob-" + std::to_string(i));
  }
  // At most max_channels (10) channels per agent, each one backend connection, reused.
  CHECK(w.backend.requests_received() == 200);
  CHECK(w.backend.connections_accepted() <= 20);
}

TEST_CASE("an agent answers probes; a refused open fails the request, not the agent", "[agents]") {
  agent_world w;
  w.allow("alice", {"id"}, {w.backend.port(), 1});
  connected a{w, "alice"};
  a.transport->probe();
  CHECK(a.sink->wait_alive(1, 5s));

  // A second agent of the same user whose -R points at a port where nothing listens.
  auto dead_port = test::free_port();
  auto ssh = w.dial("alice", {}, "1:127.0.0.1:" + std::to_string(dead_port));
  auto agent = w.next_agent();
  REQUIRE(agent);
  auto sink = std::make_shared<recording_sink>();
  auto t = w.adopt(std::move(agent), sink);
  t->forward(1, make_request("GET", "/info"));
  auto failed = result_of(*sink, 1);
  REQUIRE_FALSE(failed);
  CHECK(failed.error().code() == errc::channel_open_failed);
  t->probe();
  CHECK(sink->wait_alive(1, 5s));
  a.transport->forward(2, make_request("GET", "/info"));
  CHECK(result_of(*a.sink, 2));
}
