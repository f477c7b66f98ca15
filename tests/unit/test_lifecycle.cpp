// Lifecycle on CAF's deterministic test coordinator (virtual time, no sleeps): idle
// eviction by the cleanup actor, keepalive health, validate-before-use, max_lifetime,
// reconnect backoff, pool retirement, and drains by the shutdown actor.
#include <catch2/catch.hpp>

#include "pool_fixture.hpp"

using namespace sshpool;
using sshpool::test::fixture;
using sshpool::test::get;
using namespace std::chrono_literals;

namespace {

pool_config lifecycle_config() {
  auto pc = fixture::small();
  pc.max_idle_time = 5min;
  pc.cleanup_interval = 30s;
  pc.keepalive_interval = 60s;
  pc.keepalive_timeout = 15s;
  pc.validation_idle_threshold = 1h; // probed only where a test says so
  pc.max_lifetime = 24h;
  pc.request_timeout = 2h;
  pc.acquire_timeout = 2h;
  return pc;
}

} // namespace

TEST_CASE("cleanup evicts after max_idle_time, within one cleanup_interval, never earlier",
          "[cleanup]") {
  fixture f{lifecycle_config()};
  caf::anon_send(f.cleanup, start_atom_v);
  f.sched->run();
  auto l = f.ready_lease();
  REQUIRE(f.release("alice", l).value);
  auto released = f.sched->clock().now();
  auto& session = *f.fakes->sessions[0];
  while (!session.closed && f.sched->clock().now() - released < 10min)
    f.advance(1s);
  auto evicted_after = f.sched->clock().now() - released;
  CHECK(session.closed);
  CHECK(evicted_after >= 5min);
  CHECK(evicted_after <= 5min + 30s);
  auto stats = f.cleanup_stats_now();
  CHECK(stats.cleanup_count == 1);
  CHECK(stats.runs >= 10);
  CHECK(stats.is_running);
  // The pool left with nothing retired: memory does not grow with users ever seen.
  CHECK(f.stats().user_count == 0);
  // The user comes back: a fresh pool, a fresh connection.
  CHECK(f.acquire_new("alice", 2)->value);
}

TEST_CASE("a leased or streaming connection is never evicted", "[cleanup]") {
  fixture f{lifecycle_config()};
  caf::anon_send(f.cleanup, start_atom_v);
  auto held = f.ready_lease();      // connection 0: stays leased
  auto streaming = f.ready_lease(); // connection 1: released mid-request
  auto r = f.forward(streaming, get("stream"), 2h);
  REQUIRE(f.release("alice", streaming).value);
  f.advance(20min);
  CHECK_FALSE(f.fakes->sessions[0]->closed);
  CHECK_FALSE(f.fakes->sessions[1]->closed);
  CHECK(f.cleanup_stats_now().cleanup_count == 0);
  // Once the stream ends and the idle time passes, the released one goes.
  f.fakes->sessions[1]->respond(f.fakes->sessions[1]->forwarded.at(0));
  f.sched->run();
  CHECK(r->value);
  f.advance(5min + 30s);
  CHECK(f.fakes->sessions[1]->closed);
  CHECK_FALSE(f.fakes->sessions[0]->closed);
  REQUIRE(f.release("alice", held).value);
}

TEST_CASE("update_config reschedules at once and stale ticks are ignored", "[cleanup]") {
  fixture f{lifecycle_config()};
  caf::anon_send(f.cleanup, start_atom_v);
  f.sched->run();
  f.advance(10s);
  auto before = f.cleanup_stats_now().runs;
  CHECK(before == 0);
  auto updated =
      f.ask_void(f.cleanup, config_atom_v, cleanup_config{std::chrono::seconds(5), 1min});
  CHECK(updated->done);
  f.advance(5s); // the new interval counts from the update, not from the old tick
  CHECK(f.cleanup_stats_now().runs == 1);
  f.advance(15s); // t = 30 s: the old generation's tick fires and is ignored
  CHECK(f.cleanup_stats_now().runs == 4);
  CHECK(f.cleanup_stats_now().config.cleanup_interval == 5s);
  caf::anon_send(f.cleanup, pause_atom_v);
  f.sched->run();
  f.advance(1min);
  CHECK(f.cleanup_stats_now().runs == 4);
  CHECK_FALSE(f.cleanup_stats_now().is_running);
}

