// sshpool-demo in operation (issue #16): users at run time through SIGHUP (added, changed,
// removed, an invalid file refused, settings that cannot change kept) with another user's
// stream going on untouched, and fair share under max_in_flight_total (a flood of one user
// against another's one-at-a-time requests). Also the harness's hold on a running child: its
// output is read while the test does something else, so that a gateway logging every request
// never blocks on a full pipe; and the gateway itself, whose stderr nobody reads, serving on.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <functional>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "backend/http_backend.hpp"
#include "gateway/gateway_harness.hpp"
#include "support/child_process.hpp"
#include "support/test_sshd.hpp"
#include "support/timing.hpp"

using namespace sshpool::test;
using namespace std::chrono_literals;
using sshpool::demo::http_backend;
using json = nlohmann::json;

namespace {

http_backend::options streaming_backend(std::string name) {
  http_backend::options opts;
  opts.name = std::move(name);
  opts.token_delay = 100ms;
  opts.tokens = 30; // a 3 s stream
  return opts;
}

/// The handshakes of `user` in /stats (-1 if the user has no pool).
long long handshakes_of(std::uint16_t port, const std::string& user) {
  auto stats = json::parse(fetch(port, "GET", "/stats").body, nullptr, false);
  if (!stats.is_object())
    return -1;
  for (auto& u : stats["pool"]["per_user"])
    if (u["user"] == user)
      return u["handshakes"].get<long long>();
  return -1;
}

/// The `code` of a JSON error body ("" if none).
std::string code_of(const http_response& res) {
  auto body = json::parse(res.body, nullptr, false);
  return body.is_object() && body["code"].is_string() ? body["code"].get<std::string>() : "";
}

/// The p99 (nearest rank) of `samples` in milliseconds.
double p99(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  auto rank = static_cast<std::size_t>(0.99 * static_cast<double>(samples.size()));
  return samples[std::min(rank, samples.size() - 1)];
}

/// `clients` connections of alice, each sending /slow/200 again as soon as it is answered
/// (so `clients` requests are in flight at all times), on one thread: the flood may take a
/// core of this 2-core machine's, not both; stopped (and joined) by stop() or the destructor.
struct alice_flood {
  std::atomic<bool> stopping{false};
  std::atomic<int> ok{0}, refused{0}, other{0}, retry_after{0};
  std::thread thread;

  alice_flood(std::uint16_t port, int clients)
      : thread([this, port, clients] { run(port, clients); }) {}
  ~alice_flood() { stop(); }

  void stop() {
    stopping = true;
    if (thread.joinable())
      thread.join();
  }

  void run(std::uint16_t port, int n) {
    std::vector<std::unique_ptr<http_client>> conns;
    for (int i = 0; i < n; ++i)
      conns.push_back(std::make_unique<http_client>(port));
    for (auto& cl : conns)
      cl->send_request("GET", "/u/alice/slow/200");
    while (!stopping.load())
      for (auto& cl : conns) {
        auto res = cl->read_response(10s);
        if (res.status == 200) {
          ++ok;
        } else if (res.status == 429 && // (no JSON parse: this thread competes for the CPU)
                   res.body.find("\"code\":\"over_fair_share\"") != std::string::npos) {
          ++refused;
          if (res.header("Retry-After") == "1")
            ++retry_after;
        } else {
          ++other;
        }
        if (!stopping.load())
          cl->send_request("GET", "/u/alice/slow/200");
      }
  }
};

} // namespace

