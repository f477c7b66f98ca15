// The engine's internals behind the facade (engine.cpp, forward.cpp): what an engine
// owns (its settings, actor system, SSH runtime and actor tree), a lease handle, and `call`,
// one blocking request of the facade through the hand-off of handoff.hpp. The engine owns the
// SSH runtime, the agent listener (reverse mode, agent_intake.hpp) and, unless given one,
// the actor system; its shutdown stops the listener first, then the actor tree (so every
// transport is closed), then the I/O threads, then the actor system.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <type_traits>

#include <caf/all.hpp>

#include "agent_intake.hpp"
#include "call_traits.hpp"
#include "cluster.hpp"
#include "context.hpp"
#include "handoff.hpp"
#include "lifecycle.hpp"
#include "signals.hpp"
#include "sshpool/actors.hpp"
#include "sshpool/engine.hpp"
#include "sshpool/ssh/log.hpp"
#include "sshpool/ssh/runtime.hpp"
#include "supervisor.hpp"

namespace sshpool::detail {

/// Slack added to the actors' own deadlines for the facade's reply timeout.
constexpr auto reply_slack = std::chrono::seconds(5);

struct engine_impl {
  engine_config cfg;
  std::unique_ptr<caf::actor_system_config> own_cfg;
  std::unique_ptr<caf::actor_system> own_sys;
  caf::actor_system* sys = nullptr;
  std::shared_ptr<sshpool::metrics> counters = std::make_shared<sshpool::metrics>();
  std::shared_ptr<ssh::ssh_runtime> runtime;
  supervisor_actor supervisor;
  agent_intake agents;
  cleanup_actor cleanup;
  shutdown_actor shutdown_coordinator;
  /// Cluster mode only.
  cluster_actor cluster;
  std::unique_ptr<signal_watcher> signals;
  std::atomic<bool> stopped{false};
  /// A drain was started (signal or shutdown()); wait_for_shutdown waits for this.
  std::mutex drain_mx;
  std::condition_variable drain_cv;
  bool drain_requested = false;

  explicit engine_impl(engine_config config) : cfg(std::move(config)) {
    if (auto ok = validate(cfg); !ok)
      throw std::invalid_argument{ok.error().to_string()};
  }

  void start(caf::actor_system& system) {
    sys = &system;
    log().set_level(spdlog::level::from_str(cfg.log_level));
    auto cores = std::max(1u, std::thread::hardware_concurrency());
    ssh::ssh_runtime::options opts;
    opts.reactor_threads = cfg.reactor_threads != 0 ? cfg.reactor_threads : std::max(1u, cores / 2);
    opts.connector_threads = cfg.connector_threads;
    opts.counters = counters;
    runtime = std::make_shared<ssh::ssh_runtime>(opts);
    auto ctx = std::make_shared<actor_context>();
    ctx->pool = cfg.pool;
    ctx->transports = runtime;
    ctx->counters = counters;
    supervisor = spawn_supervisor(system, std::move(ctx));
    cleanup = spawn_cleanup(system, supervisor,
                            cleanup_config{cfg.pool.cleanup_interval, cfg.pool.max_idle_time});
    if (cfg.start_cleanup)
      caf::anon_send(cleanup, start_atom_v);
    shutdown_coordinator = spawn_shutdown(system, supervisor, cfg.pool.force_after_grace_period);
    if (!cfg.cluster.node_id.empty())
      start_cluster(system);
    if (cfg.agents.listen.empty())
      return;
    if (auto ok = agents.start(cfg.agents, caf::actor_cast<supervisor_impl>(supervisor)); !ok) {
      shutdown(); // the engine is not made: its actors and threads end here
      throw std::invalid_argument{"agents: " + ok.error().to_string()};
    }
  }

  /// Spawns the cluster actor and publishes it on cluster.listen; throws invalid_argument
  /// (after stopping what started) if the system or the TLS files do not serve, or the
  /// address cannot be bound.
  void start_cluster(caf::actor_system& system) {
    auto fail = [this](const error& err) {
      shutdown();
      throw std::invalid_argument{err.to_string()};
    };
    if (auto ok = check_cluster_system(system); !ok)
      fail(ok.error());
    if (auto ok = check_tls_files(cfg.cluster); !ok)
      fail(ok.error());
    view_sink views = caf::actor_cast<supervisor_impl>(supervisor); // its full interface
    cluster = spawn_cluster(system, cfg.cluster, supervisor, std::move(views));
    error failure;
    caf::scoped_actor self{system};
    self->request(cluster, std::chrono::seconds(30), listen_atom_v)
        .receive([](std::uint16_t) {},
                 [&](caf::error& err) { failure = from_caf_error(err, errc::invalid_argument); });
    if (failure.code() != errc::none)
      fail(failure);
  }

