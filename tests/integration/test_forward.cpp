// The engine end to end: a real OpenSSH sshd started by the test, real HTTP backends on
// loopback, requests forwarded through direct-tcpip channels by the actor hierarchy.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "backend/http_backend.hpp"
#include "sshpool/sshpool.hpp"
#include "support/os.hpp"
#include "support/process_info.hpp"
#include "support/requests.hpp"
#include "support/test_sshd.hpp"
#include "support/timing.hpp"
#include "support/world.hpp"

using namespace sshpool;
using namespace sshpool::test;
using namespace std::chrono_literals;
using sshpool::demo::http_backend;

namespace {

/// An sshd, one backend, and an engine whose user "alice" reaches that backend.
struct world : basic_world<test_sshd> {
  explicit world(engine_config cfg = small_config(), sshd_options sshd_opts = {})
      : basic_world(std::move(cfg), std::move(sshd_opts)) {}

  static engine_config small_config() { return quiet_config(10s, 20s); }
};

/// Sets `ep` as `user`'s endpoint, which must be accepted, and returns the error a lease of
/// `user` must fail with.
errc lease_error(world& w, const std::string& user, const endpoint& ep) {
  REQUIRE(w.eng.set_endpoint(user, ep));
  auto conn = w.eng.pool().get_connection(user);
  REQUIRE_FALSE(conn);
  return conn.error().code();
}

} // namespace

TEST_CASE("GET and POST reach the backend and come back whole", "[forward]") {
  world w;
  auto conn = w.lease("alice");
  CHECK(conn->is_healthy());

  auto get = conn->forward(make_request("g1", "GET", "/info?x=1"));
  REQUIRE(get);
  CHECK(get->id == "g1");
  CHECK(get->status == 200);
  CHECK(get->body.find("\"method\":\"GET\"") != std::string::npos);
  CHECK(get->body.find("\"path\":\"/info?x=1\"") != std::string::npos);

  auto req = make_request("p1", "POST", "/echo", R"({"message":"Hello"})");
  req.headers = {{"content-type", "application/json"}, {"X-Request-Id", "p1"}};
  auto post = conn->forward(req);
  REQUIRE(post);
  CHECK(post->status == 200);
  CHECK(post->body == R"({"message":"Hello"})");
  REQUIRE(post->header("x-backend") != nullptr);
  CHECK(*post->header("x-backend") == "backend-a");
  CHECK(*post->header("X-Request-Id") == "p1");
  CHECK(*post->header("content-type") == "application/json");

  auto status = conn->forward(make_request("s1", "GET", "/status/503"));
  REQUIRE(status);
  CHECK(status->status == 503);

  auto stats = conn->get_stats();
  CHECK(stats.healthy);
  CHECK(stats.user == "alice");
  CHECK(stats.requests == 3);
  CHECK(stats.bytes_out > 0);
  CHECK(stats.bytes_in > 0);
  CHECK(stats.channel_count >= 1); // kept for reuse
  CHECK(w.eng.pool().release_connection("alice", *conn));

  auto m = w.eng.metrics();
  CHECK(m.requests["ok"] == 3);
  CHECK(m.handshakes_started == 1);
  CHECK(m.handshakes_failed == 0);
  CHECK(m.handshake_seconds.count == 1);
  CHECK(m.channel_open_seconds.count >= 1);
  CHECK(m.request_seconds.count == 3);
  CHECK(m.request_seconds.counts.back() <= m.request_seconds.count);
  CHECK(m.bytes_out == stats.bytes_out);
  CHECK(m.connections_opened == 1);
}

