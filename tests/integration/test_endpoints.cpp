// Users at run time against a real sshd (issue #16): remove_endpoint drains a user while its
// request in flight finishes and its new calls get unknown_user at once; set_endpoint with a
// new endpoint moves new connections to it while idle old ones close and leased old ones
// close on release. Another user of the engine is untouched throughout: same connection,
// no new handshake.
#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <string>

#include "backend/http_backend.hpp"
#include "sshpool/sshpool.hpp"
#include "support/requests.hpp"
#include "support/test_sshd.hpp"
#include "support/timing.hpp"
#include "support/world.hpp"

using namespace sshpool;
using namespace sshpool::test;
using namespace std::chrono_literals;
using sshpool::demo::http_backend;

namespace {

using world = basic_world<test_sshd>;

/// The value of header `name` of `res` ("" if absent).
std::string header_of(const response& res, std::string_view name) {
  auto* value = res.header(name);
  return value ? *value : std::string{};
}

/// The handshakes of `user` so far (0 if the engine has no pool for it).
std::uint64_t handshakes_of(engine& eng, const std::string& user) {
  for (auto& u : eng.pool().get_pool_stats().users)
    if (u.user == user)
      return u.handshakes;
  return 0;
}

/// bob, another user of the engine, with a leased connection that served once: what a
/// change of alice must leave alone.
struct bystander {
  explicit bystander(world& w) : user(w.eng, "bob", "backend-b"), conn(w.lease("bob")) {
    REQUIRE(conn->forward(get("bob-1", "/echo")));
    handshakes = handshakes_of(w.eng, "bob");
  }

  /// Still the same healthy connection, and no handshake since.
  void check_untouched(engine& eng) {
    CHECK(conn->is_healthy());
    CHECK(handshakes_of(eng, "bob") == handshakes);
  }

  neighbour<test_sshd> user;
  expected<connection> conn;
  std::uint64_t handshakes = 0;
};

} // namespace

TEST_CASE("remove_endpoint drains the user, refuses it at once and leaves the others alone",
          "[users]") {
  auto cfg = quiet_config(5s, 10s);
  cfg.pool.shutdown_grace_period = 10s;
  cfg.pool.max_connections_per_user = 1; // a second lease shares the connection at once
  world w{cfg};
  bystander bob{w};

  auto alice = w.lease("alice");
  auto slow = alice->forward_async(get("slow", "/slow/1500"));
  auto removed = std::async(std::launch::async, [&] { return w.eng.remove_endpoint("alice"); });
  // From the removal on, a call for alice gets unknown_user at once (before it, a shared
  // lease, given back).
  expected<connection> refused = error{errc::internal, "not tried"};
  REQUIRE(eventually([&] {
    refused = w.eng.pool().get_connection("alice");
    if (refused)
      REQUIRE(w.eng.pool().release_connection("alice", *refused));
    return !refused;
  }));
  CHECK(refused.error().code() == errc::unknown_user);
  CHECK(removed.wait_for(0s) == std::future_status::timeout); // still draining
  // Bob's connection serves on meanwhile.
  auto bob_res = bob.conn->forward(get("bob-2", "/echo"));
  REQUIRE(bob_res);
  CHECK(header_of(*bob_res, "X-Backend") == "backend-b");

  REQUIRE(slow.wait_for(10s) == std::future_status::ready);
  auto slow_res = slow.get();
  INFO(describe(slow_res));
  CHECK(slow_res);
  REQUIRE(removed.wait_for(10s) == std::future_status::ready);
  auto report = removed.get();
  REQUIRE(report);
  CHECK(report->in_flight_at_start == 1);
  CHECK(report->completed_during_drain == 1);
  CHECK(report->cut == 0);
  CHECK(report->connections_closed >= 1);
  auto after = w.eng.pool().get_connection("alice");
  REQUIRE_FALSE(after);
  CHECK(after.error().code() == errc::unknown_user);
  auto twice = w.eng.remove_endpoint("alice");
  REQUIRE_FALSE(twice);
  CHECK(twice.error().code() == errc::unknown_user);

  // Bob: the same connection, no handshake since, and it is the one leased again.
  bob.check_untouched(w.eng);
  REQUIRE(w.eng.pool().release_connection("bob", *bob.conn));
  auto again = w.lease("bob");
  CHECK(again->id() == bob.conn->id());

  // Alice may come back.
  REQUIRE(w.eng.set_endpoint("alice", w.sshd.make_endpoint(w.backend.port())));
  auto back = w.lease("alice");
  CHECK(back->forward(get("back", "/echo")));
}

TEST_CASE("a new endpoint: new connections use it, idle old ones close, leased ones on release",
          "[users]") {
  auto cfg = quiet_config(5s, 10s);
  cfg.pool.max_connections_per_user = 3;
  world w{cfg};
  bystander bob{w};

  // Two connections of alice to the old endpoint: one leased, one idle.
  auto leased = w.lease("alice");
  auto idle = w.lease("alice");
  REQUIRE(leased->id() != idle->id());
  REQUIRE(w.eng.pool().release_connection("alice", *idle));

  http_backend other{http_backend::options{"backend-new"}};
  REQUIRE(w.eng.set_endpoint("alice", w.sshd.make_endpoint(other.port())));
  CHECK(eventually([&] { return !idle->is_healthy(); }, 5s));
  // The leased one still works, against the old endpoint.
  auto old_res = leased->forward(get("old", "/echo"));
  REQUIRE(old_res);
  CHECK(header_of(*old_res, "X-Backend") == "backend-a");
  // A new lease is a new connection, to the new endpoint.
  auto fresh = w.lease("alice");
  CHECK(fresh->id() != leased->id());
  CHECK(fresh->id() != idle->id());
  auto new_res = fresh->forward(get("new", "/echo"));
  REQUIRE(new_res);
  CHECK(header_of(*new_res, "X-Backend") == "backend-new");
  // The leased old one closes once released.
  CHECK(leased->is_healthy());
  REQUIRE(w.eng.pool().release_connection("alice", *leased));
  CHECK(eventually([&] { return !leased->is_healthy(); }, 5s));
  CHECK(fresh->is_healthy());

  // The same endpoint again changes nothing.
  REQUIRE(w.eng.set_endpoint("alice", w.sshd.make_endpoint(other.port())));
  CHECK(fresh->is_healthy());
  auto same = fresh->forward(get("same", "/echo"));
  CHECK(same);

  bob.check_untouched(w.eng);
}
