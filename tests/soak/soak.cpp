// sshpool-soak: mixed load with churn and faults for a given time, printing the process's
// RSS, fds and threads as it goes, then checking that they ended flat. Run by
// tests/soak.sh (not in CI: it is meant to run for minutes).
//
// The world: one private sshd, a well-behaved backend and a misbehaving one (both on
// loopback), 24 users split between them. Worker threads lease, forward (small and 256 KiB
// bodies, streamed LLM answers, the misbehaving backend's faults) and release; a churn thread
// closes users' connections, drains users and brings short-lived users in and out; a fault
// thread kills or freezes sshd's connection processes. Every figure line is one sample.
// Flat means: RSS at the end of the load within 10 % (+8 MiB) of RSS after warm-up (a third
// of the run), and, with the load stopped and every connection closed, fds and threads back
// at their level before the load started.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <malloc.h>

#include "backend/http_backend.hpp"
#include "sshpool/sshpool.hpp"
#include "support/process_info.hpp"
#include "support/requests.hpp"
#include "support/script_backend.hpp"
#include "support/test_sshd.hpp"
#include "support/timing.hpp"

using namespace sshpool;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

/// The load's pause after a refused lease, which fails fast: its pace, so that it does not
/// spin on it.
constexpr auto refused_pause = 20ms;
/// The churn's pace: one close, drain or short-lived user each time.
constexpr auto churn_every = 500ms;
/// The fault thread's pace, and how long a freeze of sshd's connection processes lasts.
constexpr auto fault_every = 5s;
constexpr auto freeze_for = 2s;

struct figures {
  double seconds = 0;
  std::size_t rss_kib = 0;
  /// Bytes malloc has handed out and not had back (glibc's mallinfo2): growth here is
  /// memory still held; RSS growth without it is the allocator's fragmentation.
  std::size_t heap_kib = 0;
  std::size_t fds = 0;
  std::size_t threads = 0;
  std::uint64_t connections = 0;
};

figures sample(engine& eng, steady::time_point start) {
  figures f;
  f.seconds = std::chrono::duration<double>(steady::now() - start).count();
  f.rss_kib = test::rss_bytes() / 1024;
  const auto mi = ::mallinfo2();
  f.heap_kib = (mi.uordblks + mi.hblkhd) / 1024;
  f.fds = test::open_fd_count();
  f.threads = test::thread_count();
  f.connections = eng.pool().get_pool_stats().total_connections;
  return f;
}

class soak {
public:
  explicit soak(std::chrono::seconds duration) : duration_(duration) {
    engine_config cfg;
    cfg.log_level = "error";
    cfg.pool.acquire_timeout = 2s;
    cfg.pool.request_timeout = 3s;
    cfg.pool.connect_timeout = 3s;
    cfg.pool.keepalive_interval = 1s;
    cfg.pool.keepalive_timeout = 1s;
    cfg.pool.reconnect_backoff_base = 100ms;
    cfg.pool.reconnect_backoff_cap = 1s;
    cfg.pool.max_response_bytes = 1 << 20;
    eng_ = std::make_unique<engine>(cfg);
    eng_->cleanup().update_config(cleanup_config{2s, 3s});
    for (int i = 0; i < 24; ++i) {
      users_.push_back("user" + std::to_string(i));
      add_user(users_.back(), i % 4 == 3);
    }
  }