TEST_CASE("facade calls from several threads work under either scheduler policy", "[forward]") {
  auto policy = GENERATE(scheduler_policy::sharing, scheduler_policy::stealing);
  auto cfg = world::small_config();
  cfg.scheduler = policy;
  cfg.scheduler_threads = 2;
  world w{cfg};
  // Each thread leases, forwards and releases in a loop, so the facade's scoped actors are
  // handed from thread to thread between calls.
  constexpr int threads = 4;
  constexpr int rounds = 25;
  std::vector<std::future<int>> done;
  for (int t = 0; t < threads; ++t)
    done.push_back(std::async(std::launch::async, [&w, t] {
      int ok = 0;
      for (int i = 0; i < rounds; ++i) {
        auto conn = w.eng.pool().get_connection("alice");
        if (!conn)
          continue;
        auto id = std::to_string(t) + "-" + std::to_string(i);
        auto res = conn->forward(make_request(id, "POST", "/echo", id));
        if (res && res->status == 200 && res->body == id)
          ++ok;
        if (!w.eng.pool().release_connection("alice", *conn))
          --ok;
      }
      return ok;
    }));
  for (auto& f : done)
    CHECK(f.get() == rounds);
  CHECK(w.eng.pool().get_pool_stats().leases == 0);
}

TEST_CASE("with the TCP_NODELAY nudge on, connections work and the nudge channel goes",
          "[forward]") {
  world w;
  auto ep = w.sshd.make_endpoint(w.backend.port());
  ep.server_nodelay = true;
  REQUIRE(w.eng.set_endpoint("nudged", ep));
  auto conn = w.lease("nudged");
  for (int i = 0; i < 20; ++i) {
    auto res = conn->forward(make_request("n" + std::to_string(i), "GET", "/echo"));
    REQUIRE(res);
    CHECK(res->status == 200);
  }
  CHECK(w.eng.pool().release_connection("nudged", *conn));
}

TEST_CASE("1 MiB bodies travel both ways intact", "[forward]") {
  world w;
  auto conn = w.lease("alice");
  auto big = pattern(1 << 20, 7);
  auto up = conn->forward(make_request("up", "POST", "/echo", big));
  REQUIRE(up);
  CHECK(up->status == 200);
  CHECK(up->body.size() == big.size());
  CHECK(up->body == big);
  auto down = conn->forward(make_request("down", "GET", "/bytes/1048576"));
  REQUIRE(down);
  CHECK(down->body == pattern(1 << 20));
  CHECK(w.eng.pool().release_connection("alice", *conn));
}

TEST_CASE("chunked and close-delimited responses are decoded", "[forward]") {
  world w;
  auto conn = w.lease("alice");
  auto chunked = conn->forward(make_request("c", "GET", "/chunked/50/1000"));
  REQUIRE(chunked);
  CHECK(chunked->status == 200);
  CHECK(chunked->body == pattern(50 * 1000));
  CHECK(chunked->header("transfer-encoding") != nullptr);
  auto closed = conn->forward(make_request("d", "GET", "/close/12345"));
  REQUIRE(closed);
  CHECK(closed->body == pattern(12345));
  // The channel of a close-delimited response is not reused; the next request still works.
  auto after = conn->forward(make_request("e", "GET", "/bytes/10"));
  REQUIRE(after);
  CHECK(after->body == pattern(10));
  CHECK(w.eng.pool().release_connection("alice", *conn));
}

