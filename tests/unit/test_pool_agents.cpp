// Reverse mode in the pool (docs/architecture.md, "Reverse mode"): agents that dialed in
// become connections of their user's pool, on CAF's deterministic test coordinator with a
// fake transport (an agent's fake session opens at once, as the runtime's does). The
// listener is replaced by offers sent to the supervisor as the engine's listener sends them.
#include <catch2/catch.hpp>

#include <memory>
#include <utility>
#include <vector>

#include "pool_fixture.hpp"

using namespace sshpool;
using sshpool::test::fixture;
using namespace std::chrono_literals;

namespace {

/// The fixture with carol as an agent user (alice and bob dial).
struct agent_fixture : fixture {
  explicit agent_fixture(pool_config pc = small()) : fixture(pc) { set_agent_endpoint("carol"); }

  user_stats carol() {
    for (auto& u : stats().users)
      if (u.user == "carol")
        return u;
    return {};
  }
};

} // namespace

TEST_CASE("with no agent connected, a caller waits acquire_timeout, then agent_offline",
          "[agents]") {
  agent_fixture f;
  auto r = f.acquire("carol");
  f.expect_done_after(r, 5s);
  CHECK(r->err.code() == errc::agent_offline);
  CHECK(r->err.message().find("carol") != std::string::npos);
  CHECK(f.fakes->sessions.empty()); // nothing was dialed
  CHECK(f.carol().acquire_timeouts == 1);
}

TEST_CASE("an agent dialing in serves the waiters at once, in FIFO order", "[agents]") {
  agent_fixture f; // 2 agents x 2 channels
  auto w1 = f.acquire("carol");
  auto w2 = f.acquire("carol");
  auto w3 = f.acquire("carol");
  CHECK(f.fakes->sessions.empty());
  auto offer = f.agent_arrives("carol");
  CHECK(offer.refusal().empty());
  REQUIRE(f.fakes->sessions.size() == 1);
  CHECK(f.fakes->sessions[0]->agent);
  REQUIRE(w1->value);
  REQUIRE(w2->value);
  CHECK(w1->value->connection_id == w2->value->connection_id);
  CHECK_FALSE(w3->done); // the first agent's channels are taken
  f.agent_arrives("carol");
  REQUIRE(w3->value);
  CHECK(w3->value->connection_id != w1->value->connection_id);
  auto st = f.carol();
  CHECK(st.agents == 2);
  CHECK(st.connections == 2);
  CHECK(st.leases == 3);
  CHECK(st.handshakes == 0);
}

TEST_CASE("idle eviction and max_lifetime never close an agent; a missed probe does", "[agents]") {
  auto pc = fixture::small();
  pc.max_lifetime = 1min;
  pc.keepalive_interval = 10min;
  pc.keepalive_timeout = 5s;
  agent_fixture f{pc};
  f.agent_arrives("carol");
  auto l = f.acquire("carol");
  REQUIRE(l->value);
  REQUIRE(f.release("carol", *l->value).value);
  f.advance(2min);
  auto evicted = f.ask<std::uint64_t>(f.sup, evict_atom_v, caf::timespan{0});
  REQUIRE(evicted->value);
  CHECK(*evicted->value == 0);
  auto again = f.acquire("carol"); // past max_lifetime: still leased
  REQUIRE(again->value);
  CHECK(again->value->connection_id == l->value->connection_id);
  auto& session = *f.fakes->sessions.at(0);
  CHECK_FALSE(session.closed);
  // A frozen agent: the keepalive finds it and the pool forgets it.
  session.auto_alive = false;
  f.advance(10min + 5s);
  CHECK(session.closed);
  CHECK(f.carol().agents == 0);
  CHECK(f.carol().connections == 0);
}

TEST_CASE("an agent beyond max_connections_per_user is refused with the reason and counted",
          "[agents]") {
  agent_fixture f; // max_connections_per_user = 2
  f.agent_arrives("carol");
  f.agent_arrives("carol");
  auto third = f.agent_arrives("carol");
  CHECK(third.refusal() == "user carol has 2 agents connected already");
  CHECK(f.fakes->sessions.size() == 2);
  auto st = f.carol();
  CHECK(st.agents == 2);
  CHECK(st.agents_refused == 1);
  // Once one is gone, the next one is taken.
  f.fakes->sessions[0]->lose();
  f.sched->run();
  CHECK(f.agent_arrives("carol").refusal().empty());
  CHECK(f.carol().agents == 2);
}

TEST_CASE("agents of dial users, unknown users or past max_connections_total are refused",
          "[agents]") {
  auto pc = fixture::small();
  pc.max_connections_total = 1;
  agent_fixture f{pc};
  CHECK(f.agent_arrives("alice").refusal() == "user alice is not an agent user");
  CHECK(f.agent_arrives("zed").refusal() == "user zed is not an agent user");
  f.ready_lease("alice"); // the one connection the engine may hold
  CHECK(f.agent_arrives("carol").refusal().find("maximum of 1 connections") != std::string::npos);
  CHECK(f.fakes->sessions.size() == 1);
}

TEST_CASE("a drain disconnects agents with a reason and refuses new ones", "[agents]") {
  agent_fixture f;
  f.agent_arrives("carol");
  auto l = f.acquire("carol");
  REQUIRE(l->value);
  auto& session = *f.fakes->sessions.at(0);
  auto report = f.ask<shutdown_report>(f.shutdown, drain_atom_v, caf::timespan{5s});
  REQUIRE(report->value);
  CHECK(report->value->connections_closed == 1);
  CHECK(session.disconnect_reason == "gateway shutting down");
  CHECK(f.agent_arrives("carol").refusal() == "gateway shutting down");
}

TEST_CASE("an engine stop tells a connected agent why", "[agents]") {
  agent_fixture f;
  f.agent_arrives("carol");
  auto& session = *f.fakes->sessions.at(0);
  auto stopped = f.ask_void(f.sup, stop_atom_v);
  CHECK(stopped->value);
  CHECK(session.disconnect_reason == "gateway shutting down");
}

TEST_CASE("a cluster node claims an agent user while its agents are connected", "[agents]") {
  agent_fixture f;
  auto claims = std::make_shared<std::vector<std::pair<std::string, bool>>>();
  auto recorder = f.sys->spawn([claims](claim_actor::pointer) -> claim_actor::behavior_type {
    return {[claims](claim_atom, const std::string& user, bool claimed) {
      claims->emplace_back(user, claimed);
    }};
  });
  // An agent before the first view: claimed once the view names the cluster actor.
  f.agent_arrives("carol");
  CHECK(claims->empty());
  cluster_view view;
  view.self = "n1";
  view.members = {"n1"};
  view.cluster = recorder;
  caf::anon_send(caf::actor_cast<supervisor_impl>(f.sup), view_atom_v, view);
  f.sched->run();
  using claim = std::pair<std::string, bool>;
  CHECK(*claims == std::vector<claim>{{"carol", true}});
  // A second agent claims nothing more; the claim goes once the last agent is gone.
  f.agent_arrives("carol");
  f.fakes->sessions[0]->lose();
  f.sched->run();
  CHECK(claims->size() == 1);
  f.fakes->sessions[1]->lose();
  f.sched->run();
  CHECK(*claims == std::vector<claim>{{"carol", true}, {"carol", false}});
  // Back again: claimed again.
  f.agent_arrives("carol");
  CHECK(claims->back() == claim{"carol", true});
  caf::anon_send_exit(recorder, caf::exit_reason::user_shutdown);
}
