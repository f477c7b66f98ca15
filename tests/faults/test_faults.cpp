// The fault suite ([faults]): a real sshd killed, frozen or cut off by the network while
// callers keep it busy, and a backend that misbehaves on one channel while other channels
// of the same connection carry normal traffic. Each scenario asserts that every call ends
// within its deadline with a typed error, that service comes back, and that neighbours and
// the process's fd and thread counts are unaffected.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "backend/http_backend.hpp"
#include "sshpool/sshpool.hpp"
#include "support/leak_check.hpp"
#include "support/netns.hpp"
#include "support/requests.hpp"
#include "support/script_backend.hpp"
#include "support/test_sshd.hpp"
#include "support/timing.hpp"

using namespace sshpool;
using namespace sshpool::test;
using namespace std::chrono_literals;
using sshpool::demo::http_backend;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr auto acquire_timeout = 3s;
constexpr auto request_timeout = 3s;
/// What a call may take beyond its own deadline (scheduling on 2 shared cores).
constexpr auto slack = 1500ms;
/// The load's pause after a refused or backed-off lease, which fails fast: its pace, so
/// that it does not spin on it.
constexpr auto refused_pause = 50ms;
/// How long each outage lasts, as the scenarios ask: sshd killed until its restart, sshd
/// frozen, the network dropping every packet.
constexpr auto kill_outage = 2s;
constexpr auto freeze_outage = 3s;
constexpr auto network_outage = 3s;

/// Short deadlines everywhere, so faults show within seconds: keepalive probes every
/// 500 ms, answered within 500 ms; handshakes within 2 s; reconnect backoff capped at 1 s.
engine_config fault_config() {
  engine_config cfg;
  cfg.log_level = "error";
  cfg.pool.acquire_timeout = acquire_timeout;
  cfg.pool.request_timeout = request_timeout;
  cfg.pool.connect_timeout = 2s;
  cfg.pool.keepalive_interval = 500ms;
  cfg.pool.keepalive_timeout = 500ms;
  cfg.pool.reconnect_backoff_base = 100ms;
  cfg.pool.reconnect_backoff_cap = 1s;
  return cfg;
}

/// Callers that keep every user busy (lease, forward a /slow/100, release, again) and
/// record how each call ended. Error codes a server or network fault may give; anything
/// else (internal, invalid_request, not_leased...) is a bug.
class load {
public:
  load(engine& eng, std::vector<std::string> users) : eng_(eng), users_(std::move(users)) {
    for (std::size_t i = 0; i < users_.size(); ++i)
      threads_.emplace_back([this, i] { run(users_[i]); });
  }
  ~load() { stop(); }

  void stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable())
        t.join();
    }
  }

  /// Waits until every user had a successful forward that started after `t`; returns how
  /// long after `t` the last of them succeeded, or nothing after `bound`.
  std::optional<milliseconds> all_served_after(steady::time_point t, milliseconds bound) {
    std::unique_lock<std::mutex> lock(mutex_);
    bool ok = cv_.wait_until(lock, t + bound, [&] {
      for (const auto& u : users_) {
        auto it = last_success_start_.find(u);
        if (it == last_success_start_.end() || it->second < t)
          return false;
      }
      return true;
    });
    if (!ok)
      return std::nullopt;
    steady::time_point latest = t;
    for (const auto& u : users_)
      latest = std::max(latest, first_success_end_after(u, t));
    return std::chrono::duration_cast<milliseconds>(latest - t);
  }

  /// Forwards that were in flight at `t` and failed: their codes.
  std::multiset<errc> failed_in_flight_at(steady::time_point t) {
    std::lock_guard<std::mutex> guard(mutex_);
    std::multiset<errc> result;
    for (const auto& c : calls_) {
      if (c.forward && !c.ok && c.start <= t && c.end >= t)
        result.insert(c.code);
    }
    return result;
  }

  struct summary {
    std::size_t calls = 0;
    std::size_t ok = 0;
    std::size_t over_deadline = 0;
    std::size_t unexpected_codes = 0;
    long long longest_ms = 0;
  };

  summary summarise() {
    std::lock_guard<std::mutex> guard(mutex_);
    summary s;
    for (const auto& c : calls_) {
      ++s.calls;
      s.ok += c.ok ? 1 : 0;
      auto took = c.end - c.start;
      s.longest_ms = std::max(s.longest_ms, ms(took));
      auto deadline = c.forward ? milliseconds(request_timeout) : milliseconds(acquire_timeout);
      if (took > deadline + slack)
        ++s.over_deadline;
      if (!c.ok && expected_codes().count(c.code) == 0) {
        ++s.unexpected_codes;
        UNSCOPED_INFO("unexpected " << to_string(c.code) << ": " << c.message);
      }
    }
    return s;
  }