TEST_CASE("200 concurrent forwards for one user use at most 3 connections", "[forward]") {
  auto cfg = world::small_config();
  cfg.pool.max_connections_per_user = 3;
  cfg.pool.max_channels_per_connection = 10;
  world w{cfg};
  constexpr int n = 200;
  std::vector<std::future<std::pair<bool, std::uint64_t>>> calls;
  for (int i = 0; i < n; ++i)
    calls.push_back(std::async(std::launch::async, [&w, i] {
      auto conn = w.eng.pool().get_connection("alice");
      if (!conn)
        return std::pair<bool, std::uint64_t>{false, 0};
      auto body = "request-" + std::to_string(i) + "-" + pattern(static_cast<std::size_t>(i));
      auto req = make_request("r" + std::to_string(i), "POST", "/echo", body);
      req.headers = {{"X-Request-Id", req.id}};
      auto res = conn->forward(req);
      bool matched = res && res->status == 200 && res->id == req.id && res->body == body &&
                     res->header("x-request-id") != nullptr &&
                     *res->header("x-request-id") == req.id;
      auto released = w.eng.pool().release_connection("alice", *conn);
      return std::pair<bool, std::uint64_t>{matched && static_cast<bool>(released), conn->id()};
    }));
  std::set<std::uint64_t> ids;
  int matched = 0;
  for (auto& f : calls) {
    auto [ok, id] = f.get();
    matched += ok ? 1 : 0;
    ids.insert(id);
  }
  CHECK(matched == n);
  CHECK(ids.size() <= 3);
  auto stats = w.eng.pool().get_pool_stats();
  CHECK(stats.total_connections <= 3);
  CHECK(stats.leases == 0);
  CHECK(stats.waiters == 0);
  CHECK(w.backend.requests_received() == n);
}

TEST_CASE("two users reach their own backends and never each other's", "[forward]") {
  world w;
  http_backend other{http_backend::options{"backend-b"}};
  REQUIRE(w.eng.set_endpoint("bob", w.sshd.make_endpoint(other.port())));
  std::vector<std::future<bool>> calls;
  for (int i = 0; i < 40; ++i)
    calls.push_back(std::async(std::launch::async, [&w, i] {
      std::string user = i % 2 == 0 ? "alice" : "bob";
      std::string expected = i % 2 == 0 ? "backend-a" : "backend-b";
      auto conn = w.eng.pool().get_connection(user);
      if (!conn)
        return false;
      auto res = conn->forward(make_request(user + std::to_string(i), "GET", "/echo"));
      w.eng.pool().release_connection(user, *conn);
      return res && res->header("x-backend") != nullptr && *res->header("x-backend") == expected &&
             conn->user() == user;
    }));
  for (auto& f : calls)
    CHECK(f.get());
  auto stats = w.eng.pool().get_pool_stats();
  CHECK(stats.user_count == 2);
}

TEST_CASE("lease 31 waits for acquire_timeout, then gets pool_exhausted", "[pool]") {
  auto cfg = world::small_config();
  cfg.pool.max_connections_per_user = 3;
  cfg.pool.max_channels_per_connection = 10;
  cfg.pool.acquire_timeout = 500ms;
  world w{cfg};
  std::vector<connection> held;
  for (int i = 0; i < 30; ++i) {
    auto conn = w.lease("alice");
    held.push_back(*conn);
  }
  std::set<std::uint64_t> ids;
  for (auto& c : held)
    ids.insert(c.id());
  CHECK(ids.size() == 3);
  auto start = std::chrono::steady_clock::now();
  auto extra = w.eng.pool().get_connection("alice");
  auto waited = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(extra);
  CHECK(extra.error().code() == errc::pool_exhausted);
  CHECK(waited >= 450ms);
  CHECK(extra.error().message().find("30 leases") != std::string::npos);
  // Releasing one lease makes room again.
  CHECK(w.eng.pool().release_connection("alice", held.back()));
  held.pop_back();
  auto again = w.lease("alice");
  for (auto& c : held)
    CHECK(w.eng.pool().release_connection("alice", c));
  CHECK(w.eng.pool().release_connection("alice", *again));
}

TEST_CASE("releases are checked", "[pool]") {
  world w;
  auto conn = w.lease("alice");
  auto wrong = w.eng.pool().release_connection("bob", *conn);
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().code() == errc::wrong_user);
  CHECK(w.eng.pool().get_pool_stats().leases == 1); // the refused release changed nothing
  auto copy = *conn;
  CHECK(w.eng.pool().release_connection("alice", *conn));
  // The release does not wait for the pool, but later calls see it done.
  CHECK(w.eng.pool().get_pool_stats().leases == 0);
  auto twice = w.eng.pool().release_connection("alice", copy); // through a copy
  REQUIRE_FALSE(twice);
  CHECK(twice.error().code() == errc::not_leased);
  auto unknown = w.eng.pool().get_connection("nobody");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().code() == errc::unknown_user);
  auto empty = w.eng.pool().get_connection("");
  REQUIRE_FALSE(empty);
  CHECK(empty.error().code() == errc::invalid_argument);
  auto stats = w.eng.pool().get_pool_stats();
  CHECK(stats.leases == 0);
}