TEST_CASE("trigger_cleanup closes exactly the idle connections and says how many", "[cleanup]") {
  auto pc = lifecycle_config();
  pc.max_connections_per_user = 4;
  pc.max_channels_per_connection = 1;
  fixture f{pc};
  std::vector<lease> leases;
  for (int i = 0; i < 4; ++i)
    leases.push_back(f.ready_lease());
  for (int i = 0; i < 3; ++i)
    REQUIRE(f.release("alice", leases[static_cast<std::size_t>(i)]).value);
  f.advance(6min);
  auto n = f.ask<std::uint64_t>(f.cleanup, trigger_atom_v);
  REQUIRE(n->value);
  CHECK(*n->value == 3);
  CHECK(f.stats().total_connections == 1);
  auto again = f.ask<std::uint64_t>(f.cleanup, trigger_atom_v);
  CHECK(*again->value == 0);
  CHECK(f.cleanup_stats_now().cleanup_count == 3);
  CHECK(f.cleanup_stats_now().runs == 2);
}

TEST_CASE("a missed keepalive marks the connection unhealthy and the pool replaces it",
          "[health]") {
  fixture f{lifecycle_config()};
  f.fakes->auto_alive = false; // a hung (SIGSTOPped) server
  auto l = f.ready_lease();
  auto& session = *f.fakes->sessions[0];
  auto healthy = f.ask<bool>(l.connection, health_atom_v);
  CHECK(*healthy->value);
  f.advance(60s);
  CHECK(session.probes == 1);
  f.advance(15s - 1ms);
  CHECK(*f.ask<bool>(l.connection, health_atom_v)->value);
  auto pending = f.forward(l, get("in-flight"), 2h);
  f.advance(1ms);
  REQUIRE(pending->done);
  CHECK(pending->err.code() == errc::connection_lost);
  CHECK(session.closed);
  CHECK(f.stats().total_connections == 0);
  f.fakes->auto_alive = true;
  CHECK(f.acquire_new("alice", 2)->value);
}

TEST_CASE("an answered keepalive keeps the connection", "[health]") {
  fixture f{lifecycle_config()};
  auto l = f.ready_lease();
  f.advance(10min);
  CHECK(f.fakes->sessions[0]->probes == 10);
  CHECK_FALSE(f.fakes->sessions[0]->closed);
  CHECK(*f.ask<bool>(l.connection, health_atom_v)->value);
}

TEST_CASE("a connection idle beyond the validation threshold is probed before it is leased",
          "[health]") {
  auto pc = lifecycle_config();
  pc.validation_idle_threshold = 10s;
  pc.keepalive_interval = 1h;
  fixture f{pc};
  f.fakes->auto_alive = false;
  auto l = f.ready_lease();
  REQUIRE(f.release("alice", l).value);
  auto fresh = f.acquire("alice"); // used 0 s ago: no probe
  REQUIRE(fresh->value);
  REQUIRE(f.release("alice", *fresh->value).value);
  CHECK(f.fakes->sessions[0]->probes == 0);
  f.advance(11s);
  auto stale = f.acquire("alice");
  CHECK(f.fakes->sessions[0]->probes == 1);
  CHECK_FALSE(stale->done); // waits for the answer
  f.fakes->sessions[0]->answer_probe();
  f.sched->run();
  REQUIRE(stale->value);
  CHECK(stale->value->connection_id == l.connection_id);
  REQUIRE(f.release("alice", *stale->value).value);
  // A dead one found by validation is replaced before the caller sees it.
  f.advance(11s);
  auto replaced = f.acquire("alice");
  f.advance(15s);
  REQUIRE(f.fakes->sessions.size() == 2);
  f.open(1);
  REQUIRE(replaced->value);
  CHECK(replaced->value->connection_id != l.connection_id);
}