private:
  struct call {
    std::string user;
    bool forward = false;
    steady::time_point start;
    steady::time_point end;
    bool ok = false;
    errc code = errc::none;
    std::string message;
  };

  static const std::set<errc>& expected_codes() {
    static const std::set<errc> codes{
        errc::connection_lost, errc::request_timeout,     errc::connect_failed, errc::timeout,
        errc::pool_exhausted,  errc::channel_open_failed, errc::upstream_closed};
    return codes;
  }

  steady::time_point first_success_end_after(const std::string& user, steady::time_point t) {
    for (const auto& c : calls_) {
      if (c.user == user && c.forward && c.ok && c.start >= t)
        return c.end;
    }
    return t;
  }

  static call start_call(const std::string& user, bool forward) {
    call c;
    c.user = user;
    c.forward = forward;
    c.start = steady::now();
    return c;
  }

  void record(call c) {
    {
      std::lock_guard<std::mutex> guard(mutex_);
      if (c.forward && c.ok) {
        auto& last = last_success_start_[c.user];
        last = std::max(last, c.start);
      }
      calls_.push_back(std::move(c));
    }
    cv_.notify_all();
  }

  void run(const std::string& user) {
    for (std::uint64_t n = 0; !stop_; ++n) {
      auto lease = start_call(user, false);
      auto conn = eng_.pool().get_connection(user);
      lease.end = steady::now();
      lease.ok = static_cast<bool>(conn);
      if (!conn) {
        lease.code = conn.error().code();
        lease.message = conn.error().message();
        record(std::move(lease));
        hold_for(refused_pause);
        continue;
      }
      record(std::move(lease));
      auto fwd = start_call(user, true);
      auto res = conn->forward(get(user + '-' + std::to_string(n), "/slow/100"));
      fwd.end = steady::now();
      fwd.ok = res && res->status == 200;
      if (!res) {
        fwd.code = res.error().code();
        fwd.message = res.error().message();
      }
      record(std::move(fwd));
      eng_.pool().release_connection(user, *conn);
    }
  }

  engine& eng_;
  std::vector<std::string> users_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<call> calls_;
  std::map<std::string, steady::time_point> last_success_start_;
  std::vector<std::thread> threads_;
};

std::vector<std::string> set_users(engine& eng, const endpoint& ep, std::size_t n) {
  std::vector<std::string> users;
  for (std::size_t i = 0; i < n; ++i) {
    users.push_back("user" + std::to_string(i));
    REQUIRE(eng.set_endpoint(users.back(), ep));
  }
  return users;
}

/// The checks every server or network fault ends with.
void check_bounded(load& l, steady::time_point fault_at) {
  auto s = l.summarise();
  auto in_flight = l.failed_in_flight_at(fault_at);
  WARN(s.calls << " calls, " << s.ok << " ok, longest " << s.longest_ms << " ms, "
               << in_flight.size() << " forwards in flight at the fault failed");
  CHECK(s.over_deadline == 0);
  CHECK(s.unexpected_codes == 0);
  for (auto code : in_flight)
    CHECK((code == errc::connection_lost || code == errc::request_timeout));
}

/// Four users under load through `ep`; `outage()` injects the fault, lasts as long as the
/// scenario asks and ends it. Every call must end in time, each user must be served again
/// within 5 s of the end, and fd and thread counts must return to where they were.
void survive_outage(const endpoint& ep, const std::function<void()>& outage, const char* returned) {
  leak_check leaks;
  {
    engine eng{fault_config()};
    auto users = set_users(eng, ep, 4);
    load l{eng, users};
    REQUIRE(l.all_served_after(steady::now(), 10s));
    auto fault_at = steady::now();
    outage();
    auto ended_at = steady::now();
    auto back = l.all_served_after(ended_at, 10s);
    l.stop();
    REQUIRE(back);
    WARN("every user served again " << back->count() << " ms after " << returned);
    CHECK(*back <= 5s);
    check_bounded(l, fault_at);
  }
  leaks.check();
}

} // namespace