TEST_CASE("a changed host key is refused before authentication", "[security]") {
  test::sshd_options opts;
  opts.log_level = "VERBOSE";
  world w{world::small_config(), opts};
  auto ep = w.sshd.make_endpoint(w.backend.port());
  ep.known_hosts_file = w.sshd.wrong_known_hosts_file();
  CHECK(lease_error(w, "mallory", ep) == errc::host_key_mismatch);
  // sshd saw no authentication attempt at all.
  auto log = read_file(w.sshd.log_file());
  CHECK(log.find("publickey") == std::string::npos);

  ep.known_hosts_file = w.sshd.empty_known_hosts_file();
  CHECK(lease_error(w, "mallory", ep) == errc::host_key_unknown);
  CHECK(read_file(w.sshd.log_file()).find("publickey") == std::string::npos);
}

TEST_CASE("a key the server does not accept gives auth_failed", "[security]") {
  world w;
  auto ep = w.sshd.make_endpoint(w.backend.port());
  ep.identity_file = w.sshd.wrong_identity_file();
  CHECK(lease_error(w, "eve", ep) == errc::auth_failed);
  auto stats = w.eng.pool().get_pool_stats();
  CHECK(stats.total_connections == 0); // the failed handshake does not count
}

TEST_CASE("a closed backend port fails the request, not the connection", "[forward]") {
  world w;
  std::uint16_t closed_port = 0;
  {
    http_backend gone{http_backend::options{"gone"}};
    closed_port = gone.port();
  }
  auto ep = w.sshd.make_endpoint(closed_port);
  REQUIRE(w.eng.set_endpoint("carol", ep));
  auto conn = w.lease("carol");
  auto res = conn->forward(make_request("x", "GET", "/echo"));
  REQUIRE_FALSE(res);
  CHECK(res.error().code() == errc::channel_open_failed);
  CHECK(conn->is_healthy());
  auto again = conn->forward(make_request("y", "GET", "/echo"));
  REQUIRE_FALSE(again);
  CHECK(again.error().code() == errc::channel_open_failed);
  CHECK(conn->is_healthy());
  CHECK(w.eng.pool().release_connection("carol", *conn));
  // The same connection id serves the next lease: it never left the pool.
  auto next = w.lease("carol");
  CHECK(next->id() == conn->id());
}

TEST_CASE("CR/LF in a header is rejected and nothing is sent", "[security]") {
  world w;
  auto conn = w.lease("alice");
  auto req = make_request("bad", "GET", "/echo");
  req.headers = {{"X-Evil", "a\r\nTransfer-Encoding: chunked"}};
  auto res = conn->forward(req);
  REQUIRE_FALSE(res);
  CHECK(res.error().code() == errc::invalid_request);
  auto split = make_request("bad2", "GET", "/echo HTTP/1.1\r\nHost: x\r\n\r\nGET /admin");
  auto res2 = conn->forward(split);
  REQUIRE_FALSE(res2);
  CHECK(res2.error().code() == errc::invalid_request);
  CHECK(w.backend.requests_received() == 0);
  // The connection is fine for a good request.
  auto good = conn->forward(make_request("good", "GET", "/echo"));
  REQUIRE(good);
  CHECK(w.backend.requests_received() == 1);
}

