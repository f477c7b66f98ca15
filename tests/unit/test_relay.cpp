// The relay (actors/src/relay.cpp) on CAF's deterministic test coordinator, in front of a
// scripted connection actor standing for a remote connection: calls and streams pass
// through (acks back to the connection), a release lets what was sent before it finish,
// and when the connection goes down everything pending fails at once with connection_lost
// (with shutting_down when the engine stops), streams end with it, and the relay quits, so
// later calls fail at once too.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pool_fixture.hpp"
#include "relay.hpp"

using namespace sshpool;
using sshpool::test::fixture;
using namespace std::chrono_literals;

namespace {

/// What the scripted remote connection saw, and its pending forwards.
struct remote_script {
  std::vector<caf::typed_response_promise<response>> forwards;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> acks;
  std::vector<std::uint64_t> cancels;
  stream_sink_actor sink;
};

/// The remote connection, scripted: it holds forwards until told (result_atom, from the
/// test: the first one gets that response), takes every stream as stream 7 and records acks
/// and cancels. Untyped for that extra message; relays see it as a connection_actor.
caf::behavior scripted_remote(caf::event_based_actor* self, std::shared_ptr<remote_script> script) {
  return {
      [self, script](forward_atom, request&, caf::timespan) -> caf::result<response> {
        auto rp = self->make_response_promise<response>();
        script->forwards.push_back(rp);
        return rp;
      },
      [script](result_atom, response& r) {
        script->forwards.front().deliver(std::move(r));
        script->forwards.erase(script->forwards.begin());
      },
      [script](stream_atom, request&, caf::timespan, stream_sink_actor& sink) {
        script->sink = sink;
        return std::uint64_t{7};
      },
      [script](ack_atom, std::uint64_t id, std::uint64_t bytes) {
        script->acks.emplace_back(id, bytes);
      },
      [script](cancel_atom, std::uint64_t id) { script->cancels.push_back(id); },
      [](stats_atom) { return connection_stats{}; },
      [](health_atom) { return true; },
  };
}

/// What a sink got: its chunks, and its end (with the error, if any).
struct sink_log {
  std::string body;
  bool ended = false;
  error end;
};

/// A sink that acks every chunk to `conn` at once.
caf::behavior acking_sink(caf::event_based_actor* self, connection_actor conn,
                          std::shared_ptr<sink_log> log) {
  return {
      [](head_atom, std::uint64_t, response&) {},
      [self, conn, log](chunk_atom, std::uint64_t id, std::string& chunk) {
        log->body += chunk;
        self->send(conn, ack_atom_v, id, static_cast<std::uint64_t>(chunk.size()));
      },
      [log](end_atom, std::uint64_t, caf::error& err) {
        log->ended = true;
        log->end = from_caf_error(err, errc::internal);
      },
      [log](whole_atom, std::uint64_t, response& whole) {
        log->body += whole.body;
        log->ended = true;
      },
  };
}

/// The fixture's system with a scripted remote connection, its relay and a sink.
struct relay_fixture : fixture {
  std::shared_ptr<remote_script> script = std::make_shared<remote_script>();
  connection_actor remote;
  relay_actor relay;
  std::shared_ptr<sink_log> sunk = std::make_shared<sink_log>();
  stream_sink_actor sink;

  relay_fixture() {
    remote = caf::actor_cast<connection_actor>(sys->spawn(scripted_remote, script));
    sys->spawn(
        [this](caf::event_based_actor* self) { relay = spawn_relay(self, remote, "alice", "n2"); });
    sched->run();
    auto as_connection = caf::actor_cast<connection_actor>(relay);
    sink = caf::actor_cast<stream_sink_actor>(sys->spawn(acking_sink, as_connection, sunk));
  }

  ~relay_fixture() {
    // The script holds the relay (its sink, the forwards' promises) and the relay holds the
    // script's actor: both, and the sink, end here so that none outlives the system.
    script->sink = nullptr;
    script->forwards.clear();
    for (auto& handle : {caf::actor_cast<caf::actor>(remote), caf::actor_cast<caf::actor>(relay),
                         caf::actor_cast<caf::actor>(sink)})
      caf::anon_send_exit(handle, caf::exit_reason::user_shutdown);
    sched->run();
  }

  /// Starts a stream through the relay; the remote connection took it as stream 7.
  void start_stream() {
    auto id = ask<std::uint64_t>(relay, stream_atom_v, request{}, caf::timespan{5s}, sink);
    REQUIRE(id->value == 7u);
    REQUIRE(script->sink); // the relay itself
  }

  /// The remote connection sends stream 7's chunk `data` to its sink (the relay).
  void remote_chunk(std::string data) {
    caf::anon_send(script->sink, chunk_atom_v, std::uint64_t{7}, std::move(data));
    sched->run();
  }
};

} // namespace

