// The agent listener's admission (ssh/src/agent_gate.hpp) on its own, in explicit time:
// startups in total and per source, and the per-source penalties.
#include <catch2/catch.hpp>

#include "agent_gate.hpp"

using namespace sshpool::ssh;
using namespace std::chrono_literals;
using clock_type = agent_gate::clock;

namespace {

const clock_type::time_point t0{};

agent_penalties penalties() {
  agent_penalties p;
  p.auth_failed = 5s;
  p.min = 15s;
  p.max = 60s;
  p.max_sources = 3;
  return p;
}

} // namespace

TEST_CASE("startups are bounded in total and per source, and end when finished", "[agent_gate]") {
  agent_gate gate{3, 2, penalties()};
  CHECK_FALSE(gate.admit("10.0.0.1", t0));
  CHECK_FALSE(gate.admit("10.0.0.1", t0));
  CHECK(gate.admit("10.0.0.1", t0) == agent_refusal::max_startups_per_source);
  CHECK_FALSE(gate.admit("10.0.0.2", t0));
  CHECK(gate.startups() == 3);
  CHECK(gate.admit("10.0.0.3", t0) == agent_refusal::max_startups);
  gate.finish("10.0.0.1", {}, t0);
  CHECK(gate.startups() == 2);
  CHECK_FALSE(gate.admit("10.0.0.3", t0));
  CHECK(gate.admit("10.0.0.4", t0) == agent_refusal::max_startups);
  // Finishing what was never admitted changes nothing.
  gate.finish("10.9.9.9", {}, t0);
  CHECK(gate.startups() == 3);
}

TEST_CASE("a source is refused once its penalties add up to min, until they are paid",
          "[agent_gate]") {
  agent_gate gate{100, 10, penalties()};
  // Two failures: 10 s of debt, below min.
  for (int i = 0; i < 2; ++i) {
    REQUIRE_FALSE(gate.admit("10.0.0.1", t0));
    gate.finish("10.0.0.1", 5s, t0);
  }
  CHECK_FALSE(gate.admit("10.0.0.1", t0));
  gate.finish("10.0.0.1", 5s, t0); // 15 s: refused until t0 + 15 s
  CHECK(gate.admit("10.0.0.1", t0 + 1s) == agent_refusal::penalized_source);
  CHECK(gate.penalized(t0 + 1s) == 1);
  CHECK_FALSE(gate.admit("10.0.0.2", t0 + 1s)); // other sources are not affected
  gate.finish("10.0.0.2", {}, t0 + 1s);
  CHECK(gate.admit("10.0.0.1", t0 + 14s) == agent_refusal::penalized_source);
  CHECK_FALSE(gate.admit("10.0.0.1", t0 + 15s));
  CHECK(gate.penalized(t0 + 15s) == 0);
}

TEST_CASE("penalties run down: a source that fails slowly is never refused", "[agent_gate]") {
  agent_gate gate{100, 10, penalties()};
  auto now = t0;
  for (int i = 0; i < 20; ++i, now += 6s) {
    REQUIRE_FALSE(gate.admit("10.0.0.1", now));
    gate.finish("10.0.0.1", 5s, now);
  }
  CHECK(gate.penalized(now) == 0);
}

TEST_CASE("a penalty is never owed more than max ahead", "[agent_gate]") {
  agent_gate gate{100, 10, penalties()};
  for (int i = 0; i < 50; ++i)
    gate.finish("10.0.0.1", 5s, t0);
  CHECK(gate.admit("10.0.0.1", t0 + 59s) == agent_refusal::penalized_source);
  CHECK_FALSE(gate.admit("10.0.0.1", t0 + 60s));
}

TEST_CASE("the penalty table is bounded: paid-up entries go first, then the soonest paid",
          "[agent_gate]") {
  agent_gate gate{100, 10, penalties()};
  gate.finish("10.0.0.1", 5s, t0);  // paid at t0 + 5 s
  gate.finish("10.0.0.2", 20s, t0); // refused until t0 + 20 s
  gate.finish("10.0.0.3", 30s, t0); // refused until t0 + 30 s
  CHECK(gate.tracked_sources() == 3);
  gate.finish("10.0.0.4", 16s, t0 + 6s); // 10.0.0.1 is paid up: it goes
  CHECK(gate.tracked_sources() == 3);
  CHECK(gate.penalized(t0 + 6s) == 3);
  gate.finish("10.0.0.5", 5s, t0 + 7s); // none paid up: 10.0.0.2 (t0 + 20 s) goes
  CHECK(gate.tracked_sources() == 3);
  CHECK_FALSE(gate.admit("10.0.0.2", t0 + 7s));
  CHECK(gate.admit("10.0.0.3", t0 + 7s) == agent_refusal::penalized_source);
  CHECK(gate.admit("10.0.0.4", t0 + 7s) == agent_refusal::penalized_source);
}

TEST_CASE("penalties can be turned off", "[agent_gate]") {
  auto p = penalties();
  p.enabled = false;
  agent_gate gate{100, 10, p};
  gate.finish("10.0.0.1", 60s, t0);
  CHECK_FALSE(gate.admit("10.0.0.1", t0));
  CHECK(gate.tracked_sources() == 0);
}

TEST_CASE("sources are IPv4 addresses and IPv6 /64 prefixes", "[agent_gate]") {
  CHECK(source_key("127.0.0.2") == "127.0.0.2");
  CHECK(source_key("::ffff:10.1.2.3") == "10.1.2.3");
  CHECK(source_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64");
  CHECK(source_key("2001:db8:1:2::1") == source_key("2001:db8:1:2:ffff::9"));
  CHECK(source_key("::1") == "::/64");
}
