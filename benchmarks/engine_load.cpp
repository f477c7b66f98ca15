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
// slot or lease, whichever are more (opens the channels), then keeps `concurrency`
// forward_atom requests in flight, each slot sending its next request (always on its own
// lease) from the reply handler of its previous one, and finally releases its leases
// and hands the result to the main thread through a promise.
#include "engine_load.hpp"

#include <algorithm>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <caf/all.hpp>

#include "sshpool/actors.hpp"
#include "support/agent_home.hpp"
#include "support/child_process.hpp"
#include "support/os.hpp"

namespace sshpool::bench {

namespace {

std::string user_name(std::size_t i) {
  return "bench-" + std::to_string(i);
}

constexpr auto request_timeout = std::chrono::seconds(30);
/// Long enough for a thousand users' handshakes in the first warm-up.
constexpr auto acquire_timeout = std::chrono::seconds(120);
/// The connect deadline includes the wait for a connector thread: room for a thousand users'
/// handshakes queued at once in the first warm-up.
constexpr auto connect_timeout = std::chrono::seconds(90);
/// Added to the engine's own deadlines for reply timeouts, so the engine's errors win.
constexpr auto reply_slack = std::chrono::seconds(5);
/// Reverse mode: how long the agents have to dial in and hold their forward.
constexpr auto agent_connect_timeout = std::chrono::seconds(30);

request make_request(bool channel_reuse) {
  request req;
  req.id = "bench";
  req.method = "GET";
  req.path = "/";
  if (!channel_reuse)
    req.headers.emplace_back("Connection", "close");
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
  /// Lease i belongs to user i % users; slot s always sends on lease s % leases, as a
  /// wrk connection stays on its tunnel (a slow connection slows its own slots, instead of
  /// collecting everyone's requests). A lease whose acquire failed has an empty user.
  std::vector<lease> leases;
  std::size_t stats_replies = 0;
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
  // No CAF timeout: the connection answers by the deadline in the message (or fails every
  // request when it closes), and a timed request costs a wakeup of CAF's clock thread.
  self->request(conn, caf::infinite, forward_atom_v, st.req, caf::timespan{request_timeout})
      .then(
          [self, slot, sent_at](response& res) {
            on_reply(self, slot, sent_at, check(res, self->state.opts.body_bytes));
          },
          [self, slot, sent_at](caf::error& err) {
            on_reply(self, slot, sent_at, from_caf_error(err, errc::internal).to_string());
          });
}

/// Sends the next request of a slot if the run goes on.
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

/// Releases every lease, then delivers the result.
void release_all(driver_actor* self) {
  auto& st = self->state;
  auto held = static_cast<std::size_t>(std::count_if(
      st.leases.begin(), st.leases.end(), [](const lease& l) { return !l.user.empty(); }));
  if (held == 0) {
    deliver(self);
    return;
  }
  for (const auto& l : st.leases) {
    if (l.user.empty())
      continue;
    self->request(st.supervisor, caf::timespan{reply_slack * 2}, release_atom_v, l.user, l)
        .then(
            [self, held] {
              if (++self->state.release_replies == held)
                deliver(self);
            },
            [self, held](caf::error& err) {
              auto& st = self->state;
              st.result.fail("release: " + from_caf_error(err, errc::internal).to_string());
              if (++st.release_replies == held)
                deliver(self);
            });
  }
}

/// Ends the run: asks each connection used how many channels it has open, then releases.
void finish(driver_actor* self) {
  auto& st = self->state;
  if (!st.warming && st.last_completion > st.start)
    st.result.elapsed = st.last_completion - st.start;
  std::map<std::uint64_t, connection_actor> conns;
  for (const auto& l : st.leases)
    if (!l.user.empty())
      conns.emplace(l.connection_id, l.connection);
  if (conns.empty()) {
    release_all(self);
    return;
  }
  auto expected = conns.size();
  for (auto& [id, conn] : conns)
    self->request(conn, caf::timespan{reply_slack}, stats_atom_v)
        .then(
            [self, expected](connection_stats& cs) {
              auto& st = self->state;
              st.result.channels_per_connection.push_back(cs.channel_count);
              if (++st.stats_replies == expected)
                release_all(self);
            },
            [self, expected](caf::error&) {
              if (++self->state.stats_replies == expected)
                release_all(self);
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
    if (st.opts.started)
      st.opts.started();
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
  for (std::size_t i = 0; i < std::max(st.opts.concurrency, st.leases.size()); ++i)
    send_forward(self, i);
}

caf::behavior driver(driver_actor* self, load_options opts, supervisor_actor supervisor,
                     std::size_t users, std::size_t lease_count, bool channel_reuse,
                     std::shared_ptr<std::promise<load_result>> done) {
  auto& st = self->state;
  st.opts = opts;
  st.supervisor = std::move(supervisor);
  st.done = std::move(done);
  st.lease_count = lease_count;
  st.leases.resize(lease_count);
  st.req = make_request(channel_reuse);
  st.result.latencies.reserve(std::min<std::uint64_t>(opts.max_requests, 1u << 20));
  for (std::size_t i = 0; i < lease_count; ++i)
    self->request(st.supervisor, caf::timespan{acquire_timeout + connect_timeout + reply_slack},
                  acquire_atom_v, user_name(i % users))
        .then(
            [self, i](lease& l) {
              self->state.leases[i] = std::move(l);
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
/// finished its warm-up requests.
struct start_gate {
  std::mutex mx;
  std::condition_variable cv;
  std::size_t warmed = 0;
  bool open = false;
  std::string warm_up_error;
  bench_clock::time_point start;
  bench_clock::time_point deadline;
};

/// One thread: a warm-up request on each of its connections, then requests round robin over
/// them until the deadline.
void facade_worker(std::vector<connection> conns, const request& req, const load_options& opts,
                   start_gate& gate, std::atomic<std::uint64_t>& issued,
                   std::atomic<std::uint64_t>& errors, worker_result& out) {
  std::string warm_up_error;
  for (const auto& conn : conns) {
    auto warm = conn.forward(req);
    warm_up_error = warm ? check(*warm, opts.body_bytes) : warm.error().to_string();
    if (!warm_up_error.empty())
      break;
  }
  bench_clock::time_point deadline;
  {
    std::unique_lock<std::mutex> guard{gate.mx};
    if (gate.warm_up_error.empty())
      gate.warm_up_error = warm_up_error;
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
  for (std::size_t next = 0;
       bench_clock::now() < deadline && issued.fetch_add(1) < opts.max_requests &&
       errors.load() < opts.max_errors;
       ++next) {
    auto sent_at = bench_clock::now();
    auto reply = conns[next % conns.size()].forward(req);
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
  // Handshakes are not measured here: let a thousand users' first warm-up go fast (the
  // private sshd's MaxStartups is 200:30:400).
  cfg.connector_threads = 8;
  cfg.reactor_threads = target.reactors;
  cfg.pool.max_handshakes_per_second = 1000;
  if (target.agents) {
    home_ = std::make_unique<test::agent_home>();
    cfg.agents.listen = "127.0.0.1:0";
    cfg.agents.host_key_file = home_->dir() + "/listener_host_ed25519";
  }
  engine_ = std::make_unique<engine>(cfg);
  for (std::size_t i = 0; i < target.users; ++i) {
    auto ep = target.ep;
    if (target.agents) {
      ep = endpoint{};
      ep.mode = endpoint_mode::agent;
      ep.authorized_keys_file = home_->dir() + "/" + user_name(i) + ".keys";
      ep.target_port = target.ep.target_port;
      test::write_file(ep.authorized_keys_file, home_->public_key(user_name(i)) + "\n");
    }
    if (auto ok = engine_->set_endpoint(user_name(i), ep); !ok)
      throw std::runtime_error{"set_endpoint: " + ok.error().to_string()};
  }
  if (target.agents)
    start_agents();
}

void engine_load::start_agents() {
  auto listener = engine_->agent_listener();
  if (!listener)
    throw std::runtime_error{"the engine has no agent listener"};
  home_->trust(listener->port, listener->public_key);
  auto port = std::to_string(target_.ep.target_port);
  for (std::size_t i = 0; i < target_.users; ++i)
    agents_.push_back(std::make_unique<test::logged_process>(
        home_->log_file("agent-" + user_name(i)),
        home_->ssh(user_name(i), listener->port,
                   {"-N", "-R", port + ":127.0.0.1:" + port, "-o", "ExitOnForwardFailure=yes"}, {},
                   user_name(i))));
  auto deadline = bench_clock::now() + agent_connect_timeout;
  for (;;) {
    std::size_t connected = 0;
    for (const auto& u : engine_->pool().get_pool_stats().users)
      connected += u.agents > 0 ? 1 : 0;
    if (connected == target_.users)
      return;
    for (auto& agent : agents_)
      if (auto code = agent->wait(std::chrono::milliseconds(0)))
        throw std::runtime_error{"an agent (ssh -N -R) exited with " + std::to_string(*code) +
                                 " before it connected: " + agent->output()};
    if (bench_clock::now() >= deadline)
      throw std::runtime_error{"the agents did not connect within 30 s; the first one says: " +
                               agents_.front()->output()};
    // The pause between two looks at the pool ends early if the first agent exits.
    agents_.front()->wait(std::chrono::milliseconds(20));
  }
}

std::size_t engine_load::leases_per_user(const load_options& opts) const {
  return std::max<std::size_t>(
      1, std::min(opts.concurrency, target_.connections * target_.channels) / target_.users);
}

engine_load::~engine_load() = default;

load_result engine_load::run_actor(const load_options& opts) {
  auto done = std::make_shared<std::promise<load_result>>();
  auto result = done->get_future();
  auto self =
      engine_->system().spawn(driver, opts, supervisor_of(*engine_), target_.users,
                              leases_per_user(opts) * target_.users, target_.channel_reuse, done);
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

std::vector<connection> engine_load::lease_connections(const load_options& opts,
                                                       load_result& result) {
  std::vector<connection> conns;
  auto lease_count = leases_per_user(opts) * target_.users;
  for (std::size_t i = 0; i < lease_count; ++i) {
    auto conn = engine_->pool().get_connection(user_name(i % target_.users));
    if (!conn) {
      result.abort("get_connection: " + conn.error().to_string());
      break;
    }
    conns.push_back(std::move(*conn));
  }
  return conns;
}

void engine_load::release_connections(const std::vector<connection>& conns, load_result& result) {
  std::map<std::uint64_t, std::uint32_t> channels;
  for (const auto& conn : conns)
    channels.emplace(conn.id(), conn.get_stats().channel_count);
  for (auto& [id, count] : channels)
    result.channels_per_connection.push_back(count);
  for (const auto& conn : conns)
    if (auto ok = engine_->pool().release_connection(conn.user(), conn); !ok)
      result.fail("release: " + ok.error().to_string());
}

load_result engine_load::run_facade(const load_options& opts) {
  load_result result;
  auto conns = lease_connections(opts, result);
  if (!result.aborted) {
    start_gate gate;
    std::atomic<std::uint64_t> issued{0};
    std::atomic<std::uint64_t> errors{0};
    std::vector<worker_result> outs(opts.concurrency);
    std::vector<std::thread> threads;
    threads.reserve(opts.concurrency);
    auto req = make_request(target_.channel_reuse);
    for (std::size_t i = 0; i < opts.concurrency; ++i) {
      // Thread i takes leases i, i + concurrency, ... (or shares lease i % leases).
      std::vector<connection> share;
      for (auto j = i; j < conns.size(); j += opts.concurrency)
        share.push_back(conns[j]);
      if (share.empty())
        share.push_back(conns[i % conns.size()]);
      threads.emplace_back(facade_worker, std::move(share), std::cref(req), std::cref(opts),
                           std::ref(gate), std::ref(issued), std::ref(errors), std::ref(outs[i]));
    }
    {
      std::unique_lock<std::mutex> guard{gate.mx};
      gate.cv.wait(guard, [&] { return gate.warmed == opts.concurrency; });
      gate.start = bench_clock::now();
      gate.deadline = gate.start + opts.duration;
      if (opts.started)
        opts.started();
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
        result.add(out.result);
        result.latencies.insert(result.latencies.end(), out.result.latencies.begin(),
                                out.result.latencies.end());
        last = std::max(last, out.last_completion);
      }
      result.elapsed = last - gate.start;
    }
  }
  release_connections(conns, result);
  return result;
}

load_result engine_load::run_async(const load_options& opts) {
  load_result result;
  auto conns = lease_connections(opts, result);
  if (result.aborted) {
    release_connections(conns, result);
    return result;
  }
  auto req = make_request(target_.channel_reuse);
  // Slot s always sends on lease s % leases; the thread takes every reply that is ready
  // (sending each slot's next request at once) and sleeps only when none is.
  struct slot {
    std::future<expected<response>> reply;
    bench_clock::time_point sent_at;
  };
  std::vector<slot> slots(std::max(opts.concurrency, conns.size()));
  auto send = [&](std::size_t s) {
    slots[s].sent_at = bench_clock::now();
    slots[s].reply = conns[s % conns.size()].forward_async(req);
  };
  for (std::size_t s = 0; s < slots.size(); ++s) // the warm-up: one request per slot
    send(s);
  for (auto& sl : slots) {
    auto warm = sl.reply.get();
    auto failure = warm ? check(*warm, opts.body_bytes) : warm.error().to_string();
    if (!failure.empty() && !result.aborted)
      result.abort("warm-up: " + failure);
  }
  if (!result.aborted) {
    slots.resize(opts.concurrency);
    result.latencies.reserve(std::min<std::uint64_t>(opts.max_requests, 1u << 20));
    auto start = bench_clock::now();
    if (opts.started)
      opts.started();
    auto deadline = start + opts.duration;
    auto last = start;
    std::uint64_t issued = 0;
    auto more = [&] {
      return bench_clock::now() < deadline && issued < opts.max_requests &&
             result.errors < opts.max_errors;
    };
    std::size_t in_flight = 0;
    for (std::size_t s = 0; s < slots.size() && more(); ++s, ++issued, ++in_flight)
      send(s);
    // Takes slot s's reply (waiting for it if need be) and sends the slot's next request.
    auto take = [&](std::size_t s) {
      auto reply = slots[s].reply.get();
      --in_flight;
      last = bench_clock::now();
      opts.completed->fetch_add(1, std::memory_order_relaxed);
      auto failure = reply ? check(*reply, opts.body_bytes) : reply.error().to_string();
      if (failure.empty()) {
        ++result.ok;
        result.latencies.push_back((last - slots[s].sent_at).count());
      } else {
        result.fail(std::move(failure));
      }
      if (more()) {
        send(s);
        ++issued;
        ++in_flight;
      }
    };
    // Every reply that is ready, then (if none was) a wait for the oldest request's.
    while (in_flight > 0) {
      std::size_t taken = 0;
      std::size_t oldest = slots.size();
      for (std::size_t s = 0; s < slots.size(); ++s) {
        if (!slots[s].reply.valid())
          continue;
        if (slots[s].reply.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
          take(s);
          ++taken;
        } else if (oldest == slots.size() || slots[s].sent_at < slots[oldest].sent_at) {
          oldest = s;
        }
      }
      if (taken == 0 && oldest < slots.size())
        take(oldest);
    }
    result.elapsed = last - start;
  }
  release_connections(conns, result);
  return result;
}

} // namespace sshpool::bench
