// The engine against fault_sshd (issue #6): the SSH-level faults OpenSSH will not produce on
// demand. Each case asserts the typed error the caller gets, a bound on how long it took,
// and that the connection (or its replacement) serves again afterwards.
#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <string>

#include "sshpool/sshpool.hpp"
#include "support/fault_sshd.hpp"
#include "support/requests.hpp"
#include "support/timing.hpp"
#include "support/world.hpp"

using namespace sshpool;
using namespace sshpool::test;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

engine_config fault_config() {
  engine_config cfg;
  cfg.pool.acquire_timeout = 5s;
  cfg.pool.connect_timeout = 5s;
  cfg.pool.request_timeout = 5s;
  cfg.log_level = "error"; // the faults make the engine warn, as it should
  return cfg;
}

/// A fault server, a backend behind it, and an engine whose user "alice" reaches the
/// backend through the fault server.
struct world : basic_world<fault_sshd> {
  explicit world(engine_config cfg = fault_config()) : basic_world(std::move(cfg)) {}
};

/// A forward's result and how long the call took.
struct timed_result {
  expected<response> res;
  steady::duration elapsed;
};

/// Forwards `req` on `conn` with `deadline`, timing the call.
timed_result timed_forward(const connection& conn, const request& req,
                           std::chrono::milliseconds deadline) {
  auto start = steady::now();
  auto res = conn.forward(req, deadline);
  return {std::move(res), steady::now() - start};
}

/// Checks that `t` failed with `code`; a failure shows what came back and when.
void check_failed(const timed_result& t, errc code) {
  INFO(describe(t.res) << " after " << ms(t.elapsed) << " ms");
  REQUIRE_FALSE(t.res);
  CHECK(t.res.error().code() == code);
}

/// Checks that `t` failed with request_timeout at its `deadline`, not before and not more
/// than 500 ms after.
void check_timed_out_at(const timed_result& t, std::chrono::milliseconds deadline) {
  check_failed(t, errc::request_timeout);
  CHECK(t.elapsed >= deadline);
  CHECK(t.elapsed < deadline + 500ms);
}

/// Checks that `t` succeeded with status 200; a failure shows what came back and when.
void check_ok(const timed_result& t) {
  INFO(describe(t.res) << " after " << ms(t.elapsed) << " ms");
  REQUIRE(t.res);
  CHECK(t.res->status == 200);
}

/// Checks that alice's `conn` serves a GET, then releases it: the pool is left with one
/// connection and no lease, the server having seen `connections` in all.
void check_serves_then_release(world& w, connection& conn, std::uint64_t connections) {
  check_ok(timed_forward(conn, make_request("ok", "GET", "/echo"), 5s));
  CHECK(w.eng.pool().release_connection("alice", conn));
  auto stats = w.eng.pool().get_pool_stats();
  CHECK(stats.leases == 0);
  CHECK(stats.total_connections == 1);
  CHECK(w.sshd.snapshot().connections == connections);
}

/// The request on a channel of its own: the engine does not keep a channel whose request
/// said `Connection: close`, so the next request has to open a new one.
request on_new_channel(request req) {
  req.headers.emplace_back("Connection", "close");
  return req;
}

} // namespace

TEST_CASE("the fault server relays requests both ways while it behaves", "[faults]") {
  world w;
  auto conn = w.lease("alice");
  auto get = conn->forward(make_request("g", "GET", "/echo"));
  INFO(describe(get));
  REQUIRE(get);
  CHECK(get->status == 200);
  REQUIRE(get->header("x-backend") != nullptr);
  CHECK(*get->header("x-backend") == "backend-a");
  // Larger than the 32,000-byte window libssh's server grants at first: the window has to
  // grow in both directions for this to come back whole.
  auto body = pattern(300000);
  auto post = conn->forward(make_request("p", "POST", "/echo", body));
  REQUIRE(post);
  CHECK(post->body == body);
  // Close-delimited: the target's close travels as EOF and CLOSE.
  auto closed = conn->forward(make_request("c", "GET", "/close/5000"));
  REQUIRE(closed);
  CHECK(closed->body == pattern(5000));
  CHECK(w.eng.pool().release_connection("alice", *conn));
  auto seen = w.sshd.snapshot();
  CHECK(seen.connections == 1);
  CHECK(seen.authenticated == 1);
  CHECK(seen.channels_accepted >= 1);
  CHECK(seen.channels_refused == 0);
  CHECK(w.backend.requests_received() == 3);
}

