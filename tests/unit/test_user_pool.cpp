// Pool semantics (docs/architecture.md) on CAF's deterministic test coordinator with a fake
// transport: the real supervisor, user_pool and connection actors, virtual time, no
// threads and no sleeps. Replies are collected by small client actors and checked on the
// test thread after the scheduler ran.
#include <catch2/catch.hpp>

#include "pool_fixture.hpp"

using namespace sshpool;
using sshpool::test::fixture;
using sshpool::test::get;
using sshpool::test::leased_fixture;
using sshpool::test::reply;
using namespace std::chrono_literals;

namespace {

using call_list = std::vector<std::shared_ptr<reply<lease>>>;

/// `n` calls of alice's, made one after the other.
call_list acquire_n(fixture& f, int n) {
  call_list made;
  for (int i = 0; i < n; ++i)
    made.push_back(f.acquire("alice"));
  return made;
}

/// Every lease alice's pool gives with fixture::small() (2 connections x 2 channels): the
/// first two callers each wait for a handshake, the next two share those connections.
std::vector<lease> fill_to_the_caps(fixture& f) {
  std::vector<lease> held;
  for (std::size_t i = 0; i < 4; ++i) {
    auto r = f.acquire("alice");
    if (i < 2)
      f.open(i);
    REQUIRE(r->value);
    held.push_back(*r->value);
  }
  return held;
}

} // namespace

TEST_CASE("the first caller waits for one handshake, then gets a lease", "[pool]") {
  fixture f;
  auto a = f.acquire("alice");
  REQUIRE(f.fakes->sessions.size() == 1);
  CHECK(f.fakes->sessions[0]->opened);
  CHECK_FALSE(a->done);
  f.open(0);
  REQUIRE(a->done);
  REQUIRE(a->value);
  CHECK(a->value->user == "alice");
  auto st = f.stats();
  CHECK(st.total_connections == 1);
  CHECK(st.leases == 1);
  CHECK(st.user_count == 1);
}

TEST_CASE("concurrent first calls never exceed the cap nor orphan a connection", "[pool]") {
  fixture f; // cap 2 connections x 2 channels
  auto four = acquire_n(f, 4);
  // One handshake per waiting caller, bounded by the cap: 2, not 4.
  REQUIRE(f.fakes->sessions.size() == 2);
  f.open(0);
  f.open(1);
  std::map<std::uint64_t, int> per_conn;
  for (auto& c : four) {
    REQUIRE(c->done);
    REQUIRE(c->value);
    ++per_conn[c->value->connection_id];
  }
  CHECK(per_conn.size() == 2);
  for (auto& [id, n] : per_conn)
    CHECK(n == 2);
  CHECK(f.fakes->sessions.size() == 2);
  for (auto& s : f.fakes->sessions)
    CHECK_FALSE(s->closed);
  auto st = f.stats();
  CHECK(st.total_connections == 2);
  CHECK(st.leases == 4);
}

TEST_CASE("a single caller never starts a second handshake", "[pool]") {
  fixture f;
  auto a = f.ready_lease();
  REQUIRE(f.release("alice", a).value);
  for (int i = 0; i < 5; ++i) {
    auto b = f.acquire("alice");
    REQUIRE(b->value);
    CHECK(b->value->connection_id == a.connection_id);
    REQUIRE(f.release("alice", *b->value).value);
  }
  CHECK(f.fakes->sessions.size() == 1);
}

TEST_CASE("waiters are served in FIFO order as leases are released", "[pool]") {
  fixture f;
  auto held = fill_to_the_caps(f);
  auto w1 = f.acquire("alice");
  auto w2 = f.acquire("alice");
  auto w3 = f.acquire("alice");
  CHECK_FALSE(w1->done);
  CHECK(f.stats().waiters == 3);
  REQUIRE(f.release("alice", held[3]).value);
  CHECK(w1->done);
  CHECK_FALSE(w2->done);
  CHECK_FALSE(w3->done);
  REQUIRE(f.release("alice", held[0]).value);
  CHECK(w2->done);
  CHECK_FALSE(w3->done);
  CHECK(f.fakes->sessions.size() == 2);
}

