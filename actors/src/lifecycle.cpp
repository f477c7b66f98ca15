// The cleanup actor and the shutdown actor: time-driven coordination of the supervisor,
// by messages only, with time from the actor clock (so tests run them in virtual time).
//
// cleanup:            start_atom                    sweep(g), g current
//             paused ───────────► running ──────────────────────────────► evicting
//               ▲      pause_atom    │ ▲ config_atom: g+1, next sweep at once  │
//               └────────────────────┘ └────── reply: count, next sweep(g) ────┘
//   A sweep carries the generation it was armed with; a stale sweep (pause, new config) is
//   ignored. trigger_atom evicts now, running or not.
//
// shutdown:           drain_atom(grace)               supervisor's report
//              idle ─────────────────► draining ───────────────────────────► done
//                                        │ grace_over_atom / force_atom     (every caller
//                                        └──► force_atom to the supervisor   gets the report)
//
// Both are internal (internal_messages.hpp): the facade drives them.
#include "lifecycle.hpp"

#include <optional>

#include <caf/all.hpp>

#include "handlers.hpp"
#include "sshpool/ssh/log.hpp"

namespace sshpool {

namespace {

// -- cleanup ----------------------------------------------------------------------------------

struct cleanup_state {
  static inline const char* name = "sshpool.cleanup";

  supervisor_actor supervisor;
  cleanup_stats stats;
  std::uint64_t generation = 0;
};

using cleanup_ptr = cleanup_actor::stateful_pointer<cleanup_state>;

void arm_sweep(cleanup_ptr self) {
  auto& st = self->state;
  self->delayed_send(self, st.stats.config.cleanup_interval, sweep_atom_v, ++st.generation);
}

/// Asks the supervisor to evict; `rp` (if any) gets the count.
void run_cleanup(cleanup_ptr self, caf::typed_response_promise<std::uint64_t> rp) {
  auto max_idle = caf::timespan{self->state.stats.config.max_idle_time};
  self->request(self->state.supervisor, std::chrono::seconds(60), evict_atom_v, max_idle)
      .then(
          [self, rp](std::uint64_t closed) mutable {
            auto& st = self->state;
            ++st.stats.runs;
            st.stats.cleanup_count += closed;
            st.stats.last_cleanup_time = std::chrono::system_clock::now();
            if (closed > 0)
              log().info("cleanup closed {} idle connections", closed);
            if (rp.pending())
              rp.deliver(closed);
          },
          [rp](caf::error& err) mutable {
            log().warn("cleanup failed: {}", from_caf_error(err, errc::shutting_down).to_string());
            if (rp.pending())
              rp.deliver(std::move(err));
          });
}

cleanup_actor::behavior_type cleanup_behavior(cleanup_ptr self, supervisor_actor supervisor,
                                              cleanup_config cfg) {
  self->state.supervisor = std::move(supervisor);
  self->state.stats.config = cfg;
  install_exception_handler(self, [](const std::string&) {});
  return {
      [self](start_atom) {
        auto& st = self->state;
        if (st.stats.is_running)
          return;
        st.stats.is_running = true;
        arm_sweep(self);
      },
      [self](pause_atom) {
        auto& st = self->state;
        st.stats.is_running = false;
        ++st.generation; // the armed sweep is stale now
      },
      [self](trigger_atom) -> caf::result<std::uint64_t> {
        auto rp = self->make_response_promise<std::uint64_t>();
        run_cleanup(self, rp);
        return rp;
      },
      [self](config_atom, const cleanup_config& cfg) -> caf::result<void> {
        if (cfg.cleanup_interval.count() <= 0 || cfg.max_idle_time.count() <= 0)
          return make_caf_error(errc::invalid_argument,
                                "cleanup_interval and max_idle_time must be greater than 0 ms");
        auto& st = self->state;
        st.stats.config = cfg;
        if (st.stats.is_running)
          arm_sweep(self); // reschedules at once: the previous sweep is stale
        return caf::unit;
      },
      [self](stats_atom) { return self->state.stats; },
      [self](sweep_atom, std::uint64_t generation) {
        auto& st = self->state;
        if (generation != st.generation || !st.stats.is_running)
          return;
        run_cleanup(self, {});
        arm_sweep(self);
      },
  };
}

// -- shutdown ---------------------------------------------------------------------------------

struct shutdown_state {
  static inline const char* name = "sshpool.shutdown";

