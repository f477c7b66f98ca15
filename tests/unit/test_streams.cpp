// Streams of a connection actor (stream_atom, its sink, acknowledgements, the idle deadline,
// cancellation, a whole response in one message) on CAF's deterministic test coordinator
// with a fake transport: virtual time, no threads and no sleeps.
#include <catch2/catch.hpp>

#include "pool_fixture.hpp"

using namespace sshpool;
using sshpool::test::fixture;
using sshpool::test::get;
using sshpool::test::leased_fixture;
using namespace std::chrono_literals;

namespace {

struct stream_log {
  std::vector<std::string> events;
  bool ended = false;
  error err;
};

/// A stream consumer that records what it gets and acknowledges every chunk (unless
/// `acknowledge` is false: a consumer that stopped reading).
stream_sink_actor::behavior_type recording_sink(stream_sink_actor::pointer self,
                                                std::shared_ptr<stream_log> log,
                                                connection_actor conn, bool acknowledge) {
  return {
      [=](head_atom, std::uint64_t, const response& head) {
        log->events.push_back("head " + std::to_string(head.status));
      },
      [=](chunk_atom, std::uint64_t id, const std::string& chunk) {
        log->events.push_back("chunk " + chunk.substr(0, 16));
        if (acknowledge)
          self->send(conn, ack_atom_v, id, static_cast<std::uint64_t>(chunk.size()));
      },
      [=](end_atom, std::uint64_t, const caf::error& err) {
        log->ended = true;
        log->err = from_caf_error(err, errc::internal);
        self->quit();
      },
      [=](whole_atom, std::uint64_t, const response& whole) {
        log->events.push_back("whole " + std::to_string(whole.status) + " " + whole.body);
        log->ended = true;
        self->quit();
      },
  };
}

/// A stream asked of a connection, with its recording sink.
struct stream_call {
  std::shared_ptr<stream_log> log = std::make_shared<stream_log>();
  stream_sink_actor sink;
  /// The stream id (the transport's tag of the request).
  std::uint64_t id = 0;
};

/// Asks `conn` for a stream of request `name` with the idle deadline `idle`.
stream_call start_stream(fixture& f, const connection_actor& conn, const std::string& name,
                         caf::timespan idle, bool acknowledge = true) {
  stream_call s;
  s.sink = f.sys->spawn(recording_sink, s.log, conn, acknowledge);
  auto id = f.ask<std::uint64_t>(conn, stream_atom_v, get(name), idle, s.sink);
  REQUIRE(id->value);
  s.id = *id->value;
  return s;
}

} // namespace

TEST_CASE("a stream reaches its sink in order and acknowledgements reach the transport",
          "[connection]") {
  leased_fixture f;
  auto s = start_stream(f, f.l.connection, "s", 10s);
  REQUIRE(f.session.forwarded == std::vector<std::uint64_t>{s.id});
  f.session.stream_head(s.id);
  f.session.stream_chunk(s.id, "one");
  f.session.stream_chunk(s.id, "two");
  f.sched->run();
  CHECK(s.log->events == std::vector<std::string>{"head 200", "chunk one", "chunk two"});
  REQUIRE(f.session.acked.size() == 2);
  CHECK(f.session.acked[1] == std::make_pair(s.id, std::uint64_t{3}));
  // The deadline is an idle one: each chunk moves it.
  f.advance(9s);
  f.session.stream_chunk(s.id, "three");
  f.sched->run();
  f.advance(9s);
  CHECK_FALSE(s.log->ended);
  f.session.stream_end(s.id);
  f.sched->run();
  CHECK(s.log->ended);
  CHECK(s.log->err.code() == errc::none);
}