TEST_CASE("SIGHUP: users added, changed and removed; another user's stream is untouched",
          "[reload]") {
  test_sshd sshd;
  http_backend a{http_backend::options{"backend-a"}};
  http_backend a2{http_backend::options{"backend-a2"}};
  http_backend b{streaming_backend("backend-b")};
  http_backend c{http_backend::options{"backend-c"}};
  http_backend d{streaming_backend("backend-d")};
  temp_dir dir;
  auto config =
      dir.write("config.json",
                make_config(sshd, {{"alice", a.port()}, {"bob", b.port()}, {"dave", d.port()}}));
  running_gateway gw{config};

  REQUIRE(fetch(gw.port, "GET", "/u/alice/echo").header("X-Backend") == "backend-a");
  CHECK(code_of(fetch(gw.port, "GET", "/u/carol/echo")) == "unknown_user");
  // Bob's and dave's streams are in flight (their heads came) when the reload comes.
  http_client bob{gw.port};
  bob.send_request("POST", "/u/bob/api/chat", {}, "{}");
  auto bob_stream = bob.read_head();
  REQUIRE(bob_stream.status == 200);
  http_client dave{gw.port};
  dave.send_request("POST", "/u/dave/api/chat", {}, "{}");
  auto dave_stream = dave.read_head();
  REQUIRE(dave_stream.status == 200);
  auto bob_handshakes = handshakes_of(gw.port, "bob");
  REQUIRE(bob_handshakes >= 1);

  // alice moves to backend-a2, carol comes, dave goes; max_clients cannot change.
  dir.write("config.json",
            make_config(sshd, {{"alice", a2.port()}, {"bob", b.port()}, {"carol", c.port()}},
                        "\"max_clients\":999"));
  gw.proc.signal(SIGHUP);
  REQUIRE(gw.proc.wait_for_output("reload_settings_kept", 10s, true));
  CHECK(gw.proc.err().find("max_clients") != std::string::npos);
  // Dave is refused while his stream still runs, and the stream ends whole.
  REQUIRE(
      eventually([&] { return code_of(fetch(gw.port, "GET", "/u/dave/echo")) == "unknown_user"; }));
  dave.read_body(dave_stream, 20s);
  CHECK_FALSE(dave_stream.truncated);
  CHECK(std::count(dave_stream.body.begin(), dave_stream.body.end(), '\n') == 31);
  REQUIRE(gw.proc.wait_for_output("reloaded", 20s, true));
  INFO(gw.proc.err());
  CHECK(gw.proc.err().find("user_removed") != std::string::npos);

  auto carol = fetch(gw.port, "GET", "/u/carol/echo");
  CHECK(carol.status == 200);
  CHECK(carol.header("X-Backend") == "backend-c");
  CHECK(fetch(gw.port, "GET", "/u/alice/echo").header("X-Backend") == "backend-a2");
  auto gone = fetch(gw.port, "GET", "/u/dave/echo");
  CHECK(gone.status == 404);
  CHECK(code_of(gone) == "unknown_user");

  // Bob: the stream went on to its end, on the same connection, with no new handshake.
  bob.read_body(bob_stream, 20s);
  CHECK_FALSE(bob_stream.truncated);
  CHECK(std::count(bob_stream.body.begin(), bob_stream.body.end(), '\n') == 31);
  CHECK(handshakes_of(gw.port, "bob") == bob_handshakes);

  // An invalid file is refused whole: carol stays, nobody is added or removed.
  dir.write("config.json", "{\"listen\":\"127.0.0.1:0\",\"users\":{\"eve\":{\"host\":1}}}");
  gw.proc.signal(SIGHUP);
  REQUIRE(gw.proc.wait_for_output("reload_refused", 10s, true));
  CHECK(fetch(gw.port, "GET", "/u/carol/echo").status == 200);
  CHECK(fetch(gw.port, "GET", "/u/bob/echo").status == 200);
  CHECK(handshakes_of(gw.port, "bob") == bob_handshakes);
  auto err = gw.proc.err();
  auto first = err.find("user_removed");
  CHECK(err.find("user_removed", first + 1) == std::string::npos); // dave's, only
}

