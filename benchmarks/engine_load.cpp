// The engine paths of sshpool-bench (see engine_load.hpp). The only CAF translation unit of
// the benchmark.
//
// The driver actor, as a CAF-based service would drive the engine:
//
//            all acquire replies           all warm-up replies          issuing stops and
//   acquiring ───────────────────► warming ───────────────────► running ─────────────────►
//       │ an acquire failed           │ a warm-up failed                 nothing in flight
//       └─────────────────────────────┴──────────────────────────────► releasing ──► done
//                                                                  (promise set, quit)
//
// It leases connections through the supervisor (acquire_atom), sends one warm-up request per
// slot (opens the channels), then keeps `concurrency` forward_atom requests in flight, each
// slot sending its next request from the reply handler of its previous one, and finally
// releases its leases and hands the result to the main thread through a promise.
#include "engine_load.hpp"

#include <algorithm>
#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <caf/all.hpp>

#include "sshpool/actors.hpp"

namespace sshpool::bench {

namespace {

const std::string user = "bench";

constexpr auto request_timeout = std::chrono::seconds(30);
constexpr auto acquire_timeout = std::chrono::seconds(30);
constexpr auto connect_timeout = std::chrono::seconds(10);
/// Added to the engine's own deadlines for reply timeouts, so the engine's errors win.
constexpr auto reply_slack = std::chrono::seconds(5);

request make_request() {
  request req;
  req.id = "bench";
  req.method = "GET";
  req.path = "/";
  return req;
}

/// Empty if `res` is the expected 200 with `body_bytes` bytes, else what is wrong.
std::string check(const response& res, std::size_t body_bytes) {
  if (res.status == 200 && res.body.size() == body_bytes)
    return {};
  return "status " + std::to_string(res.status) + " with a " + std::to_string(res.body.size()) +
         "-byte body (expected 200 with " + std::to_string(body_bytes) + ")";
}

// -- the driver actor -----------------------------------------------------------------------

struct driver_state {
  static inline const char* name = "sshpool.bench_driver";