  int run() {
    const auto start = steady::now();
    const auto before = sample(*eng_, start);
    std::vector<std::thread> threads;
    for (unsigned i = 0; i < 6; ++i)
      threads.emplace_back([this, i] { work(i); });
    threads.emplace_back([this] { churn(); });
    threads.emplace_back([this] { faults(); });
    std::printf("%8s %10s %8s %8s %9s %6s %8s %9s %9s\n", "seconds", "requests", "failed",
                "rss_kib", "heap_kib", "fds", "threads", "conns", "req/s");
    std::uint64_t last_requests = 0;
    auto last = steady::now();
    std::vector<figures> samples;
    // The figures' pace: six lines at least, one every 10 s at most.
    const auto sample_every = std::min<steady::duration>(10s, duration_ / 6);
    while (steady::now() - start < duration_) {
      test::hold_for(sample_every);
      auto f = sample(*eng_, start);
      auto now = steady::now();
      const auto done = ok_.load() + failed_.load();
      std::printf("%8.0f %10llu %8llu %8zu %9zu %6zu %8zu %9llu %9.0f\n", f.seconds,
                  static_cast<unsigned long long>(done),
                  static_cast<unsigned long long>(failed_.load()), f.rss_kib, f.heap_kib, f.fds,
                  f.threads, static_cast<unsigned long long>(f.connections),
                  static_cast<double>(done - last_requests) /
                      std::chrono::duration<double>(now - last).count());
      std::fflush(stdout);
      last_requests = done;
      last = now;
      samples.push_back(f);
    }
    {
      std::lock_guard<std::mutex> guard(stop_mutex_);
      stop_ = true;
    }
    stop_cv_.notify_all();
    for (auto& t : threads)
      t.join();
    // Quiesce: every user's connections closed, as after max_idle_time. Closing connections
    // and the backends' peers hand their sockets back on their own schedule, with no event
    // to wait for: poll for a bounded time.
    std::map<std::string, bool> users;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      users = faulty_;
    }
    for (const auto& u : users)
      eng_->pool().close_connection(u.first);
    figures end;
    test::eventually(
        [&] {
          end = sample(*eng_, start);
          return end.fds <= before.fds && end.threads <= before.threads && end.connections == 0;
        },
        15s);
    const auto& warm = samples[samples.size() / 3];
    const auto& final_load = samples.back();
    std::printf("\nbefore the load: fds %zu, threads %zu\n", before.fds, before.threads);
    std::printf("rss after warm-up (%.0f s) %zu KiB, at the end of the load %zu KiB\n",
                warm.seconds, warm.rss_kib, final_load.rss_kib);
    std::printf("load stopped, connections closed: fds %zu, threads %zu, connections %llu\n",
                end.fds, end.threads, static_cast<unsigned long long>(end.connections));
    std::printf("requests: %llu ok, %llu failed (faults are injected; by code:",
                static_cast<unsigned long long>(ok_.load()),
                static_cast<unsigned long long>(failed_.load()));
    for (const auto& [code, n] : eng_->metrics().requests)
      std::printf(" %s=%llu", code.c_str(), static_cast<unsigned long long>(n));
    std::printf(")\n");
    const bool fds_flat = end.fds <= before.fds;
    const bool threads_flat = end.threads <= before.threads;
    const bool rss_flat = final_load.rss_kib <= warm.rss_kib + warm.rss_kib / 10 + 8 * 1024;
    const bool internal = eng_->metrics().requests.count("internal") != 0;
    std::printf("flat: fds %s, threads %s, rss %s; internal errors: %s\n", fds_flat ? "yes" : "NO",
                threads_flat ? "yes" : "NO", rss_flat ? "yes" : "NO", internal ? "YES" : "none");
    return fds_flat && threads_flat && rss_flat && !internal && ok_ > 0 ? 0 : 1;
  }

