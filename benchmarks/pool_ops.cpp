// The actor side of the pool-ops scenario (see pool_ops.hpp). A CAF translation unit of
// sshpool-bench-engine.
//
// Both drivers have the same life, without a behavior of their own:
//   running (in_flight operations, each starting the next on its reply)
//     ── duration or max_ops reached, nothing left in flight ──► promise set, quit
#include "pool_ops.hpp"

#include <future>
#include <memory>

#include <caf/all.hpp>

#include "sshpool/actors.hpp"

namespace sshpool::bench {

namespace {

using clock_type = std::chrono::steady_clock;
constexpr auto reply_timeout = std::chrono::seconds(10);

struct ops_state {
  static inline const char* name = "sshpool.bench_ops";
  ops_limits limits;
  std::size_t in_flight = 0;
  std::uint64_t issued = 0;
  clock_type::time_point start;
  clock_type::time_point deadline;
  ops_result result;
  std::shared_ptr<std::promise<ops_result>> done;
};

using ops_actor = caf::stateful_actor<ops_state>;

/// Counts one operation (or failure); then, while the run goes on, `next` starts another.
template <class Next>
void completed(ops_actor* self, const std::string& failure, const Next& next) {
  auto& st = self->state;
  --st.in_flight;
  if (failure.empty())
    ++st.result.ok;
  else
    st.result.fail(failure);
  if (st.limits.completed != nullptr)
    st.limits.completed->fetch_add(1, std::memory_order_relaxed);
  if (clock_type::now() < st.deadline && st.issued < st.limits.max_ops && st.result.errors == 0) {
    ++st.issued;
    ++st.in_flight;
    next(self);
  } else if (st.in_flight == 0) {
    st.result.elapsed = clock_type::now() - st.start;
    st.done->set_value(std::move(st.result));
    self->quit();
  }
}

/// Starts `in_flight` operations with `start_one`.
template <class Next>
void start_all(ops_actor* self, const ops_limits& limits,
               std::shared_ptr<std::promise<ops_result>> done, const Next& start_one) {
  auto& st = self->state;
  st.limits = limits;
  st.done = std::move(done);
  st.start = clock_type::now();
  st.deadline = st.start + limits.duration;
  for (std::size_t i = 0; i < limits.in_flight; ++i) {
    ++st.issued;
    ++st.in_flight;
    start_one(self);
  }
}

std::string describe(const caf::error& err) {
  return from_caf_error(err, errc::internal).to_string();
}

struct pair_driver {
  supervisor_actor sup;
  std::string user;
  caf::duration timeout;

  void operator()(ops_actor* self) const {
    auto next = *this;
    self->request(sup, timeout, acquire_atom_v, user)
        .then(
            [self, next](lease& l) {
              self->request(next.sup, next.timeout, release_atom_v, l.user, l)
                  .then([self, next] { completed(self, {}, next); },
                        [self, next](caf::error& err) {
                          completed(self, "release: " + describe(err), next);
                        });
            },
            [self, next](caf::error& err) { completed(self, "acquire: " + describe(err), next); });
  }
};

struct echo_driver {
  caf::actor echo;
  /// An infinite timeout arms no timer in CAF's clock thread.
  caf::duration timeout;

  void operator()(ops_actor* self) const {
    auto next = *this;
    self->request(echo, timeout, std::int32_t{1})
        .then([self, next](std::int32_t) { completed(self, {}, next); },
              [self, next](caf::error& err) { completed(self, describe(err), next); });
  }
};

caf::behavior echo_actor() {
  return {[](std::int32_t x) { return x; }};
}

ops_result wait_for(std::future<ops_result> future, const caf::actor& driver,
                    const ops_limits& limits) {
  if (future.wait_for(limits.duration + 3 * reply_timeout) != std::future_status::ready) {
    caf::anon_send_exit(driver, caf::exit_reason::kill);
    ops_result failed;
    failed.fail("the driver actor did not finish in time");
    return failed;
  }
  return future.get();
}

} // namespace

ops_result run_actor_pairs(engine& e, const std::string& user, bool with_timeout,
                           const ops_limits& limits) {
  auto done = std::make_shared<std::promise<ops_result>>();
  auto future = done->get_future();
  pair_driver one{supervisor_of(e), user,
                  with_timeout ? caf::duration{reply_timeout} : caf::duration{caf::infinite}};
  auto driver = e.system().spawn([limits, done, one](ops_actor* self) -> caf::behavior {
    start_all(self, limits, done, one);
    return {};
  });
  return wait_for(std::move(future), driver, limits);
}

ops_result run_caf_round_trips(engine& e, bool with_timeout, const ops_limits& limits) {
  auto echo = e.system().spawn(echo_actor);
  auto done = std::make_shared<std::promise<ops_result>>();
  auto future = done->get_future();
  echo_driver one{echo, with_timeout ? caf::duration{reply_timeout} : caf::duration{caf::infinite}};
  auto driver = e.system().spawn([limits, done, one](ops_actor* self) -> caf::behavior {
    start_all(self, limits, done, one);
    return {};
  });
  auto result = wait_for(std::move(future), driver, limits);
  caf::anon_send_exit(echo, caf::exit_reason::user_shutdown);
  return result;
}

ops_result run_scoped_round_trips(engine& e, bool scoped_actor_per_call, const ops_limits& limits) {
  auto echo = e.system().spawn(echo_actor);
  ops_result result;
  auto start = clock_type::now();
  auto deadline = start + limits.duration;
  std::unique_ptr<caf::scoped_actor> kept;
  if (!scoped_actor_per_call)
    kept = std::make_unique<caf::scoped_actor>(e.system());
  result.latencies.reserve(std::min<std::uint64_t>(limits.max_ops, 1u << 20));
  while (clock_type::now() < deadline && result.ok + result.errors < limits.max_ops &&
         result.errors == 0) {
    auto sent_at = clock_type::now();
    std::unique_ptr<caf::scoped_actor> fresh;
    if (scoped_actor_per_call)
      fresh = std::make_unique<caf::scoped_actor>(e.system());
    auto& self = scoped_actor_per_call ? *fresh : *kept;
    self->request(echo, caf::timespan{reply_timeout}, std::int32_t{1})
        .receive([&](std::int32_t) { ++result.ok; },
                 [&](caf::error& err) { result.fail(describe(err)); });
    result.latencies.push_back((clock_type::now() - sent_at).count());
    if (limits.completed != nullptr)
      limits.completed->fetch_add(1, std::memory_order_relaxed);
  }
  result.elapsed = clock_type::now() - start;
  caf::anon_send_exit(echo, caf::exit_reason::user_shutdown);
  return result;
}

} // namespace sshpool::bench