TEST_CASE("connections retire after max_lifetime, only when idle", "[health]") {
  auto pc = lifecycle_config();
  pc.max_lifetime = 30min;
  fixture f{pc};
  auto l = f.ready_lease();
  f.advance(31min);
  CHECK_FALSE(f.fakes->sessions[0]->closed); // leased: never cut
  REQUIRE(f.release("alice", l).value);
  CHECK(f.fakes->sessions[0]->closed); // idle and past its lifetime: drained at once
  CHECK(f.acquire_new("alice", 2)->value);
}

TEST_CASE("failed handshakes back off with jitter; callers get the error meanwhile",
          "[reconnect]") {
  fixture f{lifecycle_config()}; // backoff base 1 s, cap 30 s (the defaults)
  auto a = f.acquire("alice");
  f.open(0, error{errc::connect_failed, "connection refused"});
  REQUIRE(a->done);
  CHECK(a->err.code() == errc::connect_failed);
  // Within the backoff (at most base = 1 s after the first failure) callers fail fast...
  auto fast = f.acquire("alice");
  bool fast_failed = fast->done && fast->err.code() == errc::connect_failed;
  bool retried = f.fakes->sessions.size() == 2; // jitter may have drawn 0 ms
  CHECK((fast_failed || retried));
  if (fast_failed) {
    CHECK(fast->err.message().find("next attempt in") != std::string::npos);
    CHECK(f.fakes->sessions.size() == 1); // no new handshake
    f.advance(1s);
    CHECK(f.acquire_new("alice", 2)->value); // the backoff is over: one new attempt
  }
}

TEST_CASE("auth failures are not retried in a loop, across pool retirements", "[reconnect]") {
  fixture f{lifecycle_config()}; // backoff cap 30 s
  int errors = 0;
  for (int second = 0; second < 20; ++second) {
    auto a = f.acquire("alice");
    if (!a->done) // a handshake was started: the server refuses the key
      f.open(f.fakes->sessions.size() - 1, error{errc::auth_failed, "refused"});
    REQUIRE(a->done);
    errors += a->err.code() == errc::auth_failed ? 1 : 0;
    f.advance(1s);
  }
  CHECK(errors == 20);                  // every caller learns why, at once
  CHECK(f.fakes->sessions.size() == 1); // a refusal waits at least cap / 2 = 15 s
}

TEST_CASE("the backoff of a failing server grows across pool retirements", "[reconnect]") {
  fixture f{lifecycle_config()}; // base 1 s, cap 30 s
  for (int second = 0; second < 60; ++second) {
    auto a = f.acquire("alice");
    if (!a->done)
      f.open(f.fakes->sessions.size() - 1, error{errc::connect_failed, "refused"});
    REQUIRE(a->done);
    f.advance(1s);
  }
  // A caller every second for a minute: without growth that would be ~60 handshakes.
  CHECK(f.fakes->sessions.size() <= 12);
  CHECK(f.fakes->sessions.size() >= 3);
}

TEST_CASE("a stream on a connection past its lifetime is not cut", "[health]") {
  auto pc = lifecycle_config();
  pc.max_lifetime = 30min;
  fixture f{pc};
  caf::anon_send(f.cleanup, start_atom_v);
  auto l = f.ready_lease();
  f.advance(25min);
  auto stream = f.forward(l, get("ten-minute-stream"), 2h);
  REQUIRE(f.release("alice", l).value); // released early; the request goes on
  f.advance(10min);                     // past max_lifetime, many cleanup ticks
  auto& session = *f.fakes->sessions[0];
  CHECK_FALSE(stream->done);
  CHECK_FALSE(session.closed);
  session.respond(session.forwarded.at(0));
  f.sched->run();
  REQUIRE(stream->value);
  CHECK(session.closed); // retired once nothing was in flight
}