TEST_CASE("SIGHUP with API keys: an added user's key authenticates, a removed user's no more",
          "[reload][auth]") {
  test_sshd sshd;
  http_backend a{http_backend::options{"backend-a"}};
  http_backend c{http_backend::options{"backend-c"}};
  temp_dir dir;
  // printf '<key>' | sha256sum
  const std::string alice_key = "alice-key-0123456789";
  const std::string carol_key = "carol-key-0123456789";
  auto with_keys = [&](std::vector<test_user> users) {
    auto cfg = json::parse(make_config(sshd, users));
    if (cfg["users"].contains("alice"))
      cfg["users"]["alice"]["api_keys_sha256"] = {
          "7bafaa96aa2351e6b7fbc258246b08ee66ade6196c76850108303b1dd6d6eb62"};
    if (cfg["users"].contains("carol"))
      cfg["users"]["carol"]["api_keys_sha256"] = {
          "14bcf0f9adb27c0ed9ccef2466ec8f5de89fe791ca3ca0e7675ea0561f656696"};
    return cfg.dump();
  };
  auto config = dir.write("config.json", with_keys({{"alice", a.port()}}));
  running_gateway gw{config};
  auto as = [&](const std::string& key) {
    return fetch(gw.port, "GET", "/echo", {{"Authorization", "Bearer " + key}});
  };
  CHECK(as(alice_key).header("X-Backend") == "backend-a");
  CHECK(as(carol_key).status == 401);

  dir.write("config.json", with_keys({{"carol", c.port()}}));
  gw.proc.signal(SIGHUP);
  REQUIRE(gw.proc.wait_for_output("reloaded", 20s, true));
  CHECK(eventually([&] { return as(carol_key).header("X-Backend") == "backend-c"; }));
  CHECK(as(alice_key).status == 401);

  // A file without any credential cannot switch authentication off: refused whole.
  dir.write("config.json", make_config(sshd, {{"carol", c.port()}}));
  gw.proc.signal(SIGHUP);
  REQUIRE(gw.proc.wait_for_output("reload_refused", 20s, true));
  CHECK(fetch(gw.port, "GET", "/u/carol/echo").status == 401);
  CHECK(as(carol_key).header("X-Backend") == "backend-c");
}

TEST_CASE("fair share: a flooding user gets 429, another user's latency stays low",
          "[fair_share]") {
  test_sshd sshd;
  http_backend a{http_backend::options{"backend-a"}};
  http_backend b{http_backend::options{"backend-b"}};
  temp_dir dir;
  running_gateway gw{
      dir.write("config.json",
                make_config(sshd, {{"alice", a.port()}, {"bob", b.port()}},
                            "\"max_in_flight_total\":8,\"max_connections_per_user\":2")),
      {"LOG_LEVEL=warn"}}; // a line per request would fill the unread stderr pipe

  // Bob's requests one at a time: a service that takes 100 ms.
  auto bob_latencies = [&](int n) {
    std::vector<double> out;
    http_client bob{gw.port};
    for (int i = 0; i < n; ++i) {
      auto sent = steady::now();
      bob.send_request("GET", "/u/bob/slow/100");
      auto res = bob.read_response(10s);
      INFO("bob: status " << res.status << " after " << ms_since(sent) << " ms, request " << i);
      REQUIRE(res.status == 200);
      out.push_back(static_cast<double>(ms_since(sent)));
    }
    return out;
  };
  REQUIRE(fetch(gw.port, "GET", "/u/bob/echo").status == 200); // bob's connection is up
  auto unloaded = p99(bob_latencies(20));

  // Alice floods: 200 requests in flight at all times, each sent again as soon as answered.
  alice_flood flood{gw.port, 200};
  REQUIRE(eventually([&] { return flood.refused.load() > 0; }));
  auto loaded = p99(bob_latencies(30));
  flood.stop();
  auto& alice_ok = flood.ok;
  auto& alice_429 = flood.refused;
  auto& alice_other = flood.other;
  auto& retry_after = flood.retry_after;

  WARN("bob's p99: " << unloaded << " ms alone, " << loaded << " ms under alice's flood; alice: "
                     << alice_ok << " ok, " << alice_429 << " 429");
  CHECK(loaded < 3 * unloaded);
  CHECK(alice_ok > 0);
  CHECK(alice_429 > 0);
  CHECK(retry_after == alice_429.load());
  CHECK(alice_other == 0);
  auto metrics = fetch(gw.port, "GET", "/metrics").body;
  check_promtool(dir, metrics);
  CHECK(metric_value(metrics, "sshpool_gateway_fair_share_budget") == "8");
  auto refused = metric_value(metrics, "sshpool_gateway_fair_share_refusals_total");
  REQUIRE_FALSE(refused.empty());
  CHECK(std::stoll(refused) >= alice_429.load());
  CHECK(metric_value(metrics,
                     "sshpool_gateway_requests_total{status=\"429\",code=\"over_fair_share\"}") ==
        refused);
  auto stats = json::parse(fetch(gw.port, "GET", "/stats").body, nullptr, false);
  CHECK(stats["fair_share"]["refused"] == std::stoll(refused));
  CHECK(stats["fair_share"]["max_in_flight_total"] == 8);
}

