// Connection permits on CAF's deterministic test coordinator with a fake transport: each
// pool spawns its own connections after a permit from the supervisor, which keeps the
// global connection cap and the handshake rate; permits no longer needed are withdrawn or
// given back, so the global count never leaks.
#include <catch2/catch.hpp>

#include "pool_fixture.hpp"

using namespace sshpool;
using sshpool::test::fixture;
using namespace std::chrono_literals;

namespace {

/// Two connections per user and for the whole engine, one handshake per second.
pool_config permit_config() {
  auto pc = fixture::small();
  pc.max_connections_total = 2;
  pc.max_handshakes_per_second = 1;
  pc.reconnect_backoff_base = 1s;
  pc.acquire_timeout = 1h;
  return pc;
}

} // namespace

TEST_CASE("past max_connections_total a permit is refused; closed connections return theirs",
          "[permit]") {
  fixture f{permit_config()};
  auto a1 = f.acquire("alice");
  f.open(0);
  f.advance(1s); // the next handshake token
  auto a2 = f.acquire("alice");
  auto a3 = f.acquire("alice"); // shares a connection: the user is at its cap
  REQUIRE(f.fakes->sessions.size() == 2);
  f.open(1);
  REQUIRE(a1->value);
  REQUIRE(a2->value);
  REQUIRE(a3->value);
  f.advance(1s);
  auto refused = f.acquire("bob");
  REQUIRE(refused->done);
  CHECK(refused->err.code() == errc::pool_exhausted);
  CHECK(refused->err.message().find("max_connections_total") != std::string::npos);
  CHECK(f.fakes->sessions.size() == 2);
  // Alice's connections close: their actors go down and the permits come back.
  auto closed = f.ask<std::uint64_t>(f.sup, close_atom_v, std::string{"alice"});
  CHECK(*closed->value == 2);
  f.advance(1s); // bob's backoff after one failure is at most 1 s
  CHECK(f.acquire_new("bob", 3)->value);
}

TEST_CASE("a permit granted as it is withdrawn is given back, and no connection appears",
          "[permit]") {
  fixture f{permit_config()};
  auto a1 = f.acquire("alice"); // the first token: a handshake at once
  f.open(0);
  REQUIRE(a1->value);
  auto a2 = f.acquire("alice"); // waits in the supervisor's queue for the next token
  REQUIRE(f.fakes->sessions.size() == 1);
  // The drain reaches the pool just before the grant of the queued permit.
  caf::anon_send(f.sup, drain_atom_v, std::string{"alice"});
  f.sched->advance_time(2s); // the rate's tick (1 s and a little) comes after the drain
  f.sched->run();
  CHECK(a2->err.code() == errc::shutting_down);
  CHECK(f.fakes->sessions.size() == 1); // the late grant spawned nothing
  CHECK(f.fakes->sessions[0]->closed);
  CHECK(f.stats().total_connections == 0);
  // Both permits came back (alice's pool stays: a1's lease is still held): bob gets the
  // two connections of the global cap.
  CHECK(f.stats().user_count == 1);
  f.advance(1s);
  auto b1 = f.acquire("bob");
  auto b2 = f.acquire("bob");
  f.advance(1001ms);
  REQUIRE(f.fakes->sessions.size() == 3);
  f.open(1);
  f.open(2);
  CHECK(b1->value);
  CHECK(b2->value);
  CHECK(f.release("alice", *a1->value).value);
}

TEST_CASE("permits wait for the handshake rate in the order they were asked", "[permit]") {
  auto pc = permit_config();
  pc.max_connections_total = 10;
  fixture f{pc};
  auto a = f.acquire("alice");
  auto b = f.acquire("bob");
  auto a2 = f.acquire("alice");
  REQUIRE(f.fakes->sessions.size() == 1); // one token at the start
  CHECK(f.fakes->sessions[0]->ep.username == "alice");
  f.advance(1001ms); // a token a second (the tick rounds up by a microsecond)
  REQUIRE(f.fakes->sessions.size() == 2);
  CHECK(f.fakes->sessions[1]->ep.username == "bob");
  f.advance(1001ms);
  REQUIRE(f.fakes->sessions.size() == 3);
  CHECK(f.fakes->sessions[2]->ep.username == "alice");
  CHECK(f.stats().connecting == 3);
}
