// connection::forward_async end to end: a real OpenSSH sshd started by the test and a real
// HTTP backend that echoes each request's body and X-Request-Id, so every response is matched
// to its request. Part of the test_forward binary.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "sshpool/sshpool.hpp"
#include "support/requests.hpp"
#include "support/test_sshd.hpp"
#include "support/world.hpp"

using namespace sshpool;
using namespace sshpool::test;
using namespace std::chrono_literals;

namespace {

engine_config async_config() {
  engine_config cfg;
  cfg.pool.acquire_timeout = 10s;
  cfg.pool.request_timeout = 20s;
  cfg.log_level = "warn";
  return cfg;
}

using async_world = basic_world<test_sshd>;

/// POST /echo of a body and an X-Request-Id that name request `i`.
request echo_request(int i) {
  auto id = "async-" + std::to_string(i);
  auto req =
      make_request(id, "POST", "/echo", id + ":" + pattern(static_cast<std::size_t>(i % 97)));
  req.headers = {{"X-Request-Id", id}};
  return req;
}

/// Empty if `res` is the backend's echo of `req`, else what differs.
std::string mismatch(const request& req, const expected<response>& res) {
  if (!res)
    return req.id + ": " + res.error().to_string();
  const auto* echoed_id = res->header("x-request-id");
  if (res->status != 200 || res->id != req.id || res->body != req.body || echoed_id == nullptr ||
      *echoed_id != req.id)
    return req.id + ": status " + std::to_string(res->status) + ", id '" + res->id + "', body '" +
           res->body.substr(0, 40) + "'";
  return {};
}

/// The results of callback-form forwards, gathered from the threads that deliver them.
struct collector {
  std::mutex mx;
  std::condition_variable cv;
  std::vector<std::pair<int, expected<response>>> results;
  std::vector<std::thread::id> threads;

  response_callback slot(int i) {
    return [this, i](expected<response> res) {
      std::lock_guard<std::mutex> guard{mx};
      results.emplace_back(i, std::move(res));
      threads.push_back(std::this_thread::get_id());
      cv.notify_all();
    };
  }

  bool wait_for(std::size_t n, std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> guard{mx};
    return cv.wait_for(guard, limit, [&] { return results.size() >= n; });
  }
};

} // namespace

TEST_CASE("1000 forward_async requests from one thread all come back, each to its request",
          "[forward][async]") {
  async_world w{async_config()};
  auto conn = w.lease("alice");
  constexpr int n = 1000;
  std::vector<request> reqs;
  std::vector<std::future<expected<response>>> futures;
  for (int i = 0; i < n; ++i) {
    reqs.push_back(echo_request(i));
    futures.push_back(conn->forward_async(reqs.back()));
  }
  int matched = 0;
  for (int i = 0; i < n; ++i) {
    REQUIRE(futures[i].wait_for(30s) == std::future_status::ready);
    auto wrong = mismatch(reqs[i], futures[i].get());
    INFO(wrong);
    CHECK(wrong.empty());
    matched += wrong.empty() ? 1 : 0;
  }
  CHECK(matched == n);
  CHECK(w.backend.requests_received() == n);
  auto stats = conn->get_stats();
  CHECK(stats.requests == n);
  CHECK(stats.active_requests == 0);
  CHECK(w.eng.pool().release_connection("alice", *conn));
}

TEST_CASE("requests that reach the reactor together do not hold back the ones after them",
          "[forward][async]") {
  // The reactor corks a session's socket while it writes a batch of requests and uncorks it
  // at the end of the pass. A socket left corked would hold each later request until the
  // kernel's cork timer (200 ms) sends it.
  async_world w{async_config()};
  auto conn = w.lease("alice");
  auto corked_before = w.eng.metrics().batched_writes;
  // Bursts of 64 until the reactor took several requests for the connection in one pass
  // (it usually does in the first).
  for (int burst = 0; burst < 20 && w.eng.metrics().batched_writes == corked_before; ++burst) {
    std::vector<request> reqs;
    std::vector<std::future<expected<response>>> futures;
    for (int i = 0; i < 64; ++i) {
      reqs.push_back(echo_request(i));
      futures.push_back(conn->forward_async(reqs.back()));
    }
    for (std::size_t i = 0; i < futures.size(); ++i) {
      REQUIRE(futures[i].wait_for(30s) == std::future_status::ready);
      CHECK(mismatch(reqs[i], futures[i].get()).empty());
    }
  }
  REQUIRE(w.eng.metrics().batched_writes > corked_before);
  std::vector<std::chrono::steady_clock::duration> took;
  for (int i = 0; i < 9; ++i) {
    auto req = echo_request(1000 + i);
    auto start = std::chrono::steady_clock::now();
    auto res = conn->forward(req);
    took.push_back(std::chrono::steady_clock::now() - start);
    CHECK(mismatch(req, res).empty());
  }
  std::sort(took.begin(), took.end());
  CHECK(took[took.size() / 2] < 150ms);
  CHECK(w.eng.pool().release_connection("alice", *conn));
}