TEST_CASE("a request over its deadline fails alone with request_timeout", "[forward]") {
  world w;
  auto conn = w.lease("alice");
  auto slow = std::async(std::launch::async, [&] {
    return conn->forward(make_request("hang", "GET", "/hang"), 300ms);
  });
  auto quick = conn->forward(make_request("quick", "GET", "/echo"));
  REQUIRE(quick);
  auto res = slow.get();
  REQUIRE_FALSE(res);
  CHECK(res.error().code() == errc::request_timeout);
  CHECK(conn->is_healthy());
  auto after = conn->forward(make_request("after", "GET", "/echo"));
  REQUIRE(after);
  CHECK(after->status == 200);
}

TEST_CASE("a dying session does not disturb another user's session on the same reactor",
          "[forward]") {
  auto cfg = world::small_config();
  cfg.reactor_threads = 1; // both sessions on one reactor thread
  world w{cfg};
  neighbour<test_sshd> other{w.eng, "bob", "backend-b"};
  auto bob = w.lease("bob");
  auto alice = w.lease("alice");

  // Alice opens and closes channels all along (Connection: close) while bob's sshd dies.
  std::mutex mx;
  std::condition_variable cv;
  int done = 0;
  int failed = 0;
  std::thread load{[&] {
    for (int i = 0; i < 300; ++i) {
      auto req = make_request("a" + std::to_string(i), "GET", "/echo");
      req.headers = {{"Connection", "close"}};
      auto res = alice->forward(req);
      std::lock_guard<std::mutex> guard{mx};
      ++done;
      failed += res && res->status == 200 ? 0 : 1;
      cv.notify_all();
    }
  }};
  {
    std::unique_lock<std::mutex> guard{mx};
    REQUIRE(cv.wait_for(guard, 30s, [&] { return done >= 50; }));
  }
  other.sshd.stop();
  load.join();
  CHECK(failed == 0);
  CHECK(alice->is_healthy());
  auto lost = bob->forward(make_request("b", "GET", "/echo"));
  REQUIRE_FALSE(lost);
  CHECK((lost.error().code() == errc::connection_lost));
  CHECK_FALSE(bob->is_healthy());
}

TEST_CASE("threads do not grow with connections", "[threads]") {
  auto cfg = world::small_config();
  cfg.pool.max_connections_per_user = 50;
  cfg.pool.max_channels_per_connection = 1;
  world w{cfg};
  // Warm up: one connection, so lazily created threads exist before the baseline.
  std::vector<connection> held;
  auto first = w.lease("alice");
  held.push_back(*first);
  auto baseline = test::thread_count();
  for (int i = 1; i < 50; ++i) {
    auto conn = w.lease("alice");
    held.push_back(*conn);
  }
  CHECK(w.eng.pool().get_pool_stats().total_connections == 50);
  CHECK(test::thread_count() == baseline);
  for (auto& c : held)
    CHECK(w.eng.pool().release_connection("alice", c));
}

TEST_CASE("forward_stream hands over an LLM token stream piece by piece", "[stream]") {
  test_sshd sshd;
  http_backend::options opts{"llm"};
  opts.token_delay = 30ms;
  opts.tokens = 12;
  http_backend backend{opts};
  engine eng{world::small_config()};
  REQUIRE(eng.set_endpoint("alice", sshd.make_endpoint(backend.port())));
  auto conn = eng.pool().get_connection("alice");
  REQUIRE(conn);
  auto req = make_request("chat", "POST", "/api/chat", R"({"model":"demo-llm","messages":[]})");
  int heads = 0;
  std::vector<std::string> chunks;
  std::vector<std::chrono::steady_clock::time_point> arrivals;
  stream_handlers handlers;
  handlers.on_head = [&](const response& head) {
    ++heads;
    CHECK(head.status == 200);
  };
  handlers.on_chunk = [&](std::string_view chunk) {
    chunks.emplace_back(chunk);
    arrivals.push_back(std::chrono::steady_clock::now());
    return true;
  };
  auto head = conn->forward_stream(req, handlers);
  REQUIRE(head);
  CHECK(head->id == "chat");
  CHECK(head->status == 200);
  CHECK(heads == 1);
  std::string body;
  for (auto& c : chunks)
    body += c;
  CHECK(std::count(body.begin(), body.end(), '\n') == 13); // 12 tokens + the final line
  CHECK(body.find("\"done\":true") != std::string::npos);
  // Tokens arrive one by one as the backend produces them, not all at the end.
  CHECK(chunks.size() >= 6);
  CHECK(arrivals.back() - arrivals.front() >= 150ms);
  CHECK(eng.pool().release_connection("alice", *conn));
}