TEST_CASE("a waiter gets pool_exhausted exactly at acquire_timeout", "[pool]") {
  fixture f;
  fill_to_the_caps(f);
  auto w = f.acquire("alice");
  f.expect_done_after(w, 5s);
  CHECK(w->err.code() == errc::pool_exhausted);
  CHECK(w->err.message().find("4 leases") != std::string::npos);
  CHECK(f.stats().waiters == 0);
}

TEST_CASE("beyond max_waiters_per_user callers are refused at once", "[pool]") {
  fixture f;
  fill_to_the_caps(f);
  auto waiting = acquire_n(f, 4);
  for (auto& w : waiting)
    CHECK_FALSE(w->done);
  auto refused = f.acquire("alice");
  REQUIRE(refused->done);
  CHECK(refused->err.code() == errc::pool_exhausted);
}

TEST_CASE("double release and another user's lease are errors, not negative counts", "[pool]") {
  fixture f;
  auto a = f.ready_lease();
  auto wrong = f.release("bob", a);
  CHECK(wrong.err.code() == errc::wrong_user);
  CHECK(f.release("alice", a).value);
  auto twice = f.release("alice", a);
  CHECK(twice.err.code() == errc::not_leased);
  auto forged = a;
  forged.id += 1000;
  CHECK(f.release("alice", forged).err.code() == errc::not_leased);
  CHECK(f.stats().leases == 0);
}

TEST_CASE("a dead connection leaves the count at once and waiters get a replacement", "[pool]") {
  fixture f;
  auto held = fill_to_the_caps(f);
  auto w1 = f.acquire("alice");
  auto w2 = f.acquire("alice");
  f.fakes->sessions[0]->lose();
  f.sched->run();
  // The dead connection stopped counting: one replacement handshake for the waiters.
  REQUIRE(f.fakes->sessions.size() == 3);
  CHECK(f.stats().total_connections == 2);
  CHECK_FALSE(w1->done);
  f.open(2);
  REQUIRE(w1->done);
  REQUIRE(w2->done);
  CHECK(w1->value->connection_id == w2->value->connection_id);
  // Leases of the dead connection can still be released.
  CHECK(f.release("alice", held[0]).value);
}

TEST_CASE("a failed handshake answers its waiters with the typed error", "[pool]") {
  fixture f; // 2 channels per connection
  auto a = f.acquire("alice");
  auto b = f.acquire("alice");
  REQUIRE(f.fakes->sessions.size() == 2);
  f.open(0, error{errc::auth_failed, "server refused the key"});
  // The handshake still pending can serve both callers: both keep waiting for it.
  CHECK_FALSE(a->done);
  CHECK_FALSE(b->done);
  f.open(1, error{errc::auth_failed, "server refused the key"});
  REQUIRE(a->done);
  REQUIRE(b->done);
  CHECK(a->err.code() == errc::auth_failed);
  CHECK(b->err.code() == errc::auth_failed);
  CHECK(f.fakes->sessions.size() == 2); // no retry loop against a refusing server
  CHECK(f.stats().total_connections == 0);
}

namespace {

/// The defaults of the report (3 connections x 10 channels, acquire_timeout 30 s), with a
/// backoff of at most 1 s after a first failure.
pool_config report_config() {
  pool_config pc;
  pc.max_connections_per_user = 3;
  pc.max_channels_per_connection = 10;
  pc.acquire_timeout = 30s;
  pc.reconnect_backoff_base = 1s;
  pc.reconnect_backoff_cap = 30s;
  pc.request_timeout = 30s;
  return pc;
}

std::size_t count_done(const call_list& made) {
  return static_cast<std::size_t>(
      std::count_if(made.begin(), made.end(), [](auto& c) { return c->done; }));
}

} // namespace