  supervisor_actor supervisor;
  bool force_after_grace = true;
  bool draining = false;
  bool forced = false;
  std::uint64_t drain_id = 0;
  caf::actor_clock::time_point started;
  std::vector<caf::typed_response_promise<shutdown_report>> waiting;
  std::optional<shutdown_report> report;
};

using shutdown_ptr = shutdown_actor::stateful_pointer<shutdown_state>;

void force(shutdown_ptr self, const char* why) {
  auto& st = self->state;
  if (!st.draining || st.forced)
    return;
  st.forced = true;
  log().warn("shutdown: {}, cutting what remains", why);
  self->send(st.supervisor, force_atom_v);
}

shutdown_actor::behavior_type shutdown_behavior(shutdown_ptr self, supervisor_actor supervisor,
                                                bool force_after_grace) {
  self->state.supervisor = std::move(supervisor);
  self->state.force_after_grace = force_after_grace;
  install_exception_handler(self, [self](const std::string& what) {
    for (auto& rp : self->state.waiting)
      rp.deliver(make_caf_error(errc::internal, what));
    self->state.waiting.clear();
  });
  // Stopped (the engine goes away) during a drain: its callers get an answer, not silence.
  self->set_exit_handler([self](const caf::exit_msg& msg) {
    for (auto& rp : self->state.waiting)
      rp.deliver(make_caf_error(errc::shutting_down, "the engine stopped during the drain"));
    self->state.waiting.clear();
    self->quit(msg.reason);
  });
  return {
      [self](drain_atom, caf::timespan grace) -> caf::result<shutdown_report> {
        auto& st = self->state;
        if (st.report)
          return *st.report;
        auto rp = self->make_response_promise<shutdown_report>();
        st.waiting.push_back(rp);
        if (st.draining)
          return rp;
        st.draining = true;
        st.started = self->clock().now();
        log().info("shutdown: draining, grace period {} ms",
                   std::chrono::duration_cast<std::chrono::milliseconds>(grace).count());
        if (st.force_after_grace)
          self->delayed_send(self, grace, grace_over_atom_v, ++st.drain_id);
        self->request(st.supervisor, caf::infinite, drain_atom_v)
            .then(
                [self](shutdown_report& report) {
                  auto& st = self->state;
                  report.duration = std::chrono::duration_cast<std::chrono::milliseconds>(
                      self->clock().now() - st.started);
                  report.forced = report.forced || st.forced;
                  log().info("shutdown: done in {} ms, {} connections closed, {} of {} requests "
                             "completed, {} cut{}",
                             report.duration.count(), report.connections_closed,
                             report.completed_during_drain, report.in_flight_at_start, report.cut,
                             report.forced ? ", forced" : "");
                  st.report = report;
                  for (auto& rp : st.waiting)
                    rp.deliver(report);
                  st.waiting.clear();
                },
                [self](caf::error& err) {
                  auto& st = self->state;
                  for (auto& rp : st.waiting)
                    rp.deliver(err);
                  st.waiting.clear();
                  st.draining = false; // a later drain may try again
                  st.forced = false;
                });
        return rp;
      },
      [self](force_atom) { force(self, "forced"); },
      [self](grace_over_atom, std::uint64_t id) {
        if (id == self->state.drain_id && !self->state.report)
          force(self, "grace period over");
      },
  };
}

} // namespace

cleanup_actor spawn_cleanup(caf::actor_system& sys, supervisor_actor supervisor,
                            cleanup_config cfg) {
  return sys.spawn(cleanup_behavior, std::move(supervisor), cfg);
}

shutdown_actor spawn_shutdown(caf::actor_system& sys, supervisor_actor supervisor,
                              bool force_after_grace) {
  return sys.spawn(shutdown_behavior, std::move(supervisor), force_after_grace);
}

} // namespace sshpool