TEST_CASE("a stream complete before its head reaches the sink as one whole response",
          "[connection]") {
  leased_fixture f; // 2 channels per connection
  auto whole = start_stream(f, f.l.connection, "whole", 10s);
  auto other = start_stream(f, f.l.connection, "other", 10s);
  auto queued = start_stream(f, f.l.connection, "queued", 10s);
  REQUIRE(f.session.forwarded.size() == 2);
  f.session.stream_whole(whole.id, "all of it");
  f.sched->run();
  // One message: head, body and end; nothing to acknowledge; its slot serves the next one.
  CHECK(whole.log->events == std::vector<std::string>{"whole 200 all of it"});
  CHECK(whole.log->ended);
  CHECK(f.session.acked.empty());
  CHECK(f.session.forwarded.size() == 3);
  // A stream whose head went out still ends with end_atom.
  f.session.stream_head(other.id);
  f.session.stream_chunk(other.id, "piece");
  f.session.stream_end(other.id);
  f.sched->run();
  CHECK(other.log->events == std::vector<std::string>{"head 200", "chunk piece"});
  CHECK(other.log->ended);
  CHECK(other.log->err.code() == errc::none);
  f.session.stream_whole(queued.id, "");
  f.sched->run();
  CHECK(queued.log->events == std::vector<std::string>{"whole 200 "});
  auto stats = f.ask<connection_stats>(f.l.connection, stats_atom_v)->value;
  REQUIRE(stats);
  CHECK(stats->requests == 3);
  CHECK(stats->active_requests == 0);
}

TEST_CASE("a consumer holding a full window suspends the stream's idle deadline", "[connection]") {
  leased_fixture f;
  auto s = start_stream(f, f.l.connection, "slow reader", 2s, false);
  f.session.stream_head(s.id);
  f.session.stream_chunk(s.id, std::string(pool_config{}.stream_window_bytes, 'x'));
  f.sched->run();
  // The upstream is held back by the consumer, not idle: no timeout however long.
  f.advance(60s);
  CHECK_FALSE(s.log->ended);
  // The consumer takes part of it: the window opens and the idle clock runs again.
  caf::anon_send(f.l.connection, ack_atom_v, s.id, std::uint64_t{1024});
  f.sched->run();
  f.advance(1s);
  CHECK_FALSE(s.log->ended);
  f.advance(1s);
  CHECK(s.log->ended);
  CHECK(s.log->err.code() == errc::request_timeout);
}

TEST_CASE("stream_window_bytes is the reactor's pause and the deadline's suspension alike",
          "[connection]") {
  auto pc = fixture::small();
  pc.stream_window_bytes = 4096;
  leased_fixture f{pc};
  CHECK(f.session.opts.stream_window == 4096);
  auto below = start_stream(f, f.l.connection, "below", 2s, false);
  auto full = start_stream(f, f.l.connection, "full", 2s, false);
  f.session.stream_head(below.id);
  f.session.stream_chunk(below.id, std::string(4095, 'x'));
  f.session.stream_head(full.id);
  f.session.stream_chunk(full.id, std::string(4096, 'x'));
  f.sched->run();
  // One byte short of the window the idle deadline runs; a full window (far below the
  // default 256 KiB) suspends it.
  f.advance(60s);
  CHECK(below.log->ended);
  CHECK(below.log->err.code() == errc::request_timeout);
  CHECK_FALSE(full.log->ended);
}

TEST_CASE("a silent stream times out and a vanished sink abandons its stream", "[connection]") {
  leased_fixture f;
  auto quiet = start_stream(f, f.l.connection, "quiet", 2s);
  f.advance(2s);
  CHECK(quiet.log->ended);
  CHECK(quiet.log->err.code() == errc::request_timeout);
  CHECK(f.session.cancelled.size() == 1);

  auto gone = start_stream(f, f.l.connection, "gone", 30s);
  caf::anon_send_exit(gone.sink, caf::exit_reason::user_shutdown);
  f.sched->run();
  CHECK(f.session.cancelled.size() == 2);
  auto stats = f.ask<connection_stats>(f.l.connection, stats_atom_v);
  CHECK(stats->value->active_requests == 0);
}