TEST_CASE("a channel open refused by the server's policy fails the request alone, with "
          "forwarding_prohibited",
          "[faults]") {
  world w;
  auto conn = w.lease("alice");
  w.sshd.refuse_channel_open = true;
  auto refused = timed_forward(*conn, make_request("r", "GET", "/echo"), 5s);
  check_failed(refused, errc::forwarding_prohibited);
  CHECK_THAT(refused.res.error().message(),
             Catch::Contains("SSH reason 1 (administratively prohibited)"));
  CHECK(refused.elapsed < 1s); // the refusal is an answer: no waiting for the deadline
  CHECK(w.sshd.snapshot().channels_refused == 1);
  CHECK(w.backend.requests_received() == 0);
  CHECK(conn->is_healthy());

  // The SSH connection itself was never at fault: it serves once opens are accepted again.
  w.sshd.refuse_channel_open = false;
  check_serves_then_release(w, *conn, 1);
  CHECK(w.eng.metrics().requests["forwarding_prohibited"] == 1);
}

TEST_CASE("a peer that stops answering keepalives is found dead and replaced", "[faults]") {
  auto cfg = fault_config();
  cfg.pool.keepalive_interval = 200ms;
  cfg.pool.keepalive_timeout = 400ms;
  world w{cfg};
  auto conn = w.lease("alice");
  REQUIRE(conn->forward(make_request("first", "GET", "/echo")));
  // While the server answers, probes come and the connection stays healthy.
  REQUIRE(w.sshd.wait_until([](const fault_sshd::counters& c) { return c.keepalives >= 2; }, 5s));
  CHECK(conn->is_healthy());

  // Now the server stays connected but answers nothing, like a hung sshd. A request on the
  // wire (to a backend that never answers either) must end with an error, not a hang.
  w.sshd.ignore_keepalives = true;
  auto hung = timed_forward(*conn, make_request("hung", "GET", "/hang"), 10s);
  check_failed(hung, errc::connection_lost);
  // The failing probe went out at most one interval after the switch, or one more if a
  // packet of the request (a window adjust) happened to answer the first; it fails one
  // timeout later. One second of slack for a loaded machine; far below the 10 s deadline.
  CHECK(hung.elapsed >= cfg.pool.keepalive_timeout - 50ms);
  CHECK(hung.elapsed < 2 * cfg.pool.keepalive_interval + cfg.pool.keepalive_timeout + 1s);
  CHECK_FALSE(conn->is_healthy());
  CHECK(w.sshd.snapshot().keepalives_ignored >= 1);
  CHECK(w.eng.metrics().keepalive_failures >= 1);

  // The pool dropped it at once: the next lease is a new connection that works.
  w.sshd.ignore_keepalives = false;
  w.eng.pool().release_connection("alice", *conn); // its connection is gone; nothing to check
  auto next = w.lease("alice");
  CHECK(next->id() != conn->id());
  check_serves_then_release(w, *next, 2);
}

TEST_CASE("a zero window ends the request at its deadline and holds up nobody else", "[faults]") {
  auto cfg = fault_config();
  cfg.reactor_threads = 1; // alice's and bob's sessions share one reactor thread
  world w{cfg};
  neighbour<fault_sshd> other{w.eng, "bob", "backend-b"};
  auto alice = w.lease("alice");
  auto bob = w.lease("bob");

  w.sshd.zero_window = true;
  // The body is 8 windows' worth: the engine can send the first 32,000 bytes, then the
  // window stays at zero and the rest can never be written.
  auto body = pattern(256 << 10);
  constexpr auto deadline = 1s;
  auto stuck = std::async(std::launch::async, [&] {
    return timed_forward(*alice, make_request("stuck", "POST", "/echo", body), deadline);
  });
  REQUIRE(
      w.sshd.wait_until([](const fault_sshd::counters& c) { return c.open_channels >= 1; }, 5s));
  // Meanwhile bob, on the same reactor thread, is served as usual.
  for (int i = 0; i < 5; ++i) {
    auto served = timed_forward(*bob, make_request("b" + std::to_string(i), "GET", "/echo"), 5s);
    check_ok(served);
    CHECK(*served.res->header("x-backend") == "backend-b");
    CHECK(served.elapsed < 500ms);
  }
  check_timed_out_at(stuck.get(), deadline);

  // A request that fits in the window is written whole, but the server reads none of it,
  // so no response can come either.
  auto small = timed_forward(*alice, make_request("small", "GET", "/echo"), 500ms);
  check_failed(small, errc::request_timeout);
  CHECK(small.elapsed < 1s);
  CHECK(w.backend.requests_received() == 0);
  CHECK(alice->is_healthy());

  // Once the window opens again, the same connection carries the whole body.
  w.sshd.zero_window = false;
  auto after = alice->forward(make_request("after", "POST", "/echo", body), 5s);
  INFO(describe(after));
  REQUIRE(after);
  CHECK(after->body == body);
  // The stuck POST never reached the backend whole (its channel closed after 32,000 of
  // 262,144 bytes). The small GET was written whole before its deadline: the server may
  // still deliver what it received before the close, as sshd does.
  CHECK(w.backend.requests_received() >= 1);
  CHECK(w.backend.requests_received() <= 2);
  CHECK(w.backend.received().back().body_size == body.size()); // "after", whole
  CHECK(w.sshd.snapshot().connections == 1);
  CHECK(w.eng.pool().release_connection("alice", *alice));
  CHECK(w.eng.pool().release_connection("bob", *bob));
}