TEST_CASE("a slow stream consumer does not make the engine buffer without bound", "[stream]") {
  test_sshd sshd;
  http_backend backend{http_backend::options{"bulk"}};
  constexpr std::size_t total = std::size_t{100} << 20;
  auto cfg = world::small_config();
  cfg.pool.max_response_bytes = total; // streams count against it too
  engine eng{cfg};
  REQUIRE(eng.set_endpoint("alice", sshd.make_endpoint(backend.port())));
  auto conn = eng.pool().get_connection("alice");
  REQUIRE(conn);
  std::mutex mx;
  std::condition_variable cv;
  bool release = false;
  std::size_t received = 0;
  std::size_t offset = 0;
  bool intact = true;
  stream_handlers handlers;
  handlers.on_chunk = [&](std::string_view chunk) {
    if (received == 0) { // the first piece: hold the stream until the test measured
      std::unique_lock<std::mutex> guard{mx};
      cv.wait(guard, [&] { return release; });
    }
    for (std::size_t i = 0; i < chunk.size() && intact; i += 4093)
      intact = chunk[i] == static_cast<char>('a' + (offset + i) % 26);
    offset += chunk.size();
    received += chunk.size();
    return true;
  };
  auto rss_before = test::rss_bytes();
  auto result = std::async(std::launch::async, [&] {
    return conn->forward_stream(make_request("bulk", "GET", "/bytes/" + std::to_string(total)),
                                handlers);
  });
  REQUIRE(backend.wait_for_requests(1, 10s));
  // Wait until the flow stalls: bytes wait in the backend's socket, unread and no longer
  // moving, as every buffer between it and the held consumer is full. Without backpressure
  // the engine would take the whole 100 MiB instead, and the backend's socket would empty.
  std::size_t peak = 0;
  auto waiting = settled([&] {
    peak = std::max(peak, test::rss_bytes());
    std::size_t queued = 0;
    for (const auto& s : test::tcp_sockets())
      queued += s.established && s.local_port == backend.port() ? s.send_queue : 0;
    return queued;
  });
  INFO("bytes waiting in the backend's socket: " << waiting);
  CHECK(waiting > 0);
  {
    std::lock_guard<std::mutex> guard{mx};
    release = true;
  }
  cv.notify_all();
  auto res = result.get();
  INFO((res ? std::string{"ok"} : res.error().to_string()) << ", received " << received);
  REQUIRE(res);
  CHECK(received == total);
  CHECK(intact);
  auto growth = peak > rss_before ? peak - rss_before : 0;
  INFO("RSS growth while the consumer stalled: " << (growth >> 10) << " KiB");
  CHECK(growth < (std::size_t{16} << 20));
  CHECK(eng.pool().release_connection("alice", *conn));
}

TEST_CASE("a stream abandoned by its consumer closes its channel, not the connection", "[stream]") {
  world w;
  auto conn = w.lease("alice");
  stream_handlers handlers;
  std::size_t got = 0;
  handlers.on_chunk = [&](std::string_view chunk) {
    got += chunk.size();
    return false; // the client went away
  };
  auto res = conn->forward_stream(make_request("gone", "GET", "/bytes/50000000"), handlers);
  CHECK(res); // the caller stopped it; nothing failed
  CHECK(got > 0);
  CHECK(got < 50000000);
  auto next = conn->forward(make_request("next", "GET", "/echo"));
  REQUIRE(next);
  CHECK(next->status == 200);
  CHECK(conn->is_healthy());
}