TEST_CASE("sshd killed or frozen under load: calls end in time, service returns, nothing leaks",
          "[faults]") {
  test_sshd sshd;
  http_backend backend{http_backend::options{"backend"}};
  const auto ep = sshd.make_endpoint(backend.port());
  SECTION("killed (-9), restarted 2 s later") {
    auto kill_and_restart = [&] {
      sshd.signal_all(SIGKILL);
      hold_for(kill_outage);
      sshd.stop(); // reaps the killed processes
      sshd.start();
    };
    survive_outage(ep, kill_and_restart, "sshd returned");
  }
  SECTION("frozen (SIGSTOP) for 3 s, then resumed") {
    // The listener and every connection process freeze; the kernel still completes TCP
    // handshakes into the listen backlog, so new connections hang in the SSH banner.
    auto freeze = [&] {
      sshd.signal_all(SIGSTOP);
      hold_for(freeze_outage);
      sshd.signal_all(SIGCONT);
    };
    survive_outage(ep, freeze, "sshd resumed");
  }
}

TEST_CASE("the network drops every packet for 3 s (network namespace): calls end in time, "
          "service returns",
          "[faults]") {
  SSHPOOL_TEST_NETNS(ns)
  test::sshd_options opts;
  opts.netns = ns.name();
  opts.listen_address = ns.ns_address();
  http_backend backend{http_backend::options{"backend", ns.host_address()}};
  test_sshd sshd{opts};
  auto ep = sshd.make_endpoint(backend.port());
  ep.target_host = ns.host_address(); // the backend as seen from inside the namespace
  survive_outage(
      ep,
      [&] {
        ns.cut();
        hold_for(network_outage);
        ns.restore();
      },
      "the network returned");
}

namespace {

/// One user whose single connection carries a faulty request beside three normal ones.
struct one_connection {
  test_sshd sshd;
  script_backend backend;
  engine eng;
  connection conn;

  explicit one_connection(engine_config cfg) : eng(adjust(std::move(cfg))) {
    REQUIRE(eng.set_endpoint("alice", sshd.make_endpoint(backend.port())));
    auto c = eng.pool().get_connection("alice");
    REQUIRE(c);
    conn = *c;
    auto warm = conn.forward(get("warm", "/ok/0"));
    REQUIRE(warm);
    REQUIRE(warm->body == "ok");
  }

  ~one_connection() { eng.pool().release_connection("alice", conn); }

  static engine_config adjust(engine_config cfg) {
    cfg.pool.max_connections_per_user = 1;
    return cfg;
  }

  /// Three requests answered after 400 ms, on channels of this connection.
  std::vector<std::future<expected<response>>> start_neighbours() {
    std::vector<std::future<expected<response>>> result;
    for (int i = 0; i < 3; ++i)
      result.push_back(std::async(std::launch::async, [this, i] {
        return conn.forward(get("neighbour" + std::to_string(i), "/ok/400"));
      }));
    REQUIRE(backend.wait_for_requests(4, 10s)); // warm + 3 neighbours arrived
    return result;
  }

  void check_neighbours_and_connection(std::vector<std::future<expected<response>>>& ns) {
    for (auto& f : ns) {
      REQUIRE(f.wait_for(10s) == std::future_status::ready);
      auto res = f.get();
      REQUIRE(res);
      CHECK(res->status == 200);
      CHECK(res->body == "ok");
    }
    CHECK(conn.is_healthy());
    auto after = conn.forward(get("after", "/ok/0"));
    REQUIRE(after);
    CHECK(after->body == "ok");
    // Still the one connection: the fault cost a channel, not the SSH connection.
    CHECK(eng.pool().get_pool_stats().total_connections == 1);
  }
};

} // namespace