TEST_CASE("a slow channel-open confirmation: waited for within the deadline, cut after it",
          "[faults]") {
  world w;
  auto conn = w.lease("alice");
  using counters = fault_sshd::counters;

  // Below the deadline: the request waits for the confirmation and succeeds.
  w.sshd.delay_channel_open = 300ms;
  auto slow = timed_forward(*conn, on_new_channel(make_request("slow", "GET", "/echo")), 2s);
  check_ok(slow);
  CHECK(slow.elapsed >= 300ms);
  CHECK(slow.elapsed < 2s);

  // Above the deadline: request_timeout at the deadline, not when the server answers.
  w.sshd.delay_channel_open = 1500ms;
  constexpr auto deadline = 500ms;
  auto late = std::async(std::launch::async, [&] {
    return timed_forward(*conn, on_new_channel(make_request("late", "GET", "/echo")), deadline);
  });
  REQUIRE(w.sshd.wait_until([](const counters& c) { return c.channel_opens >= 2; }, 5s));
  // While that open is pending, another channel of the same connection opens at once.
  w.sshd.delay_channel_open = 0ms;
  auto quick = timed_forward(*conn, on_new_channel(make_request("quick", "GET", "/echo")), 2s);
  check_ok(quick);
  CHECK(quick.elapsed < 400ms);
  check_timed_out_at(late.get(), deadline);

  // The confirmation comes after the engine gave up: the engine closes that channel, so
  // nothing stays open on either side.
  REQUIRE(w.sshd.wait_until(
      [](const counters& c) { return c.channels_accepted == 3 && c.open_channels == 0; }, 5s));
  CHECK(conn->is_healthy());
  auto after = conn->forward(make_request("after", "GET", "/echo"), 2s);
  INFO(describe(after));
  REQUIRE(after);
  CHECK(w.eng.pool().release_connection("alice", *conn));
  CHECK(w.eng.metrics().requests["request_timeout"] == 1);
}

TEST_CASE("max_channels_per_connection holds on the wire, channels abandoned while opening "
          "included",
          "[faults]") {
  auto cfg = fault_config();
  cfg.pool.max_channels_per_connection = 1;
  world w{cfg};
  auto conn = w.lease("alice");

  // The open of "late" is answered long after its deadline: the engine abandons the
  // channel while it is still opening.
  w.sshd.delay_channel_open = 1000ms;
  check_failed(timed_forward(*conn, make_request("late", "GET", "/echo"), 200ms),
               errc::request_timeout);
  REQUIRE(w.sshd.snapshot().channel_opens == 1);

  // The next request may not open a second channel meanwhile: it waits until the server
  // answered the abandoned open and the engine closed that channel.
  w.sshd.delay_channel_open = 0ms;
  auto next = timed_forward(*conn, make_request("next", "GET", "/echo"), 3s);
  check_ok(next);
  CHECK(next.elapsed >= 500ms);
  auto seen = w.sshd.snapshot();
  CHECK(seen.channel_opens == 2);
  CHECK(seen.peak_channels == 1);
  CHECK(w.eng.pool().release_connection("alice", *conn));
}