TEST_CASE("a relay passes calls and streams through, acks back, and retires after them",
          "[relay]") {
  relay_fixture f;
  auto forwarded = f.ask<response>(f.relay, forward_atom_v, request{}, caf::timespan{5s});
  REQUIRE(f.script->forwards.size() == 1);
  CHECK_FALSE(forwarded->done);
  f.start_stream();
  CHECK(f.script->sink.address() == f.relay.address());
  f.remote_chunk("abc");
  f.remote_chunk("de");
  CHECK(f.sunk->body == "abcde");
  // The real sink's acks reach the remote connection: its window is the consumer's.
  using ack = std::pair<std::uint64_t, std::uint64_t>;
  CHECK(f.script->acks == std::vector<ack>{{7, 3}, {7, 2}});
  auto stats = f.ask<connection_stats>(f.relay, stats_atom_v);
  CHECK(stats->value);
  auto healthy = f.ask<bool>(f.relay, health_atom_v);
  CHECK(healthy->value == true);
  // Released: what was sent before completes, then the relay quits.
  caf::anon_send(f.relay, retire_atom_v);
  f.sched->run();
  response r;
  r.status = 200;
  caf::anon_send(caf::actor_cast<caf::actor>(f.remote), result_atom_v, r);
  f.sched->run();
  REQUIRE(forwarded->value);
  CHECK(forwarded->value->status == 200);
  auto still = f.ask_or<bool>(errc::shutting_down, f.relay, health_atom_v);
  CHECK(still->value == true); // the stream is still open
  caf::anon_send(f.script->sink, end_atom_v, std::uint64_t{7}, caf::error{});
  f.sched->run();
  CHECK(f.sunk->ended);
  CHECK(f.sunk->end.code() == errc::none);
  auto gone = f.ask_or<bool>(errc::shutting_down, f.relay, health_atom_v);
  CHECK(gone->err.code() == errc::shutting_down); // the relay has quit
}

TEST_CASE("a whole response passes through a relay and ends its stream", "[relay]") {
  relay_fixture f;
  f.start_stream();
  response whole;
  whole.status = 200;
  whole.body = "all at once";
  caf::anon_send(f.script->sink, whole_atom_v, std::uint64_t{7}, whole);
  f.sched->run();
  CHECK(f.sunk->body == "all at once");
  CHECK(f.sunk->ended);
  CHECK(f.sunk->end.code() == errc::none);
  CHECK(f.script->acks.empty());
  // The stream is over at the relay: released now, it quits at once.
  caf::anon_send(f.relay, retire_atom_v);
  f.sched->run();
  auto gone = f.ask_or<bool>(errc::shutting_down, f.relay, health_atom_v);
  CHECK(gone->err.code() == errc::shutting_down);
}

TEST_CASE("a relay whose remote connection goes down fails everything at once", "[relay]") {
  relay_fixture f;
  auto forwarded = f.ask<response>(f.relay, forward_atom_v, request{}, caf::timespan{5s});
  f.start_stream();
  caf::anon_send_exit(f.remote, caf::exit_reason::remote_link_unreachable);
  f.sched->run();
  REQUIRE(forwarded->done);
  CHECK(forwarded->err.code() == errc::connection_lost);
  CHECK(f.sunk->ended);
  CHECK(f.sunk->end.code() == errc::connection_lost);
  // The relay has quit, as a lost local connection does (its lessee sees it go down): later
  // calls fail at once, mapped as the facade maps them.
  auto later = f.ask_or<response>(errc::connection_lost, f.relay, forward_atom_v, request{},
                                  caf::timespan{5s});
  REQUIRE(later->done);
  CHECK(later->err.code() == errc::connection_lost);
  auto healthy = f.ask_or<bool>(errc::connection_lost, f.relay, health_atom_v);
  REQUIRE(healthy->done);
  CHECK(healthy->err.code() == errc::connection_lost);
}

TEST_CASE("a relay told its engine stops fails everything with that reason", "[relay]") {
  relay_fixture f;
  auto forwarded = f.ask<response>(f.relay, forward_atom_v, request{}, caf::timespan{5s});
  f.start_stream();
  caf::anon_send(f.relay, lost_atom_v,
                 make_caf_error(errc::shutting_down, "the engine is stopping"));
  f.sched->run();
  REQUIRE(forwarded->done);
  CHECK(forwarded->err.code() == errc::shutting_down);
  CHECK(forwarded->err.message() == "the engine is stopping");
  CHECK(f.sunk->end.code() == errc::shutting_down);
  // A sink going away cancels its streams at the remote connection (a live relay).
  relay_fixture g;
  g.start_stream();
  caf::anon_send_exit(g.sink, caf::exit_reason::user_shutdown);
  g.sched->run();
  CHECK(g.script->cancels == std::vector<std::uint64_t>{7});
}
