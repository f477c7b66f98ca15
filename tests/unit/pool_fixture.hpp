// The shared fixture of the actor unit tests: the real supervisor, user_pool, connection,
// cleanup and shutdown actors on CAF's deterministic test coordinator, with a fake
// transport. Replies are collected by small client actors and checked on the test thread
// after the scheduler ran (never CHECK inside an actor).
#pragma once

#include <optional>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <catch2/catch.hpp>

#include "fake_transport.hpp"
#include "lifecycle.hpp"
#include "sshpool/engine.hpp"
#include "sshpool/ssh/log.hpp"
#include "supervisor.hpp"

namespace sshpool::test {

using namespace std::chrono_literals;

template <class T>
struct reply {
  bool done = false;
  std::optional<T> value;
  error err;
};

struct fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  std::shared_ptr<test::fake_transport_factory> fakes =
      std::make_shared<test::fake_transport_factory>();
  supervisor_actor sup;
  cleanup_actor cleanup;
  shutdown_actor shutdown;

  explicit fixture(pool_config pc = small()) {
    log().set_level(spdlog::level::warn);
    add_message_types(cfg);
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.set("logger.file-verbosity", caf::atom("quiet"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
    auto ctx = std::make_shared<actor_context>();
    ctx->pool = pc;
    ctx->transports = fakes;
    sup = spawn_supervisor(*sys, ctx);
    cleanup = spawn_cleanup(*sys, sup, cleanup_config{pc.cleanup_interval, pc.max_idle_time});
    shutdown = spawn_shutdown(*sys, sup, pc.force_after_grace_period);
    set_endpoint("alice");
    set_endpoint("bob");
  }

  ~fixture() {
    caf::anon_send_exit(cleanup, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(shutdown, caf::exit_reason::user_shutdown);
    caf::anon_send(sup, stop_atom_v);
    sched->run();
    sys->await_actors_before_shutdown(false);
  }

  static pool_config small() {
    pool_config pc;
    pc.max_connections_per_user = 2;
    pc.max_channels_per_connection = 2;
    pc.max_waiters_per_user = 4;
    pc.acquire_timeout = 5s;
    pc.request_timeout = 30s;
    return pc;
  }

  void set_endpoint(const std::string& user) {
    endpoint ep;
    ep.host = "127.0.0.1";
    ep.port = 22;
    ep.username = user;
    ep.identity_file = "/dev/null";
    ep.known_hosts_file = "/dev/null";
    ep.target_port = 8080;
    caf::anon_send(sup, endpoint_atom_v, user, ep);
    sched->run();
  }

  /// Makes `user` an agent user (reverse mode): its machine dials in.
  void set_agent_endpoint(const std::string& user) {
    endpoint ep;
    ep.mode = endpoint_mode::agent;
    ep.authorized_keys_file = "/dev/null";
    ep.target_port = 8080;
    caf::anon_send(sup, endpoint_atom_v, user, ep);
    sched->run();
  }

  /// An agent of `user` dials in (as the listener hands it on); the offer tells whether it
  /// was refused (`refusal`). Its fake session, if taken, is the last one made.
  agent_offer agent_arrives(const std::string& user) {
    agent_offer offer{user, ssh::agent_handle{}};
    caf::anon_send(caf::actor_cast<supervisor_impl>(sup), agent_atom_v, offer);
    sched->run();
    return offer;
  }

  /// Sends a request from a client actor; the reply lands in the returned object. A failure
  /// of CAF's own (e.g. the receiver is gone) becomes `when_gone`.
  template <class T, class Handle, class... Ts>
  std::shared_ptr<reply<T>> ask_or(errc when_gone, const Handle& dest, Ts... xs) {
    auto r = std::make_shared<reply<T>>();
    sys->spawn([r, when_gone, dest, xs...](caf::event_based_actor* self) {
      self->request(dest, caf::infinite, xs...)
          .then(
              [r](T& value) {
                r->value = std::move(value);
                r->done = true;
              },
              [r, when_gone](caf::error& e) {
                r->err = from_caf_error(e, when_gone);
                r->done = true;
              });
    });
    sched->run();
    return r;
  }

  template <class T, class Handle, class... Ts>
  std::shared_ptr<reply<T>> ask(const Handle& dest, Ts... xs) {
    return ask_or<T>(errc::internal, dest, xs...);
  }

  std::shared_ptr<reply<lease>> acquire(const std::string& user) {
    return ask<lease>(sup, acquire_atom_v, user);
  }

  /// Acquires through a new handshake: the call must make fake session number `sessions`
  /// (counting from 1), whose handshake then completes. Returns the reply.
  std::shared_ptr<reply<lease>> acquire_new(const std::string& user, std::size_t sessions) {
    auto r = acquire(user);
    REQUIRE(fakes->sessions.size() == sessions);
    open(sessions - 1);
    return r;
  }

  /// A lease on a new ready connection of `user`.
  lease ready_lease(const std::string& user = "alice") {
    auto r = acquire_new(user, fakes->sessions.size() + 1);
    REQUIRE(r->value);
    return *r->value;
  }

  reply<bool> release(const std::string& user, const lease& l) {
    return *ask_void(sup, release_atom_v, user, l);
  }

  /// As the facade: a connection actor that is gone means the connection is lost.
  std::shared_ptr<reply<response>> forward(const lease& l, request req, caf::timespan deadline) {
    return ask_or<response>(errc::connection_lost, l.connection, forward_atom_v, req, deadline);
  }

  pool_stats stats() { return *ask<pool_stats>(sup, stats_atom_v)->value; }

  /// As `ask`, for requests answered with no value (value = true on success).
  template <class Handle, class... Ts>
  std::shared_ptr<reply<bool>> ask_void(const Handle& dest, Ts... xs) {
    auto r = std::make_shared<reply<bool>>();
    sys->spawn([r, dest, xs...](caf::event_based_actor* self) {
      self->request(dest, caf::infinite, xs...)
          .then(
              [r] {
                r->value = true;
                r->done = true;
              },
              [r](caf::error& e) {
                r->err = from_caf_error(e, errc::internal);
                r->done = true;
              });
    });
    sched->run();
    return r;
  }

  cleanup_stats cleanup_stats_now() { return *ask<cleanup_stats>(cleanup, stats_atom_v)->value; }

  /// Completes the handshake of fake session `i`.
  void open(std::size_t i, error err = {}) {
    fakes->sessions.at(i)->finish_open(std::move(err));
    sched->run();
  }

  /// Checks that `r` is answered exactly `after` from now: still pending 1 ms before, done then.
  template <class Reply>
  void expect_done_after(const Reply& r, caf::timespan after) {
    advance(after - std::chrono::milliseconds(1));
    CHECK_FALSE(r->done);
    advance(std::chrono::milliseconds(1));
    REQUIRE(r->done);
  }

  /// Advances virtual time in steps of at most 1 s, running everything due at each step
  /// (periodic timers re-armed during a step fire in later steps, as in real time).
  void advance(caf::timespan t) {
    while (t.count() > 0) {
      auto step = std::min<caf::timespan>(t, std::chrono::seconds(1));
      sched->advance_time(step);
      sched->run();
      t -= step;
    }
  }
};

inline request get(std::string id) {
  request req;
  req.id = std::move(id);
  return req;
}

/// The fixture with alice's first connection ready and leased, and its fake session.
struct leased_fixture : fixture {
  explicit leased_fixture(pool_config pc = small()) : fixture(pc) {}

  lease l = ready_lease();
  fake_session& session = *fakes->sessions.at(0);
};

} // namespace sshpool::test