TEST_CASE("a failed handshake does not fail callers that other connections can serve", "[pool]") {
  fixture f{report_config()};
  auto calls = acquire_n(f, 30);
  REQUIRE(f.fakes->sessions.size() == 3);
  // sshd drops one handshake (MaxStartups) while the two others are still in progress.
  f.open(0, error{errc::connect_failed, "connection reset by peer"});
  CHECK(count_done(calls) == 0);
  f.open(1);
  f.open(2);
  // Two connections x 10 channels: the first 20 callers.
  REQUIRE(count_done(calls) == 20);
  for (std::size_t i = 0; i < 20; ++i)
    REQUIRE(calls[i]->value);
  // A release serves the head of the remaining callers.
  REQUIRE(f.release("alice", *calls[0]->value).value);
  REQUIRE(calls[20]->done);
  REQUIRE(calls[20]->value);
  CHECK_FALSE(calls[21]->done);
  // The failed handshake's slot is retried (a connection came up: the backoff is over) ...
  f.advance(1s);
  REQUIRE(f.fakes->sessions.size() == 4);
  CHECK(count_done(calls) == 21);
  // ... and its connection serves the other 9.
  f.open(3);
  std::map<std::uint64_t, int> per_conn; // the leases held (the first one was released)
  for (std::size_t i = 1; i < calls.size(); ++i) {
    REQUIRE(calls[i]->done);
    REQUIRE(calls[i]->value);
    ++per_conn[calls[i]->value->connection_id];
  }
  CHECK(per_conn.size() == 3);
  for (auto& [id, n] : per_conn)
    CHECK(n <= 10);
  CHECK(f.fakes->sessions.size() == 4);
  CHECK(f.stats().users.at(0).acquire_timeouts == 0);
}

TEST_CASE("when every handshake fails, the waiting callers get its error", "[pool]") {
  fixture f{report_config()};
  auto calls = acquire_n(f, 30);
  f.open(0, error{errc::connect_failed, "connection refused"});
  f.open(1, error{errc::connect_failed, "connection refused"});
  CHECK(count_done(calls) == 0); // the third handshake may still serve them all
  f.open(2, error{errc::connect_failed, "connection refused"});
  for (auto& c : calls) {
    REQUIRE(c->done);
    CHECK(c->err.code() == errc::connect_failed);
  }
  CHECK(f.fakes->sessions.size() == 3); // no new handshake during the backoff
}

TEST_CASE("failed handshakes are retried after their backoff while a connection serves", "[pool]") {
  fixture f{report_config()};
  auto calls = acquire_n(f, 30);
  f.open(0);
  REQUIRE(count_done(calls) == 10);
  f.open(1, error{errc::connect_failed, "connection reset by peer"});
  f.open(2, error{errc::connect_failed, "connection reset by peer"});
  CHECK(count_done(calls) == 10); // they wait for the ready connection or a retry
  f.advance(2s);                  // the backoff after two failures is at most 2 s
  REQUIRE(f.fakes->sessions.size() == 5);

  SECTION("retries that succeed serve the others in order") {
    f.open(3);
    CHECK(count_done(calls) == 20);
    for (std::size_t i = 0; i < 20; ++i)
      CHECK(calls[i]->done);
    f.open(4);
    for (auto& c : calls) {
      REQUIRE(c->done);
      CHECK(c->value);
    }
  }

  SECTION("while retries fail, callers wait until their acquire deadline") {
    std::size_t failed = 3;
    auto fail_new = [&] {
      while (failed < f.fakes->sessions.size())
        f.open(failed++, error{errc::connect_failed, "connection reset by peer"});
    };
    fail_new();
    for (int second = 2; second < 29; ++second) {
      f.advance(1s);
      fail_new();
      CHECK(count_done(calls) == 10);
    }
    f.advance(1s); // 30 s after the calls
    fail_new();
    for (std::size_t i = 10; i < calls.size(); ++i) {
      REQUIRE(calls[i]->done);
      CHECK(calls[i]->err.code() == errc::pool_exhausted);
    }
    CHECK(f.fakes->sessions.size() <= 15); // the backoff grows: no storm
  }
}