TEST_CASE("backend faults on one channel give typed errors; other channels of the same "
          "connection are unaffected",
          "[faults]") {
  struct fault {
    const char* path;
    errc code;
  };
  // Each fault below runs on a fresh world; the deadline is 1 s so that silence and a
  // trickle end in time, and the response caps are small so that they are reached.
  auto [path, code] = GENERATE(values<fault>({
      {"/silence", errc::request_timeout},
      {"/cut", errc::upstream_closed},
      {"/bad-status", errc::bad_response},
      {"/bad-chunk", errc::bad_response},
      {"/big/1048576", errc::response_too_large},
      {"/huge-head/100000", errc::response_too_large},
      {"/trickle/50", errc::request_timeout},
      {"/stall", errc::request_timeout},
      {"/bare-cr", errc::bad_response},
      {"/endless", errc::response_too_large},
  }));
  CAPTURE(path);
  auto cfg = fault_config();
  cfg.pool.max_response_bytes = 64 * 1024;
  cfg.pool.max_header_bytes = 16 * 1024;
  one_connection w{cfg};
  auto neighbours = w.start_neighbours();
  auto started = steady::now();
  auto res = w.conn.forward(get("fault", path), 1s);
  auto took = steady::now() - started;
  REQUIRE_FALSE(res);
  CHECK(res.error().code() == code);
  CHECK(took < 1s + slack);
  w.check_neighbours_and_connection(neighbours);
}

TEST_CASE("a refused channel (nothing listens any more) fails alone with channel_open_failed",
          "[faults]") {
  one_connection w{fault_config()};
  // Three requests in flight hold every open channel, so the next request needs a new one.
  auto neighbours = w.start_neighbours();
  w.backend.stop_listening();
  auto res = w.conn.forward(get("refused", "/ok/0"));
  REQUIRE_FALSE(res);
  CHECK(res.error().code() == errc::channel_open_failed);
  w.check_neighbours_and_connection(neighbours);
}

namespace {

/// How a stream went, as its consumer saw it.
struct streamed {
  expected<response> result = error{};
  bool head = false;
  std::size_t bytes = 0;
  steady::duration took{};
  /// When the last body byte arrived (the start if none did).
  steady::time_point last_byte;
};

/// Streams `path` through `conn` with an idle deadline of `idle`; the consumer gives up
/// after `give_up` body bytes (so that a stream nothing stops ends all the same).
streamed run_stream(const connection& conn, const std::string& path, milliseconds idle,
                    std::size_t give_up = std::size_t{64} << 20) {
  streamed s;
  stream_handlers handlers;
  handlers.on_head = [&](const response&) { s.head = true; };
  handlers.on_chunk = [&](std::string_view chunk) {
    s.bytes += chunk.size();
    s.last_byte = steady::now();
    return s.bytes < give_up;
  };
  auto started = steady::now();
  s.last_byte = started;
  s.result = conn.forward_stream(get("stream", path), handlers, idle);
  s.took = steady::now() - started;
  return s;
}

} // namespace

TEST_CASE("an endless streamed body ends with response_too_large at max_response_bytes; the "
          "channel closes, the connection stays",
          "[faults][stream]") {
  // Issue #12: the cap did not apply to streams, and an endless chunked body was relayed
  // without end. The consumer below gives up at 16 MiB, far past the 1 MiB cap.
  constexpr std::size_t cap = std::size_t{1} << 20;
  auto cfg = fault_config();
  cfg.pool.max_response_bytes = cap;
  one_connection w{cfg};
  auto neighbours = w.start_neighbours();
  auto s = run_stream(w.conn, "/endless", 2s, 16 * cap);
  INFO((s.result ? std::string{"ok"} : s.result.error().to_string())
       << " after " << s.bytes << " bytes");
  REQUIRE_FALSE(s.result);
  CHECK(s.result.error().code() == errc::response_too_large);
  CHECK(s.head);
  CHECK(s.bytes <= cap);
  CHECK(s.bytes >= cap / 2);
  CHECK(w.eng.metrics().requests["response_too_large"] == 1);
  w.check_neighbours_and_connection(neighbours);
}