TEST_CASE("forward_async callbacks run once each, off the calling thread", "[forward][async]") {
  async_world w{async_config()};
  auto conn = w.lease("alice");
  constexpr int n = 200;
  collector got;
  std::vector<request> reqs;
  for (int i = 0; i < n; ++i) {
    reqs.push_back(echo_request(i));
    conn->forward_async(reqs.back(), got.slot(i));
  }
  REQUIRE(got.wait_for(n, 30s));
  std::vector<int> seen(n, 0);
  for (auto& [i, res] : got.results) {
    ++seen[i];
    auto wrong = mismatch(reqs[i], res);
    INFO(wrong);
    CHECK(wrong.empty());
  }
  CHECK(std::count(seen.begin(), seen.end(), 1) == n);
  CHECK(std::count(got.threads.begin(), got.threads.end(), std::this_thread::get_id()) == 0);
  // A callback that throws is contained: the connection goes on.
  std::promise<void> thrown;
  conn->forward_async(echo_request(n), [&](expected<response>) {
    thrown.set_value();
    throw std::runtime_error{"thrown by the test"};
  });
  REQUIRE(thrown.get_future().wait_for(30s) == std::future_status::ready);
  CHECK(mismatch(echo_request(n + 1), conn->forward(echo_request(n + 1))).empty());
}

TEST_CASE("forward_async fails like forward: deadline, lost connection, released lease, "
          "stopped engine",
          "[forward][async]") {
  async_world w{async_config()};
  auto conn = w.lease("alice");

  SECTION("a request over its deadline fails alone with request_timeout") {
    auto hang = conn->forward_async(make_request("hang", "GET", "/hang"), 300ms);
    auto quick = conn->forward_async(echo_request(1));
    CHECK(mismatch(echo_request(1), quick.get()).empty());
    REQUIRE(hang.wait_for(10s) == std::future_status::ready);
    auto res = hang.get();
    REQUIRE_FALSE(res);
    CHECK(res.error().code() == errc::request_timeout);
    CHECK(conn->is_healthy());
  }

  SECTION("requests in flight on a closed connection fail with connection_lost") {
    std::vector<std::future<expected<response>>> hung;
    collector got;
    for (int i = 0; i < 5; ++i) {
      hung.push_back(conn->forward_async(make_request("h" + std::to_string(i), "GET", "/hang")));
      conn->forward_async(make_request("c" + std::to_string(i), "GET", "/hang"), got.slot(i));
    }
    // The hanging requests are on the wire once the backend has seen them all.
    REQUIRE(w.backend.wait_for_requests(10, 10s));
    auto closed = w.eng.pool().close_connection("alice");
    REQUIRE(closed);
    CHECK(*closed == 1);
    for (auto& f : hung) {
      REQUIRE(f.wait_for(10s) == std::future_status::ready);
      auto res = f.get();
      REQUIRE_FALSE(res);
      CHECK(res.error().code() == errc::connection_lost);
    }
    REQUIRE(got.wait_for(5, 10s));
    for (auto& [i, res] : got.results) {
      REQUIRE_FALSE(res);
      CHECK(res.error().code() == errc::connection_lost);
    }
    // A request on the closed connection fails the same way.
    auto after = conn->forward_async(echo_request(2)).get();
    REQUIRE_FALSE(after);
    CHECK(after.error().code() == errc::connection_lost);
  }

  SECTION("requests sent before the release complete; those after it get not_leased") {
    auto before = conn->forward_async(echo_request(3));
    REQUIRE(w.eng.pool().release_connection("alice", *conn));
    CHECK(mismatch(echo_request(3), before.get()).empty());
    auto after = conn->forward_async(echo_request(4)).get();
    REQUIRE_FALSE(after);
    CHECK(after.error().code() == errc::not_leased);
    collector got;
    conn->forward_async(echo_request(5), got.slot(5));
    REQUIRE(got.wait_for(1, 1s)); // refused on the calling thread, before the call returned
    CHECK(got.threads.front() == std::this_thread::get_id());
    REQUIRE_FALSE(got.results.front().second);
    CHECK(got.results.front().second.error().code() == errc::not_leased);
    auto blocking = conn->forward(echo_request(6));
    REQUIRE_FALSE(blocking);
    CHECK(blocking.error().code() == errc::not_leased);
  }

  SECTION("a drained engine ends the requests in flight, and refuses new ones") {
    auto hang = conn->forward_async(make_request("hang", "GET", "/hang"));
    REQUIRE(w.backend.wait_for_requests(1, 10s));
    w.eng.shutdown(200ms);
    REQUIRE(hang.wait_for(10s) == std::future_status::ready);
    auto cut = hang.get();
    REQUIRE_FALSE(cut);
    CHECK(cut.error().code() == errc::connection_lost); // cut at the end of the grace
    // Its connections are closed: like forward, a new request finds its connection gone.
    auto refused = conn->forward_async(echo_request(7)).get();
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code() == errc::connection_lost);
  }
}
