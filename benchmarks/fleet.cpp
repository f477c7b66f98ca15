// The cold-start driver (see fleet.hpp). A CAF translation unit of sshpool-bench-engine.
//
// One event-based actor per wave, no behavior of its own: it lives on its pending replies.
//
//   per user:  acquiring ──lease──► forwarding ──response──► releasing ──► answered
//                  │ error              │ error                          (ok or error)
//                  └────────────────────┴──────────────────────────────► answered
//   when every user has answered: promise set, quit.
#include "fleet.hpp"

#include <future>
#include <memory>

#include <caf/all.hpp>

#include "sshpool/actors.hpp"

namespace sshpool::bench {

namespace {

using clock_type = std::chrono::steady_clock;

struct fleet_state {
  static inline const char* name = "sshpool.bench_fleet";
  std::size_t pending = 0;
  std::size_t body_bytes = 0;
  std::atomic<std::uint64_t>* progress = nullptr;
  clock_type::time_point start;
  fleet_result result;
  std::shared_ptr<std::promise<fleet_result>> done;
};

using fleet_actor = caf::stateful_actor<fleet_state>;

void answered(fleet_actor* self, std::string failure) {
  auto& st = self->state;
  if (failure.empty())
    ++st.result.ok;
  else
    st.result.fail(std::move(failure));
  if (st.progress != nullptr)
    st.progress->fetch_add(1, std::memory_order_relaxed);
  if (--st.pending > 0)
    return;
  st.result.elapsed = clock_type::now() - st.start;
  st.done->set_value(std::move(st.result));
  self->quit();
}

std::string describe(const caf::error& err) {
  return from_caf_error(err, errc::internal).to_string();
}

void forward(fleet_actor* self, const supervisor_actor& sup, lease l) {
  request req;
  req.id = "cold-start";
  auto conn = l.connection;
  self->request(conn, caf::timespan{std::chrono::seconds(35)}, forward_atom_v, std::move(req),
                caf::timespan{std::chrono::seconds(30)})
      .then(
          [self, sup, l](response& res) {
            auto& st = self->state;
            std::string failure;
            if (res.status != 200 || res.body.size() != st.body_bytes)
              failure = "status " + std::to_string(res.status) + ", " +
                        std::to_string(res.body.size()) + "-byte body";
            else
              st.result.request_latencies.push_back((clock_type::now() - st.start).count());
            self->request(sup, caf::timespan{std::chrono::seconds(10)}, release_atom_v, l.user, l)
                .then([self, failure] { answered(self, failure); },
                      [self](caf::error& err) { answered(self, "release: " + describe(err)); });
          },
          [self](caf::error& err) { answered(self, "forward: " + describe(err)); });
}

caf::behavior fleet(fleet_actor* self, supervisor_actor sup, std::vector<std::string> users,
                    std::size_t body_bytes, std::chrono::seconds limit,
                    std::atomic<std::uint64_t>* progress,
                    std::shared_ptr<std::promise<fleet_result>> done) {
  auto& st = self->state;
  st.pending = users.size();
  st.body_bytes = body_bytes;
  st.progress = progress;
  st.done = std::move(done);
  st.start = clock_type::now();
  st.result.lease_latencies.reserve(users.size());
  st.result.request_latencies.reserve(users.size());
  for (auto& user : users)
    self->request(sup, caf::timespan{limit}, acquire_atom_v, user)
        .then(
            [self, sup](lease& l) {
              self->state.result.lease_latencies.push_back(
                  (clock_type::now() - self->state.start).count());
              forward(self, sup, std::move(l));
            },
            [self](caf::error& err) { answered(self, "acquire: " + describe(err)); });
  return {};
}

} // namespace

fleet_result run_first_requests(engine& e, const std::vector<std::string>& users,
                                std::size_t body_bytes, std::chrono::seconds limit,
                                std::atomic<std::uint64_t>* progress) {
  if (users.empty())
    return {};
  auto done = std::make_shared<std::promise<fleet_result>>();
  auto future = done->get_future();
  auto self = e.system().spawn(fleet, supervisor_of(e), users, body_bytes, limit, progress, done);
  // The acquires time out at `limit`; forwards and releases add at most 45 s.
  if (future.wait_for(limit + std::chrono::seconds(50)) != std::future_status::ready) {
    caf::anon_send_exit(self, caf::exit_reason::kill);
    fleet_result failed;
    failed.errors = users.size();
    failed.first_error = "the driver actor did not finish in time";
    return failed;
  }
  return future.get();
}

} // namespace sshpool::bench