TEST_CASE("an endpoint's own max_response_bytes replaces the engine's, streams included",
          "[faults][stream]") {
  constexpr std::size_t cap = std::size_t{1} << 20;
  test_sshd sshd;
  script_backend backend;
  auto cfg = fault_config();
  cfg.pool.max_response_bytes = cap;
  engine eng{cfg};
  auto ep = sshd.make_endpoint(backend.port());
  REQUIRE(eng.set_endpoint("alice", ep));
  ep.max_response_bytes = 4 * cap;
  REQUIRE(eng.set_endpoint("llm", ep));
  for (auto [user, limit] : {std::pair{"alice", cap}, std::pair{"llm", 4 * cap}}) {
    CAPTURE(user);
    auto conn = eng.pool().get_connection(user);
    REQUIRE(conn);
    auto s = run_stream(*conn, "/endless", 2s, 16 * cap);
    REQUIRE_FALSE(s.result);
    CHECK(s.result.error().code() == errc::response_too_large);
    CHECK(s.bytes <= limit);
    CHECK(s.bytes > limit - cap / 2);
    auto whole = conn->forward(get("whole", "/big/" + std::to_string(limit + 1)));
    REQUIRE_FALSE(whole);
    CHECK(whole.error().code() == errc::response_too_large);
    auto fits = conn->forward(get("fits", "/big/" + std::to_string(limit)));
    REQUIRE(fits);
    CHECK(fits->body.size() == limit);
    CHECK(eng.pool().release_connection(user, *conn));
  }
}

TEST_CASE("a streamed Content-Length body that stalls ends at the idle deadline, not at "
          "request_timeout",
          "[faults][stream]") {
  // request_timeout is 3 s: the 1 s idle deadline of the stream must cut it first.
  one_connection w{fault_config()};
  auto neighbours = w.start_neighbours();
  auto s = run_stream(w.conn, "/stall", 1s);
  INFO((s.result ? std::string{"ok"} : s.result.error().to_string())
       << " after " << s.bytes << " bytes, " << ms(s.took) << " ms");
  REQUIRE_FALSE(s.result);
  CHECK(s.result.error().code() == errc::request_timeout);
  CHECK(s.head);
  CHECK(s.bytes == 10);
  auto idle = steady::now() - s.last_byte;
  CHECK(s.took < 1s + slack);
  CHECK(idle >= 1s - 100ms);
  w.check_neighbours_and_connection(neighbours);
}

namespace {

/// A forward through `sshd` to `target_port` on a fresh engine.
expected<response> forward_via(test_sshd& sshd, std::uint16_t target_port) {
  engine eng{fault_config()};
  REQUIRE(eng.set_endpoint("alice", sshd.make_endpoint(target_port)));
  auto conn = eng.pool().get_connection("alice");
  REQUIRE(conn);
  auto res = conn->forward(get("policy", "/ok/0"));
  CHECK(conn->is_healthy()); // a refused channel is not a broken connection
  CHECK(eng.pool().release_connection("alice", *conn));
  return res;
}

} // namespace

TEST_CASE("a channel refused by sshd's policy is forwarding_prohibited; nothing listening is "
          "channel_open_failed; both carry the SSH reason",
          "[faults]") {
  script_backend backend;
  SECTION("AllowTcpForwarding no") {
    test::sshd_options opts;
    opts.allow_tcp_forwarding = false;
    test_sshd sshd{opts};
    auto res = forward_via(sshd, backend.port());
    REQUIRE_FALSE(res);
    INFO(res.error().to_string());
    CHECK(res.error().code() == errc::forwarding_prohibited);
    CHECK_THAT(res.error().message(),
               Catch::Contains("SSH reason 1 (administratively prohibited)"));
  }
  SECTION("PermitOpen naming another port") {
    test::sshd_options opts;
    opts.extra_config = {"PermitOpen 127.0.0.1:" + std::to_string(backend.port() == 1 ? 2 : 1)};
    test_sshd sshd{opts};
    auto res = forward_via(sshd, backend.port());
    REQUIRE_FALSE(res);
    INFO(res.error().to_string());
    CHECK(res.error().code() == errc::forwarding_prohibited);
    CHECK_THAT(res.error().message(), Catch::Contains("SSH reason 1"));
  }
  SECTION("nothing listens on the target port") {
    test_sshd sshd;
    backend.stop_listening();
    auto res = forward_via(sshd, backend.port());
    REQUIRE_FALSE(res);
    INFO(res.error().to_string());
    CHECK(res.error().code() == errc::channel_open_failed);
    CHECK_THAT(res.error().message(), Catch::Contains("SSH reason 2 (connect failed)"));
  }
}