TEST_CASE("a cancelled stream frees its channel at once and its sink hears nothing more",
          "[connection]") {
  leased_fixture f; // 2 channels per connection
  auto cancelled = start_stream(f, f.l.connection, "cancelled", 30s);
  auto kept = start_stream(f, f.l.connection, "kept", 30s);
  auto queued = f.forward(f.l, get("queued"), 30s);
  REQUIRE(f.session.forwarded.size() == 2); // both slots taken: the forward waits
  f.session.stream_head(cancelled.id);
  f.session.stream_chunk(cancelled.id, "before");
  f.sched->run();
  caf::anon_send(f.l.connection, cancel_atom_v, cancelled.id);
  f.sched->run();
  // The transport closed its channel, and the queued request took the slot.
  CHECK(f.session.cancelled == std::vector<std::uint64_t>{cancelled.id});
  REQUIRE(f.session.forwarded.size() == 3);
  auto forward_tag = f.session.forwarded[2];
  // What the transport reported meanwhile goes nowhere: no chunk, no end.
  f.session.stream_chunk(cancelled.id, "after");
  f.session.stream_end(cancelled.id);
  f.sched->run();
  CHECK(cancelled.log->events == std::vector<std::string>{"head 200", "chunk before"});
  CHECK_FALSE(cancelled.log->ended);
  // A cancel for a forward's tag, an unknown id, the same stream again: all ignored.
  for (auto id : {forward_tag, std::uint64_t{999}, cancelled.id})
    caf::anon_send(f.l.connection, cancel_atom_v, id);
  f.sched->run();
  CHECK(f.session.cancelled.size() == 1);
  f.session.respond(forward_tag);
  f.session.stream_end(kept.id);
  f.sched->run();
  CHECK(queued->value);
  CHECK(kept.log->ended);
  CHECK(kept.log->err.code() == errc::none);
  // A finished stream too; the cancelled one counts as failed, the connection is fine.
  caf::anon_send(f.l.connection, cancel_atom_v, kept.id);
  f.sched->run();
  CHECK(f.session.cancelled.size() == 1);
  auto stats = f.ask<connection_stats>(f.l.connection, stats_atom_v)->value;
  REQUIRE(stats);
  CHECK(stats->failed_requests == 1);
  CHECK(stats->requests == 2);
  CHECK(stats->active_requests == 0);
  CHECK(stats->healthy);
}

TEST_CASE("a sink of many streams still abandons the one in flight when it goes", "[connection]") {
  // The gateway's bridge is the sink of all its streams: the connection monitors a sink
  // once while it has streams there, and again after they all ended (sink_monitors.hpp).
  leased_fixture f; // 2 channels per connection
  auto ends = std::make_shared<int>(0);
  stream_sink_actor sink = f.sys->spawn([ends]() -> stream_sink_actor::behavior_type {
    return {
        [](head_atom, std::uint64_t, const response&) {},
        [](chunk_atom, std::uint64_t, const std::string&) {},
        [ends](end_atom, std::uint64_t, const caf::error&) { ++*ends; },
        [ends](whole_atom, std::uint64_t, const response&) { ++*ends; },
    };
  });
  auto stream = [&](const std::string& name) {
    auto id =
        f.ask<std::uint64_t>(f.l.connection, stream_atom_v, get(name), caf::timespan{30s}, sink);
    REQUIRE(id->value);
    return *id->value;
  };
  for (const char* name : {"one", "two", "three"}) {
    f.session.stream_end(stream(name));
    f.sched->run();
  }
  CHECK(*ends == 3);
  auto ending = stream("ending");
  auto left = stream("left");
  f.session.stream_end(ending);
  f.sched->run();
  CHECK(*ends == 4);
  caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
  f.sched->run();
  CHECK(f.session.cancelled == std::vector<std::uint64_t>{left});
  CHECK(f.ask<connection_stats>(f.l.connection, stats_atom_v)->value->active_requests == 0);
}