TEST_CASE("requests beyond max_channels wait in FIFO order for a channel slot", "[connection]") {
  leased_fixture f;
  auto r1 = f.forward(f.l, get("r1"), 30s);
  auto r2 = f.forward(f.l, get("r2"), 30s);
  auto r3 = f.forward(f.l, get("r3"), 30s);
  REQUIRE(f.session.forwarded.size() == 2);
  f.session.respond(f.session.forwarded[1], "second");
  f.sched->run();
  REQUIRE(r2->done);
  CHECK(r2->value->id == "r2");
  CHECK(r2->value->body == "second");
  REQUIRE(f.session.forwarded.size() == 3); // r3 took the freed slot
  f.session.respond(f.session.forwarded[0]);
  f.session.respond(f.session.forwarded[2]);
  f.sched->run();
  CHECK(r1->value->id == "r1");
  CHECK(r3->value->id == "r3");
}

TEST_CASE("a request past its deadline fails alone and its channel is cancelled", "[connection]") {
  leased_fixture f;
  auto slow = f.forward(f.l, get("slow"), 1s);
  auto other = f.forward(f.l, get("other"), 10s);
  auto queued = f.forward(f.l, get("queued"), 2s);
  f.expect_done_after(slow, 1s);
  CHECK(slow->err.code() == errc::request_timeout);
  REQUIRE(f.session.cancelled.size() == 1);
  CHECK(f.session.cancelled[0] == f.session.forwarded[0]);
  CHECK_FALSE(other->done);
  // The freed slot went to the queued request.
  REQUIRE(f.session.forwarded.size() == 3);
  f.session.respond(f.session.forwarded[2]);
  f.session.respond(f.session.forwarded[1]);
  f.sched->run();
  CHECK(queued->value);
  CHECK(other->value);
  // A late answer for the expired request is ignored.
  f.session.respond(f.session.forwarded[0]);
  f.sched->run();
  CHECK(f.session.closed == false);
}

TEST_CASE("a lost session fails requests in flight with connection_lost", "[connection]") {
  leased_fixture f;
  auto r = f.forward(f.l, get("r"), 30s);
  f.session.lose();
  f.sched->run();
  REQUIRE(r->done);
  CHECK(r->err.code() == errc::connection_lost);
  CHECK(f.stats().total_connections == 0);
  auto late = f.forward(f.l, get("late"), 30s);
  REQUIRE(late->done);
  CHECK(late->err.code() == errc::connection_lost);
}

TEST_CASE("invalid requests never reach the transport", "[connection]") {
  leased_fixture f;
  auto req = get("bad");
  req.headers = {{"x-a", "b\r\nc: d"}};
  auto r = f.forward(f.l, req, 30s);
  REQUIRE(r->done);
  CHECK(r->err.code() == errc::invalid_request);
  CHECK(f.session.forwarded.empty());
}

TEST_CASE("a caller waiting for its handshake is bounded by it, not by acquire_timeout", "[pool]") {
  fixture f; // acquire_timeout 5 s
  auto slow = f.acquire("alice");
  f.advance(6s);
  CHECK_FALSE(slow->done); // its handshake is still running (the connector bounds it)
  f.open(0);
  REQUIRE(slow->done);
  CHECK(slow->value);

  CHECK(f.stats().users.at(0).acquire_timeouts == 0);
  REQUIRE(f.release("alice", *slow->value).value);
}

TEST_CASE("a slow handshake that fails hands its error to the caller waiting for it", "[pool]") {
  fixture f;
  auto a = f.acquire("alice");
  f.advance(6s);
  CHECK_FALSE(a->done);
  f.open(0, error{errc::timeout, "handshake exceeded its deadline"});
  REQUIRE(a->done);
  CHECK(a->err.code() == errc::timeout);
}