  /// Cluster mode: tells the other nodes that this one leaves (they drop it from their
  /// members at once), before the drain. Waits for their acknowledgements (bounded by the
  /// heartbeat timeout); call it off the CAF scheduler threads.
  void leave_cluster() {
    if (!cluster)
      return;
    caf::scoped_actor self{*sys};
    self->request(cluster, cfg.cluster.heartbeat_timeout + std::chrono::seconds(1), leave_atom_v)
        .receive([] {},
                 [](caf::error& err) {
                   log().warn("cluster leave: {}", from_caf_error(err, errc::internal).to_string());
                 });
  }

  void request_drain() {
    std::lock_guard<std::mutex> guard{drain_mx};
    drain_requested = true;
    drain_cv.notify_all();
  }

  void shutdown() {
    signals.reset();
    agents.stop(); // no agent arrives while the actors stop
    if (stopped.exchange(true))
      return;
    leave_cluster(); // a no-op after a drain's leave
    request_drain(); // releases wait_for_shutdown callers (they get shutting_down)
    {
      caf::scoped_actor self{*sys};
      self->send_exit(cleanup, caf::exit_reason::user_shutdown);
      self->send_exit(shutdown_coordinator, caf::exit_reason::user_shutdown);
      self->wait_for(cleanup, shutdown_coordinator);
      if (cluster) {
        self->send_exit(cluster, caf::exit_reason::user_shutdown);
        self->wait_for(cluster);
      }
      self->request(supervisor, std::chrono::seconds(30), stop_atom_v)
          .receive([] {},
                   [](caf::error& err) {
                     log().warn("engine stop: {}", from_caf_error(err, errc::internal).to_string());
                   });
      self->send_exit(supervisor, caf::exit_reason::user_shutdown);
      self->wait_for(supervisor);
    }
    supervisor = nullptr;
    cleanup = nullptr;
    shutdown_coordinator = nullptr;
    cluster = nullptr;
    runtime.reset();
    own_sys.reset();
    own_cfg.reset();
  }
};

struct lease_handle {
  lease_handle(std::shared_ptr<engine_impl> i, lease l) : impl(std::move(i)), value(std::move(l)) {}
  std::shared_ptr<engine_impl> impl;
  lease value;
  /// Set by the first release through any copy of the handle.
  mutable std::atomic<bool> released{false};
};

inline error stopped_error() {
  return {errc::shutting_down, "the engine is stopped"};
}

inline bool failed(const error& err) {
  return err.code() != errc::none;
}

/// One blocking request of the facade, whose reply carries something the caller must hand
/// back if it no longer wants it (a lease): `xs` to `dest`, whose reply `on_value` takes on
/// the calling thread. The reply is handed over by the answering actor (handoff.hpp), and
/// the calling thread sleeps on a futex until then or until `timeout` (on the steady
/// clock). A reply that comes after the caller gave up goes to `hand_back` instead (the
/// same values, on the answering actor's thread; it must not block). Returns the failure,
/// if any: the actor's error, `when_gone` if the request was dropped unanswered, `timeout`
/// if no reply came in time.
template <class Handle, class OnValue, class HandBack, class... Ts>
error call_or_hand_back(engine_impl& im, const Handle& dest, caf::timespan timeout, errc when_gone,
                        OnValue on_value, HandBack hand_back, Ts&&... xs) {
  // A handler that does not match the reply would never be called: the call would end in
  // an error instead of failing to compile.
  static_assert(std::is_same_v<reply_tuple_t<Handle, Ts...>, typename params_of<OnValue>::type>,
                "on_value does not take the reply's types");
  static_assert(std::is_same_v<reply_tuple_t<Handle, Ts...>, typename params_of<HandBack>::type>,
                "hand_back does not take the reply's types");
  if (im.stopped.load())
    return stopped_error();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  struct waiter {
    completion_flag flag;
    caf::mailbox_element_ptr reply;
  };
  auto w = std::make_shared<waiter>();
  send_request(
      *im.sys, dest,
      [w, when_gone, hand_back = std::move(hand_back)](caf::mailbox_element_ptr reply) mutable {
        w->reply = std::move(reply);
        if (!w->flag.set() && w->reply) // the caller gave up: the reply is ours
          take_reply(w->reply.get(), when_gone, hand_back);
      },
      std::forward<Ts>(xs)...);
  // A reply that comes as the deadline passes is the caller's if it came first.
  if (!w->flag.wait_until(deadline) && w->flag.abandon())
    return error{errc::timeout, "no reply within the deadline"};
  return take_reply(w->reply.get(), when_gone, on_value);
}

/// A `hand_back` for replies of the types `Tuple` that nothing needs handing back of.
template <class Tuple>
struct discard_reply;

template <class... As>
struct discard_reply<std::tuple<As...>> {
  void operator()(As&...) const {}
};

/// One blocking request of the facade (call_or_hand_back) whose late reply, if any, is
/// discarded.
template <class Handle, class OnValue, class... Ts>
error call(engine_impl& im, const Handle& dest, caf::timespan timeout, errc when_gone,
           OnValue on_value, Ts&&... xs) {
  return call_or_hand_back(im, dest, timeout, when_gone, std::move(on_value),
                           discard_reply<reply_tuple_t<Handle, Ts...>>{}, std::forward<Ts>(xs)...);
}

} // namespace sshpool::detail