TEST_CASE("harness: a child writing more than a pipe holds runs on while the test awaits "
          "something else",
          "[harness]") {
  // 1 MiB on stderr (a pipe holds 64 KiB), then a line on stdout. The test awaits only the
  // exit (its pidfd), never the output: a child whose pipes nobody reads would block in its
  // write and never exit, as a cluster node logging every request of a load froze.
  child_process child{{"/bin/sh", "-c", "head -c 1048576 /dev/zero | tr '\\000' x >&2; echo done"}};
  int pidfd = open_pidfd(child.pid());
  REQUIRE(pidfd >= 0);
  auto running = wait_exits({pidfd}, 20s);
  ::close(pidfd);
  CHECK(running.empty());
  CHECK(child.wait_exit(10s) == 0);
  CHECK(child.err() == std::string(1048576, 'x'));
  CHECK(child.out() == "done\n");
}

TEST_CASE("logs: a gateway whose stderr nobody reads keeps serving; the lines it could not "
          "write are counted in /metrics and told once the reader is back",
          "[logs]") {
  test_sshd sshd;
  http_backend backend{http_backend::options{"backend"}};
  temp_dir dir;
  auto cfg = dir.write("config.json", make_config(sshd, {{"alice", backend.port()}}));
  const std::string fifo = dir.path() + "/stderr";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // Opened for reading (so that the gateway's open does not wait), then not read.
  int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  REQUIRE(reader >= 0);
  child_process proc{
      {"/bin/sh", "-c", "exec '" SSHPOOL_DEMO_BINARY "' --config '" + cfg + "' 2>'" + fifo + "'"},
      {"LOG_LEVEL=trace"}};
  REQUIRE(proc.wait_for_output("listening on", 30s));
  const auto port = proc.listening_port();

  // Each request logs its 8 KiB path at least twice: 600 of them are more than the pipe
  // and the gateway's 4 MiB of pending lines. With stderr written synchronously, the
  // gateway froze at the pipe's 64 KiB, a few requests in.
  const std::string path = "/u/alice/" + std::string(8192, 'p');
  http_client client{port};
  // First (its lines fit in the pipe): a path that is not UTF-8 is logged quoted, with U+FFFD.
  client.send_request("GET", "/u/alice/caf\xc3\xa9\xff");
  REQUIRE(client.read_response(10s).status == 404);
  for (int i = 0; i < 600; ++i) {
    client.send_request("GET", path);
    auto res = client.read_response(10s);
    INFO("request " << i);
    REQUIRE(res.status == 404); // the backend has no such route
  }
  auto dropped = std::stoull(
      metric_value(fetch(port, "GET", "/metrics").body, "sshpool_gateway_log_lines_dropped_total"));
  CHECK(dropped > 0);

  // The reader is back: the lines kept come out whole, and the notice of those dropped.
  std::string out;
  auto read_until = [&](const std::function<bool()>& done, std::chrono::seconds limit) {
    auto deadline = steady::now() + limit;
    char buf[65536];
    while (!done() && steady::now() < deadline) {
      pollfd p{reader, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0)
        continue;
      ssize_t n = ::read(reader, buf, sizeof buf);
      if (n == 0)
        return true; // the gateway closed it: it exited
      if (n > 0)
        out.append(buf, static_cast<std::size_t>(n));
    }
    return done();
  };
  CHECK(read_until([&] { return out.find("log_lines_dropped") != std::string::npos; }, 30s));
  proc.signal(SIGTERM);
  read_until([] { return false; }, 30s); // to the end
  ::close(reader);
  CHECK(proc.wait_exit(20s) == 0);
  std::uint64_t told = 0;
  std::istringstream lines{out};
  for (std::string line; std::getline(lines, line);) {
    INFO(line.substr(0, 200));
    CHECK(line.rfind("20", 0) == 0); // whole lines: each begins with its time
    if (auto at = line.find("log_lines_dropped lines="); at != std::string::npos)
      told += std::stoull(line.substr(at + 24));
  }
  CHECK(told >= dropped);
  CHECK(out.find("path=\"/caf\xc3\xa9\\ufffd\"") != std::string::npos);
}