TEST_CASE("after drain_user the user is admitted again, even with a lease held", "[shutdown]") {
  fixture f{lifecycle_config()};
  auto l = f.ready_lease();
  auto report = f.ask<shutdown_report>(f.sup, drain_atom_v, std::string{"alice"});
  REQUIRE(report->value);
  CHECK(report->value->connections_closed == 1);
  CHECK(f.acquire_new("alice", 2)->value); // the old lease is still held
  CHECK(f.release("alice", l).value);
  auto second = f.ask<shutdown_report>(f.sup, drain_atom_v, std::string{"alice"});
  REQUIRE(second->value);
  CHECK(second->value->connections_closed == 1); // fresh counts for a new drain
}

TEST_CASE("an idle engine drains at once", "[shutdown]") {
  fixture f{lifecycle_config()};
  auto l = f.ready_lease();
  REQUIRE(f.release("alice", l).value);
  auto report = f.ask<shutdown_report>(f.shutdown, drain_atom_v, caf::timespan{5s});
  REQUIRE(report->value);
  CHECK(report->value->duration == 0ms);
  CHECK(report->value->connections_closed == 1);
  CHECK(report->value->in_flight_at_start == 0);
  CHECK_FALSE(report->value->forced);
  CHECK(f.fakes->sessions[0]->closed);
  auto refused = f.acquire("alice");
  CHECK(refused->err.code() == errc::shutting_down);
}

TEST_CASE("a drain lets requests finish, then cuts the rest at the end of the grace period",
          "[shutdown]") {
  fixture f{lifecycle_config()};
  auto l = f.ready_lease();
  auto& session = *f.fakes->sessions[0];
  auto r1 = f.forward(l, get("r1"), 2h);
  auto r2 = f.forward(l, get("r2"), 2h);
  auto waiter = f.acquire("bob"); // a handshake in progress for bob
  auto report = f.ask<shutdown_report>(f.shutdown, drain_atom_v, caf::timespan{5s});
  CHECK_FALSE(report->done);
  CHECK(waiter->err.code() == errc::shutting_down);
  auto late = f.forward(l, get("late"), 2h); // not in flight at the start: refused
  CHECK(late->err.code() == errc::shutting_down);
  f.advance(1s);
  session.respond(session.forwarded.at(0));
  f.sched->run();
  CHECK(r1->value);
  CHECK_FALSE(report->done);
  f.advance(4s);
  REQUIRE(report->done);
  CHECK(r2->err.code() == errc::connection_lost);
  auto& rep = *report->value;
  CHECK(rep.in_flight_at_start == 2);
  CHECK(rep.completed_during_drain == 1);
  CHECK(rep.cut == 1);
  CHECK(rep.completed_during_drain + rep.cut == rep.in_flight_at_start);
  CHECK(rep.forced);
  CHECK(rep.duration == 5s);
  CHECK(session.closed);
  // A second caller gets the same report.
  auto again = f.ask<shutdown_report>(f.shutdown, drain_atom_v, caf::timespan{5s});
  CHECK(again->value->cut == 1);
}

TEST_CASE("drain_user stops admitting one user and lets the others work", "[shutdown]") {
  fixture f{lifecycle_config()};
  auto a = f.ready_lease();
  auto r = f.forward(a, get("r"), 2h);
  REQUIRE(f.release("bob", f.ready_lease("bob")).value);
  auto report = f.ask<shutdown_report>(f.sup, drain_atom_v, std::string{"alice"});
  CHECK_FALSE(report->done);
  CHECK(f.acquire("alice")->err.code() == errc::shutting_down);
  auto bob_again = f.acquire("bob");
  CHECK(bob_again->value); // bob is unaffected: its idle connection, at once
  f.fakes->sessions[0]->respond(f.fakes->sessions[0]->forwarded.at(0));
  f.sched->run();
  REQUIRE(report->done);
  CHECK(report->value->in_flight_at_start == 1);
  CHECK(report->value->completed_during_drain == 1);
  CHECK(report->value->cut == 0);
  CHECK(f.fakes->sessions[0]->closed);
  REQUIRE(f.release("alice", a).value);
  // Drained, alice is admitted again (with a new connection).
  CHECK(f.acquire_new("alice", 3)->value);
}
