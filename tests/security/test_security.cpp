// Hostile input and isolation against a real sshd and real backends ([security]): request
// smuggling attempts that must leave nothing on the wire, odd and hostile user ids, host
// key policies, a property test that no response ever reaches another user, and resource
// caps under abuse.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "backend/http_backend.hpp"
#include "sshpool/sshpool.hpp"
#include "support/os.hpp"
#include "support/process_info.hpp"
#include "support/quiet_config.hpp"
#include "support/requests.hpp"
#include "support/test_sshd.hpp"
#include "support/timing.hpp"
#include "support/world.hpp"

using namespace sshpool;
using namespace sshpool::test;
using namespace std::chrono_literals;
using sshpool::demo::http_backend;
using steady = std::chrono::steady_clock;

namespace {

std::size_t count_lines(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

} // namespace

TEST_CASE("request smuggling attempts are rejected with invalid_request and nothing reaches "
          "the backend",
          "[security]") {
  basic_world<test_sshd> w{quiet_config()};
  auto conn = w.lease("alice");
  REQUIRE(conn->forward(build_request("GET", "/echo"))); // the channel exists and is reusable
  REQUIRE(w.backend.wait_for_requests(1, 5s));
  const std::string nul{"\0", 1};
  const std::vector<std::pair<const char*, request>> attacks{
      {"CR in method", build_request("GET\r", "/echo")},
      {"LF in method", build_request("GET\nX", "/echo")},
      {"space in method", build_request("GET /evil HTTP/1.1\r\n\r\nGET", "/echo")},
      {"NUL in method", build_request("GE" + nul + "T", "/echo")},
      {"CRLF in path", build_request("GET", "/echo HTTP/1.1\r\nHost: x\r\n\r\nGET /admin")},
      {"LF in path", build_request("GET", "/echo\nX")},
      {"NUL in path", build_request("GET", "/echo" + nul)},
      {"space in path", build_request("GET", "/echo /admin")},
      {"CRLF in header value", build_request("GET", "/echo", {{"X-A", "v\r\nX-Injected: 1"}})},
      {"bare LF in header value", build_request("GET", "/echo", {{"X-A", "v\nX-Injected: 1"}})},
      {"bare CR in header value", build_request("GET", "/echo", {{"X-A", "v\rX"}})},
      {"NUL in header value", build_request("GET", "/echo", {{"X-A", "v" + nul}})},
      {"CRLF in header name", build_request("GET", "/echo", {{"X-A\r\nX-B", "v"}})},
      {"space in header name", build_request("GET", "/echo", {{"X A", "v"}})},
      {"colon in header name", build_request("GET", "/echo", {{"X:A", "v"}})},
      {"empty header name", build_request("GET", "/echo", {{"", "v"}})},
      {"NUL in header name", build_request("GET", "/echo", {{"X" + nul, "v"}})},
      {"duplicate Content-Length",
       build_request("POST", "/echo", {{"Content-Length", "4"}, {"Content-Length", "4"}}, "body")},
      {"Content-Length not the body size",
       build_request("POST", "/echo", {{"Content-Length", "2"}}, "body")},
      {"caller's Transfer-Encoding",
       build_request("POST", "/echo", {{"Transfer-Encoding", "chunked"}},
                     "4\r\nbody\r\n0\r\n\r\n")},
      {"caller's transfer-encoding (lower case)",
       build_request("POST", "/echo", {{"transfer-encoding", "chunked"}}, "0\r\n\r\n")},
      {"duplicate Host", build_request("GET", "/echo", {{"Host", "a"}, {"Host", "b"}})},
      {"Upgrade", build_request("GET", "/echo", {{"Upgrade", "h2c"}})},
      {"CONNECT", build_request("CONNECT", "/echo")},
      {"absolute-form path", build_request("GET", "http://evil.example/")},
      {"empty method", build_request("", "/echo")},
      {"empty path", build_request("GET", "")},
  };
  for (const auto& [what, req] : attacks) {
    INFO(what);
    auto res = conn->forward(req);
    REQUIRE_FALSE(res);
    CHECK(res.error().code() == errc::invalid_request);
  }
  // Nothing was written: the next request on the same (reused) channel is parsed by the
  // backend as exactly one clean request, and the backend saw no other.
  auto ok = conn->forward(build_request("GET", "/echo", {{"X-A", "clean"}}));
  REQUIRE(ok);
  CHECK(ok->status == 200);
  REQUIRE(w.backend.wait_for_requests(2, 5s));
  CHECK(w.backend.requests_received() == 2);
  auto seen = w.backend.received();
  REQUIRE(seen.size() == 2);
  CHECK(seen.back().path == "/echo");
  for (const auto& [name, value] : seen.back().headers) {
    CHECK(name != "X-Injected");
    CHECK(value.find('\r') == std::string::npos);
  }
  CHECK(w.eng.pool().release_connection("alice", *conn));
}

TEST_CASE("user ids: empty, 1 MiB, control characters are refused; non-UTF-8, '/' and '..' "
          "are distinct users that never collide",
          "[security]") {
  test_sshd sshd;
  engine eng{quiet_config()};
  // One backend per user, each naming itself: a collision would show the wrong name.
  const std::vector<std::string> users{
      "a",      "A",        "a/b",         "../a",         "..",
      "a/../a", "\xff\xfe", "caf\xc3\xa9", "cafe\xcc\x81", std::string(1024, 'x')};
  std::vector<std::unique_ptr<http_backend>> backends;
  for (std::size_t i = 0; i < users.size(); ++i) {
    backends.push_back(
        std::make_unique<http_backend>(http_backend::options{"token-" + std::to_string(i)}));
    REQUIRE(eng.set_endpoint(users[i], sshd.make_endpoint(backends.back()->port())));
  }
  for (std::size_t i = 0; i < users.size(); ++i) {
    INFO("user #" << i);
    auto conn = eng.pool().get_connection(users[i]);
    REQUIRE(conn);
    auto res = conn->forward(build_request("GET", "/echo"));
    REQUIRE(res);
    REQUIRE(res->header("X-Backend"));
    CHECK(*res->header("X-Backend") == "token-" + std::to_string(i));
    CHECK(eng.pool().release_connection(users[i], *conn));
  }
  CHECK(eng.pool().get_pool_stats().user_count == users.size());

  const std::string nul{"\0", 1};
  const std::vector<std::pair<const char*, std::string>> bad{
      {"empty", ""},
      {"1 MiB", std::string(std::size_t{1} << 20, 'u')},
      {"1025 bytes", std::string(1025, 'u')},
      {"LF (log injection)", "alice\n2026-11-27 [info] forged line"},
      {"CR", "alice\r"},
      {"NUL", "alice" + nul + "bob"},
      {"DEL", "alice\x7f"},
  };
  auto ep = sshd.make_endpoint(backends.front()->port());
  for (const auto& [what, user] : bad) {
    INFO(what);
    auto set = eng.set_endpoint(user, ep);
    REQUIRE_FALSE(set);
    CHECK(set.error().code() == errc::invalid_argument);
    auto conn = eng.pool().get_connection(user);
    REQUIRE_FALSE(conn);
    CHECK(conn.error().code() == errc::invalid_argument);
  }
  // "alice" followed by NUL was not taken for "alice".
  CHECK_FALSE(eng.pool().get_connection("alice"));
  CHECK(eng.pool().get_pool_stats().user_count == users.size());
}

TEST_CASE("host keys: strict refuses an unknown host untouched; accept_new records it once, "
          "then checks it; a changed key is refused either way",
          "[security]") {
  test_sshd sshd;
  http_backend backend{http_backend::options{"backend"}};
  auto ep = sshd.make_endpoint(backend.port());
  const auto known_hosts = sshd.dir() + "/tofu_known_hosts";
  std::ofstream{known_hosts}.flush(); // exists, empty
  ep.known_hosts_file = known_hosts;

  SECTION("strict: unknown is refused and the file stays empty") {
    engine eng{quiet_config()};
    REQUIRE(eng.set_endpoint("alice", ep));
    auto conn = eng.pool().get_connection("alice");
    REQUIRE_FALSE(conn);
    CHECK(conn.error().code() == errc::host_key_unknown);
    CHECK(read_file(known_hosts).empty());
  }
  SECTION("accept_new: three racing handshakes record the key once; strict then accepts it") {
    {
      auto cfg = quiet_config();
      cfg.connector_threads = 3;
      engine eng{cfg};
      ep.host_keys = host_key_policy::accept_new;
      std::vector<std::future<bool>> racing;
      for (const char* user : {"u1", "u2", "u3"}) {
        REQUIRE(eng.set_endpoint(user, ep));
        racing.push_back(std::async(std::launch::async, [&eng, user] {
          auto conn = eng.pool().get_connection(user);
          return conn && conn->forward(build_request("GET", "/echo")) &&
                 eng.pool().release_connection(user, *conn);
        }));
      }
      for (auto& r : racing)
        CHECK(r.get());
    }
    const auto recorded = read_file(known_hosts);
    CHECK(count_lines(recorded) == 1);
    CHECK(recorded.find("[127.0.0.1]:" + std::to_string(sshd.port())) != std::string::npos);
    engine strict{quiet_config()};
    ep.host_keys = host_key_policy::strict;
    REQUIRE(strict.set_endpoint("alice", ep));
    auto conn = strict.pool().get_connection("alice");
    REQUIRE(conn);
    CHECK(strict.pool().release_connection("alice", *conn));
  }
  SECTION("accept_new: a changed key is still refused, and the file is not touched") {
    ep.known_hosts_file = sshd.wrong_known_hosts_file();
    ep.host_keys = host_key_policy::accept_new;
    const auto before = read_file(ep.known_hosts_file);
    engine eng{quiet_config()};
    REQUIRE(eng.set_endpoint("alice", ep));
    auto conn = eng.pool().get_connection("alice");
    REQUIRE_FALSE(conn);
    CHECK(conn.error().code() == errc::host_key_mismatch);
    CHECK(read_file(ep.known_hosts_file) == before);
  }
}

TEST_CASE("isolation property: under concurrent random get/forward/release/close across "
          "users, no response ever reaches the wrong user",
          "[security]") {
  test_sshd sshd;
  constexpr std::size_t n_users = 12;
  constexpr int n_threads = 6;
  constexpr int ops_per_thread = 300;
  auto cfg = quiet_config();
  cfg.pool.max_connections_per_user = 2;
  cfg.pool.max_channels_per_connection = 3;
  // Threads hold leases while asking for more: a full user answers pool_exhausted soon.
  cfg.pool.acquire_timeout = 300ms;
  engine eng{cfg};
  std::vector<std::unique_ptr<http_backend>> backends;
  std::vector<std::string> users;
  for (std::size_t i = 0; i < n_users; ++i) {
    users.push_back("user-" + std::to_string(i));
    backends.push_back(std::make_unique<http_backend>(http_backend::options{"token-" + users[i]}));
    REQUIRE(eng.set_endpoint(users[i], sshd.make_endpoint(backends[i]->port())));
  }
  std::atomic<int> forwards{0}, misrouted{0}, wrong_body{0}, unexpected_errors{0}, closes{0};
  std::mutex unexpected_mutex;
  std::vector<std::string> unexpected;
  auto note = [&](const char* what, const error& e) {
    ++unexpected_errors;
    std::lock_guard<std::mutex> guard(unexpected_mutex);
    unexpected.push_back(std::string{what} + ": " + to_string(e.code()) + " " + e.message());
  };
  auto worker = [&](unsigned seed) {
    std::mt19937 rng{seed};
    std::vector<std::pair<std::string, connection>> held;
    auto pick = [&](std::size_t n) {
      return std::uniform_int_distribution<std::size_t>{0, n - 1}(rng);
    };
    for (int op = 0; op < ops_per_thread; ++op) {
      // At most 3 leases held per thread: past that, release one.
      const auto roll = held.size() >= 3 ? 90 : pick(100);
      if (roll < 40 || held.empty()) { // lease a connection of a random user
        const auto& user = users[pick(n_users)];
        auto conn = eng.pool().get_connection(user);
        // A full user answers pool_exhausted; on a loaded machine a handshake may also wait
        // for a connector thread past the caller's 300 ms (timeout, then replayed to callers
        // during the user's reconnect backoff).
        if (conn)
          held.emplace_back(user, *conn);
        else if (conn.error().code() != errc::pool_exhausted &&
                 conn.error().code() != errc::timeout)
          note("lease", conn.error());
      } else if (roll < 85) { // forward on a held lease, checked against its user's token
        auto& [user, conn] = held[pick(held.size())];
        const auto body = user + "/" + std::to_string(seed) + "/" + std::to_string(op);
        auto res = conn.forward(build_request("POST", "/echo", {}, body));
        if (!res) {
          // A close by another thread may cut it; nothing else is expected.
          if (res.error().code() != errc::connection_lost)
            note("forward", res.error());
          continue;
        }
        ++forwards;
        auto backend = res->header("X-Backend");
        if (backend == nullptr || *backend != "token-" + user)
          ++misrouted;
        if (res->body != body)
          ++wrong_body;
      } else if (roll < 97) { // release a random held lease
        auto i = pick(held.size());
        if (auto r = eng.pool().release_connection(held[i].first, held[i].second); !r)
          note("release", r.error());
        held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
      } else { // close every connection of a random user, leases included
        if (auto r = eng.pool().close_connection(users[pick(n_users)]); !r)
          note("close", r.error());
        ++closes;
      }
    }
    for (auto& [user, conn] : held) {
      if (auto r = eng.pool().release_connection(user, conn); !r)
        note("final release", r.error());
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < n_threads; ++t)
    threads.emplace_back(worker, 1000u + static_cast<unsigned>(t));
  for (auto& t : threads)
    t.join();
  WARN(forwards << " forwards checked across " << n_users << " users, " << closes
                << " closes while leased");
  CHECK(forwards > n_threads * ops_per_thread / 4);
  CHECK(misrouted == 0);
  CHECK(wrong_body == 0);
  for (const auto& u : unexpected)
    UNSCOPED_INFO(u);
  CHECK(unexpected_errors == 0);
  CHECK(eng.pool().get_pool_stats().leases == 0);
}

namespace {

/// Established TCP connections from this machine to `port` (both ends are local, so each
/// appears once with `port` as its remote port).
std::size_t connections_to(std::uint16_t port) {
  auto sockets = tcp_sockets();
  return static_cast<std::size_t>(
      std::count_if(sockets.begin(), sockets.end(), [port](const tcp_socket& s) {
        return s.established && s.remote_port == port;
      }));
}

} // namespace

TEST_CASE("resource caps hold under abuse: global connections, waiters, concurrent handshakes",
          "[security]") {
  test_sshd sshd;
  http_backend backend{http_backend::options{"backend"}};

  SECTION("max_connections_total: 8 users at once never open more than 4 connections") {
    auto cfg = quiet_config();
    cfg.pool.max_connections_total = 4;
    cfg.pool.acquire_timeout = 500ms;
    engine eng{cfg};
    std::vector<std::future<expected<connection>>> leases;
    for (int i = 0; i < 8; ++i) {
      auto user = "user" + std::to_string(i);
      REQUIRE(eng.set_endpoint(user, sshd.make_endpoint(backend.port())));
      leases.push_back(
          std::async(std::launch::async, [&eng, user] { return eng.pool().get_connection(user); }));
    }
    std::size_t granted = 0, refused = 0;
    for (auto& f : leases) {
      auto conn = f.get();
      if (conn) {
        ++granted;
      } else {
        CHECK(conn.error().code() == errc::pool_exhausted);
        ++refused;
      }
    }
    CHECK(granted == 4);
    CHECK(refused == 4);
    CHECK(eng.pool().get_pool_stats().total_connections <= 4);
  }
  SECTION("max_waiters_per_user: past the cap, callers are refused at once, not queued") {
    auto cfg = quiet_config();
    cfg.pool.max_connections_per_user = 1;
    cfg.pool.max_channels_per_connection = 1;
    cfg.pool.max_waiters_per_user = 5;
    cfg.pool.acquire_timeout = 5s;
    engine eng{cfg};
    REQUIRE(eng.set_endpoint("alice", sshd.make_endpoint(backend.port())));
    auto held = eng.pool().get_connection("alice");
    REQUIRE(held);
    std::vector<std::future<std::pair<expected<connection>, steady::duration>>> callers;
    for (int i = 0; i < 20; ++i)
      callers.push_back(std::async(std::launch::async, [&eng] {
        auto start = steady::now();
        auto conn = eng.pool().get_connection("alice");
        auto took = steady::now() - start;
        if (conn) // a waiter passes the lease on at once
          CHECK(eng.pool().release_connection("alice", *conn));
        return std::make_pair(std::move(conn), took);
      }));
    // The 15 refused callers come back at once; then the lease goes around the 5 waiters.
    std::size_t fast_refusals = 0;
    const auto refusals_due = steady::now() + 2s; // waiters stay queued for 5 s
    for (auto& c : callers) {
      if (c.wait_until(refusals_due) != std::future_status::ready)
        continue;
      auto [conn, took] = c.get();
      INFO("took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms"
                   << (conn ? "" : ", " + conn.error().message()));
      REQUIRE_FALSE(conn);
      CHECK(conn.error().code() == errc::pool_exhausted);
      CHECK(took < 2s);
      ++fast_refusals;
    }
    CHECK(fast_refusals == 15);
    CHECK(eng.pool().get_pool_stats().waiters == 5);
    REQUIRE(eng.pool().release_connection("alice", *held));
    std::size_t served = 0;
    for (auto& c : callers) {
      if (!c.valid())
        continue;
      auto served_conn = c.get().first;
      REQUIRE(served_conn);
      ++served;
    }
    CHECK(served == 5);
  }
  SECTION("connector_threads bounds concurrent handshakes, even against a frozen sshd") {
    auto cfg = quiet_config();
    cfg.connector_threads = 2;
    cfg.pool.connect_timeout = 10s;
    engine eng{cfg};
    std::vector<std::string> users;
    for (int i = 0; i < 10; ++i) {
      users.push_back("user" + std::to_string(i));
      REQUIRE(eng.set_endpoint(users.back(), sshd.make_endpoint(backend.port())));
    }
    // Frozen, sshd accepts nothing itself, but the kernel completes TCP handshakes into
    // its backlog: each connection the engine opens shows as established at once.
    sshd.signal_all(SIGSTOP);
    std::vector<std::future<bool>> leases;
    for (const auto& user : users)
      leases.push_back(std::async(std::launch::async, [&eng, user] {
        auto conn = eng.pool().get_connection(user);
        return conn && eng.pool().release_connection(user, *conn);
      }));
    // Both connector threads are in a handshake once two connections show; a third would
    // show within the freeze that follows, which lasts as long as the scenario asks.
    std::size_t most = 0;
    auto sample = [&] {
      most = std::max(most, connections_to(sshd.port()));
      return most >= 2;
    };
    CHECK(eventually(sample));
    constexpr auto frozen = 1500ms; // the freeze watched for a third concurrent handshake
    hold_for(frozen, sample);
    sshd.signal_all(SIGCONT);
    for (auto& l : leases)
      CHECK(l.get());
    WARN("at most " << most << " TCP connections to the frozen sshd with 2 connector threads");
    CHECK(most >= 1);
    CHECK(most <= 2);
  }
}