private:
  void add_user(const std::string& user, bool faulty) {
    eng_->set_endpoint(user, sshd_.make_endpoint(faulty ? broken_.port() : good_.port()));
    std::lock_guard<std::mutex> guard(mutex_);
    faulty_[user] = faulty;
  }

  bool faulty(const std::string& user) {
    std::lock_guard<std::mutex> guard(mutex_);
    return faulty_[user];
  }

  void count(bool ok) { ++(ok ? ok_ : failed_); }

  /// Waits `d`, the pace of a churn or fault thread; true, at once, when the run stops.
  bool stopped_within(steady::duration d) {
    std::unique_lock<std::mutex> lock(stop_mutex_);
    return stop_cv_.wait_for(lock, d, [this] { return stop_.load(); });
  }

  void work(unsigned seed) {
    std::mt19937 rng{seed};
    auto pick = [&](std::size_t n) {
      return std::uniform_int_distribution<std::size_t>{0, n - 1}(rng);
    };
    const std::string big(256 * 1024, 'b');
    static const char* const broken_paths[] = {"/ok/5",       "/ok/5",        "/cut",
                                               "/bad-status", "/bad-chunk",   "/big/2097152",
                                               "/silence",    "/trickle/100", "/huge-head/100000"};
    for (std::uint64_t n = 0; !stop_; ++n) {
      const auto& user = users_[pick(users_.size())];
      auto conn = eng_->pool().get_connection(user);
      if (!conn) {
        count(false);
        test::hold_for(refused_pause);
        continue;
      }
      const auto id = std::to_string(seed) + '-' + std::to_string(n);
      if (faulty(user)) {
        count(
            static_cast<bool>(conn->forward(test::make_request(id, "GET", broken_paths[pick(9)]))));
      } else {
        switch (pick(4)) {
        case 0:
          count(static_cast<bool>(conn->forward(test::make_request(id, "POST", "/echo", big))));
          break;
        case 1: {
          std::size_t bytes = 0;
          stream_handlers h;
          h.on_chunk = [&bytes](std::string_view piece) {
            bytes += piece.size();
            return true;
          };
          count(static_cast<bool>(conn->forward_stream(
              test::make_request(id, "POST", "/api/chat", R"({"model":"m","messages":[]})"), h)));
          break;
        }
        default:
          count(static_cast<bool>(conn->forward(test::make_request(id, "GET", "/echo"))));
        }
      }
      eng_->pool().release_connection(user, *conn);
    }
  }

  void churn() {
    std::mt19937 rng{99};
    for (std::uint64_t n = 0; !stopped_within(churn_every); ++n) {
      const auto& user = users_[rng() % users_.size()];
      switch (n % 3) {
      case 0:
        eng_->pool().close_connection(user);
        break;
      case 1:
        eng_->pool().drain_user(user);
        break;
      default: { // a short-lived user (ten names in turn): one request, then drained away
        auto temp = "temp" + std::to_string(n % 10);
        add_user(temp, false);
        if (auto conn = eng_->pool().get_connection(temp)) {
          count(static_cast<bool>(conn->forward(test::make_request("t", "GET", "/echo"))));
          eng_->pool().release_connection(temp, *conn);
        }
        eng_->pool().drain_user(temp);
      }
      }
    }
  }

  void faults() {
    for (std::uint64_t n = 0; !stopped_within(fault_every); ++n) {
      if (n % 2 == 0) {
        for (auto pid : sshd_.connection_pids())
          ::kill(pid, SIGKILL);
      } else {
        auto pids = sshd_.connection_pids();
        for (auto pid : pids)
          ::kill(pid, SIGSTOP);
        test::hold_for(freeze_for);
        for (auto pid : pids)
          ::kill(pid, SIGCONT);
      }
    }
  }

  std::chrono::seconds duration_;
  test::test_sshd sshd_;
  demo::http_backend good_{demo::http_backend::options{"good", "127.0.0.1", 0, 20ms, 8}};
  test::script_backend broken_;
  std::unique_ptr<engine> eng_;
  std::vector<std::string> users_;
  std::mutex mutex_;
  std::map<std::string, bool> faulty_;
  /// Set once, under `stop_mutex_`, with `stop_cv_` told: the workers poll it between
  /// requests; the churn and fault threads wait on it for their pace.
  std::atomic<bool> stop_{false};
  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  std::atomic<std::uint64_t> ok_{0};
  std::atomic<std::uint64_t> failed_{0};
};

} // namespace

int main(int argc, char** argv) {
  double minutes = argc > 1 ? std::atof(argv[1]) : 10.0;
  if (!(minutes > 0) || minutes > 24 * 60) {
    std::fprintf(stderr, "usage: sshpool-soak MINUTES (0 < MINUTES <= 1440)\n");
    return 2;
  }
  std::printf("sshpool-soak: %.1f minutes of mixed load, churn and faults\n", minutes);
  soak s{std::chrono::seconds(static_cast<long long>(minutes * 60))};
  return s.run();
}