  load_options opts;
  supervisor_actor supervisor;
  std::shared_ptr<std::promise<load_result>> done;
  std::size_t lease_count = 0;
  std::size_t acquire_replies = 0;
  std::vector<lease> leases;
  std::size_t release_replies = 0;
  request req;
  bool warming = true;
  std::size_t in_flight = 0;
  std::uint64_t issued = 0;
  bench_clock::time_point start;
  bench_clock::time_point deadline;
  bench_clock::time_point last_completion;
  load_result result;
};

using driver_actor = caf::stateful_actor<driver_state>;

void on_reply(driver_actor* self, std::size_t slot, bench_clock::time_point sent_at,
              std::string failure);

void send_forward(driver_actor* self, std::size_t slot) {
  auto& st = self->state;
  ++st.in_flight;
  const auto& conn = st.leases[slot % st.leases.size()].connection;
  auto sent_at = bench_clock::now();
  self->request(conn, caf::timespan{request_timeout + reply_slack}, forward_atom_v, st.req,
                caf::timespan{request_timeout})
      .then(
          [self, slot, sent_at](response& res) {
            on_reply(self, slot, sent_at, check(res, self->state.opts.body_bytes));
          },
          [self, slot, sent_at](caf::error& err) {
            on_reply(self, slot, sent_at, from_caf_error(err, errc::internal).to_string());
          });
}

/// Sends the next request of `slot` if the run goes on.
void issue(driver_actor* self, std::size_t slot) {
  auto& st = self->state;
  if (bench_clock::now() >= st.deadline || st.issued >= st.opts.max_requests ||
      st.result.errors >= st.opts.max_errors)
    return;
  ++st.issued;
  send_forward(self, slot);
}

void deliver(driver_actor* self) {
  self->state.done->set_value(std::move(self->state.result));
  self->quit();
}

/// Ends the run: releases every lease, then delivers the result.
void finish(driver_actor* self) {
  auto& st = self->state;
  if (!st.warming && st.last_completion > st.start)
    st.result.elapsed = st.last_completion - st.start;
  if (st.leases.empty()) {
    deliver(self);
    return;
  }
  for (const auto& l : st.leases)
    self->request(st.supervisor, caf::timespan{reply_slack * 2}, release_atom_v, user, l)
        .then(
            [self] {
              if (++self->state.release_replies == self->state.leases.size())
                deliver(self);
            },
            [self](caf::error& err) {
              auto& st = self->state;
              st.result.fail("release: " + from_caf_error(err, errc::internal).to_string());
              if (++st.release_replies == st.leases.size())
                deliver(self);
            });
}

void on_reply(driver_actor* self, std::size_t slot, bench_clock::time_point sent_at,
              std::string failure) {
  auto& st = self->state;
  auto now = bench_clock::now();
  --st.in_flight;
  if (st.warming) {
    if (!failure.empty())
      st.result.abort("warm-up: " + failure);
    if (st.in_flight > 0)
      return;
    if (st.result.aborted) {
      finish(self);
      return;
    }
    st.warming = false;
    st.start = now;
    st.deadline = now + st.opts.duration;
    for (std::size_t i = 0; i < st.opts.concurrency; ++i)
      issue(self, i);
    return;
  }
  st.last_completion = now;
  st.opts.completed->fetch_add(1, std::memory_order_relaxed);
  if (failure.empty()) {
    ++st.result.ok;
    st.result.latencies.push_back((now - sent_at).count());
  } else {
    st.result.fail(std::move(failure));
  }
  issue(self, slot);
  if (st.in_flight == 0)
    finish(self);
}

void on_acquired(driver_actor* self) {
  auto& st = self->state;
  if (++st.acquire_replies < st.lease_count)
    return;
  if (st.result.aborted) {
    finish(self);
    return;
  }
  for (std::size_t i = 0; i < st.opts.concurrency; ++i)
    send_forward(self, i);
}

caf::behavior driver(driver_actor* self, load_options opts, supervisor_actor supervisor,
                     std::size_t lease_count, std::shared_ptr<std::promise<load_result>> done) {
  auto& st = self->state;
  st.opts = opts;
  st.supervisor = std::move(supervisor);
  st.done = std::move(done);
  st.lease_count = lease_count;
  st.req = make_request();
  st.result.latencies.reserve(std::min<std::uint64_t>(opts.max_requests, 1u << 20));
  for (std::size_t i = 0; i < lease_count; ++i)
    self->request(st.supervisor, caf::timespan{acquire_timeout + connect_timeout + reply_slack},
                  acquire_atom_v, user)
        .then(
            [self](lease& l) {
              self->state.leases.push_back(std::move(l));
              on_acquired(self);
            },
            [self](caf::error& err) {
              self->state.result.abort("acquire: " +
                                       from_caf_error(err, errc::internal).to_string());
              on_acquired(self);
            });
  // No behavior of its own: the actor lives on its pending replies and quits in deliver().
  return {};
}

// -- the facade threads ---------------------------------------------------------------------

/// What one facade thread measured.
struct worker_result {
  load_result result;
  bench_clock::time_point last_completion;
};

/// The start line of the facade threads: the main thread opens it once every thread has
/// finished its warm-up request.
struct start_gate {
  std::mutex mx;
  std::condition_variable cv;
  std::size_t warmed = 0;
  bool open = false;
  std::string warm_up_error;
  bench_clock::time_point start;
  bench_clock::time_point deadline;
};

void facade_worker(const connection& conn, const load_options& opts, start_gate& gate,
                   std::atomic<std::uint64_t>& issued, std::atomic<std::uint64_t>& errors,
                   worker_result& out) {
  auto req = make_request();
  auto warm = conn.forward(req);
  bench_clock::time_point deadline;
  {
    std::unique_lock<std::mutex> guard{gate.mx};
    if (gate.warm_up_error.empty()) {
      if (!warm)
        gate.warm_up_error = warm.error().to_string();
      else if (auto what = check(*warm, opts.body_bytes); !what.empty())
        gate.warm_up_error = what;
    }
    ++gate.warmed;
    gate.cv.notify_all();
    gate.cv.wait(guard, [&] { return gate.open; });
    if (!gate.warm_up_error.empty())
      return;
    deadline = gate.deadline;
  }
  auto& res = out.result;
  res.latencies.reserve(
      std::min<std::uint64_t>(opts.max_requests / opts.concurrency + 1, 1u << 16));
  while (bench_clock::now() < deadline && issued.fetch_add(1) < opts.max_requests &&
         errors.load() < opts.max_errors) {
    auto sent_at = bench_clock::now();
    auto reply = conn.forward(req);
    auto now = bench_clock::now();
    out.last_completion = now;
    opts.completed->fetch_add(1, std::memory_order_relaxed);
    auto failure = reply ? check(*reply, opts.body_bytes) : reply.error().to_string();
    if (failure.empty()) {
      ++res.ok;
      res.latencies.push_back((now - sent_at).count());
    } else {
      errors.fetch_add(1);
      res.fail(std::move(failure));
    }
  }
}

} // namespace

engine_load::engine_load(const engine_target& target) : target_(target) {
  engine_config cfg;
  cfg.log_level = "warn";
  cfg.pool.request_timeout = request_timeout;
  cfg.pool.acquire_timeout = acquire_timeout;
  cfg.pool.connect_timeout = connect_timeout;
  cfg.pool.max_connections_per_user = target.connections;
  cfg.pool.max_channels_per_connection = target.channels;
  engine_ = std::make_unique<engine>(cfg);
  endpoint ep;
  ep.host = "127.0.0.1";
  ep.port = target.sshd_port;
  ep.username = target.username;
  ep.identity_file = target.identity_file;
  ep.known_hosts_file = target.known_hosts_file;
  ep.target_host = "127.0.0.1";
  ep.target_port = target.target_port;
  if (auto ok = engine_->set_endpoint(user, ep); !ok)
    throw std::runtime_error{"set_endpoint: " + ok.error().to_string()};
}

engine_load::~engine_load() = default;

load_result engine_load::run_actor(const load_options& opts) {
  auto done = std::make_shared<std::promise<load_result>>();
  auto result = done->get_future();
  auto lease_count = std::min(opts.concurrency, target_.connections * target_.channels);
  auto self = engine_->system().spawn(driver, opts, supervisor_of(*engine_), lease_count, done);
  // Acquire (handshake included), warm-up, the run, its drain and the releases, each bounded.
  auto limit =
      opts.duration + acquire_timeout + connect_timeout + 2 * request_timeout + 4 * reply_slack;
  if (result.wait_for(limit) != std::future_status::ready) {
    caf::anon_send_exit(self, caf::exit_reason::kill);
    load_result failed;
    failed.abort("the driver actor did not finish in time");
    return failed;
  }
  return result.get();
}

load_result engine_load::run_facade(const load_options& opts) {
  load_result result;
  auto& pool = engine_->pool();
  auto lease_count = std::min(opts.concurrency, target_.connections * target_.channels);
  std::vector<connection> conns;
  for (std::size_t i = 0; i < lease_count; ++i) {
    auto conn = pool.get_connection(user);
    if (!conn) {
      result.abort("get_connection: " + conn.error().to_string());
      break;
    }
    conns.push_back(std::move(*conn));
  }
  if (!result.aborted) {
    start_gate gate;
    std::atomic<std::uint64_t> issued{0};
    std::atomic<std::uint64_t> errors{0};
    std::vector<worker_result> outs(opts.concurrency);
    std::vector<std::thread> threads;
    threads.reserve(opts.concurrency);
    for (std::size_t i = 0; i < opts.concurrency; ++i)
      threads.emplace_back(facade_worker, std::cref(conns[i % conns.size()]), std::cref(opts),
                           std::ref(gate), std::ref(issued), std::ref(errors), std::ref(outs[i]));
    {
      std::unique_lock<std::mutex> guard{gate.mx};
      gate.cv.wait(guard, [&] { return gate.warmed == opts.concurrency; });
      gate.start = bench_clock::now();
      gate.deadline = gate.start + opts.duration;
      gate.open = true;
      gate.cv.notify_all();
    }
    for (auto& t : threads)
      t.join();
    if (!gate.warm_up_error.empty()) {
      result.abort("warm-up: " + gate.warm_up_error);
    } else {
      bench_clock::time_point last = gate.start;
      for (auto& out : outs) {
        result.ok += out.result.ok;
        result.errors += out.result.errors;
        if (result.first_error.empty())
          result.first_error = out.result.first_error;
        result.latencies.insert(result.latencies.end(), out.result.latencies.begin(),
                                out.result.latencies.end());
        last = std::max(last, out.last_completion);
      }
      result.elapsed = last - gate.start;
    }
  }
  for (const auto& conn : conns)
    if (auto ok = pool.release_connection(user, conn); !ok)
      result.fail("release: " + ok.error().to_string());
  return result;
}

} // namespace sshpool::bench
