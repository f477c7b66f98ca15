// sshpool-demo as a cluster node (issue #17), end to end: three real gateway processes on
// loopback, each with a "cluster" section (mutual TLS with a cluster CA made by the openssl
// CLI at run time), the same users on every node, one private sshd and one in-process
// backend. Checked: the cluster section's settings (exit 2 naming the key; --check-config
// shows it); nine users served through every node with one set of SSH connections per user
// (on its rendezvous owner only, counted from every node's /stats); /stats and /metrics
// (promtool) of the membership; a node killed with SIGKILL and restarted under load with
// every call answered within its bound and every user served again within 10 s; a node
// whose certificate another CA signed kept out of the cluster; and, where root can make a
// network namespace, a node in its own namespace cut off (the others serve its users) and
// healed (the cluster whole again, each user back on its owner once idle); and a node drained
// with SIGTERM, which leaves before it drains its streams in flight.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "backend/http_backend.hpp"
#include "gateway/gateway_harness.hpp"
#include "rendezvous.hpp"
#include "support/child_process.hpp"
#include "support/netns.hpp"
#include "support/pki.hpp"
#include "support/timing.hpp"

using namespace sshpool::test;
using namespace std::chrono_literals;
using sshpool::demo::http_backend;
using json = nlohmann::json;

namespace {

/// The users' names: u0 ... u(n-1).
std::vector<std::string> user_names(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i)
    out.push_back("u" + std::to_string(i));
  return out;
}

/// One gateway node: its config file (the same users as every node), started and stopped
/// (SIGKILL) by the test; in the network namespace `netns` if not empty (then the test talks
/// to its front end, on the namespace's loopback, with curl run in the namespace). Its
/// cluster port is on `host`.
struct node {
  std::string id;
  std::string host = "127.0.0.1";
  std::uint16_t cluster_port = 0;
  std::string config;
  std::string netns;
  std::unique_ptr<child_process> proc;
  std::uint16_t http_port = 0;

  std::uint16_t port() const { return http_port; }
  void start() {
    std::vector<std::string> args = {SSHPOOL_DEMO_BINARY, "--config", config};
    if (!netns.empty())
      args.insert(args.begin(), {"/usr/sbin/ip", "netns", "exec", netns});
    proc = std::make_unique<child_process>(args);
    bool up = proc->wait_for_output("listening on", 30s);
    INFO("node " << id << " stdout: " << proc->out() << "\nstderr: " << proc->err());
    REQUIRE(up);
    http_port = proc->listening_port();
  }
  /// SIGKILL: no drain, no leave announced; the process is reaped.
  void kill() {
    proc->signal(SIGKILL);
    proc->wait_exit(10s);
    proc.reset();
  }
  /// GET `path`: the status (0 if the node did not answer within 5 s) and the body.
  std::pair<int, std::string> get(const std::string& path) const {
    if (netns.empty()) {
      try {
        http_client c{http_port};
        c.send_request("GET", path);
        auto res = c.read_response(5s);
        return {res.status, res.body};
      } catch (const std::runtime_error&) {
        return {0, {}};
      }
    }
    child_process curl{{"/usr/sbin/ip", "netns", "exec", netns, "/usr/bin/curl", "-s", "--max-time",
                        "5", "-w", "\n%{http_code}",
                        "http://127.0.0.1:" + std::to_string(http_port) + path}};
    curl.wait_exit(10s);
    auto out = curl.out();
    auto last = out.rfind('\n');
    if (last == std::string::npos)
      return {0, {}};
    return {std::atoi(out.c_str() + last + 1), out.substr(0, last)};
  }
  json stats() const {
    auto [status, body] = get("/stats");
    auto doc = json::parse(body, nullptr, false);
    return status == 200 && doc.is_object() ? doc : json::object();
  }
  /// The live members this node sees (empty if it cannot tell).
  std::vector<std::string> members() const {
    auto cluster = stats()["cluster"];
    return cluster.is_object() ? cluster["members"].get<std::vector<std::string>>()
                               : std::vector<std::string>{};
  }
  /// SSH connections of `user` on this node, from /stats (-1 if it did not answer).
  int connections(const std::string& user) const {
    auto doc = stats();
    if (!doc.contains("pool"))
      return -1;
    for (auto& u : doc["pool"]["per_user"])
      if (u["user"] == user)
        return u["connections"].get<int>();
    return 0;
  }
  /// GET /u/USER/api/tags: the status (0 if the node is not there).
  int status_for(const std::string& user) const { return get("/u/" + user + "/api/tags").first; }
};

/// Nodes `ids` whose certificates `ca` signed, each listing the others as peers, for `users`
/// on `sshd` through `backend`, plus `extra` settings; not started. Node i's cluster port
/// is on `hosts[i]` (default 127.0.0.1).
std::vector<node> make_nodes(const temp_dir& dir, const test_ca& ca, const test_sshd& sshd,
                             const http_backend& backend, const std::vector<std::string>& users,
                             const std::vector<std::string>& ids, const std::string& extra = {},
                             const std::vector<std::string>& hosts = {}) {
  std::vector<node> nodes(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    nodes[i].id = ids[i];
    if (i < hosts.size())
      nodes[i].host = hosts[i];
    nodes[i].cluster_port = free_port();
    ca.issue(ids[i], ids[i]);
  }
  std::vector<test_user> test_users;
  for (auto& u : users)
    test_users.push_back({u, backend.port()});
  for (std::size_t i = 0; i < ids.size(); ++i) {
    json peers = json::array();
    for (std::size_t j = 0; j < ids.size(); ++j)
      if (j != i)
        peers.push_back(nodes[j].host + ":" + std::to_string(nodes[j].cluster_port));
    json cluster = {{"node_id", ids[i]},
                    {"listen", nodes[i].host + ":" + std::to_string(nodes[i].cluster_port)},
                    {"peers", peers},
                    {"ca_file", ca.ca},
                    {"cert_file", dir.path() + "/" + ids[i] + ".pem"},
                    {"key_file", dir.path() + "/" + ids[i] + ".key"},
                    {"heartbeat_interval", 200},
                    {"heartbeat_timeout", 1000}};
    nodes[i].config = dir.write(
        ids[i] + ".json", make_config(sshd, test_users,
                                      "\"cluster\":" + cluster.dump() +
                                          ",\"acquire_timeout\":3000,\"request_timeout\":5000" +
                                          (extra.empty() ? "" : "," + extra)));
  }
  return nodes;
}

/// Whether every node of `nodes` answers 200 for every user, within `limit`.
bool all_served(const std::vector<node*>& nodes, const std::vector<std::string>& users,
                std::chrono::milliseconds limit) {
  return eventually(
      [&] {
        for (auto* n : nodes)
          for (auto& u : users)
            if (n->status_for(u) != 200)
              return false;
        return true;
      },
      limit);
}

/// Waits until every running node sees exactly the ids of `expected` as its members.
bool members_are(const std::vector<node*>& running, std::vector<std::string> expected,
                 std::chrono::milliseconds limit) {
  std::sort(expected.begin(), expected.end());
  return eventually(
      [&] {
        for (auto* n : running)
          if (n->members() != expected)
            return false;
        return true;
      },
      limit);
}

/// Requests in a loop from `threads` threads, round robin over the ports of `ports()` and
/// the users, each bounded: a call is hung if it got nothing (no answer, no close) within
/// its bound.
class load_loop {
public:
  load_loop(std::function<std::vector<std::uint16_t>()> ports, std::vector<std::string> users,
            int threads)
      : ports_(std::move(ports)), users_(std::move(users)) {
    for (int t = 0; t < threads; ++t)
      threads_.emplace_back([this, t] { run(t); });
  }
  ~load_loop() { stop(); }

  void stop() {
    stop_ = true;
    for (auto& t : threads_)
      if (t.joinable())
        t.join();
  }
  std::map<int, int> statuses() const {
    std::lock_guard<std::mutex> guard{mutex_};
    return statuses_;
  }
  int hung() const { return hung_; }
  int calls() const { return calls_; }

private:
  static constexpr auto bound = 12s;

  void run(int t) {
    for (std::size_t i = static_cast<std::size_t>(t); !stop_; ++i) {
      auto ports = ports_();
      auto port = ports[i % ports.size()];
      const auto& user = users_[(i / ports.size()) % users_.size()];
      auto start = steady::now();
      int status = 0;
      try {
        http_client c{port};
        c.send_request("GET", "/u/" + user + "/api/tags");
        auto res = c.read_response(bound);
        status = res.status;
        if (res.status == 0 && steady::now() - start >= bound)
          ++hung_;
      } catch (const std::runtime_error&) {
        status = -1; // refused: the node is down
      }
      ++calls_;
      std::lock_guard<std::mutex> guard{mutex_};
      ++statuses_[status];
    }
  }

  std::function<std::vector<std::uint16_t>()> ports_;
  std::vector<std::string> users_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<int> hung_{0};
  std::atomic<int> calls_{0};
  mutable std::mutex mutex_;
  std::map<int, int> statuses_;
};

/// A backend for the users, answering at once.
http_backend::options quick_backend() {
  http_backend::options opts;
  opts.name = "cluster-backend";
  return opts;
}

} // namespace

TEST_CASE("cluster settings: an invalid cluster section stops start-up with exit 2, naming "
          "the key; --check-config shows a valid one",
          "[cluster][config]") {
  temp_dir dir;
  test_sshd sshd;
  test_ca ca{dir, "cluster-ca"};
  ca.issue("n1", "n1");
  auto base = [&](const std::string& cluster) {
    return dir.write("c" + std::to_string(std::hash<std::string>{}(cluster)) + ".json",
                     make_config(sshd, {{"alice", 80}}, "\"cluster\":" + cluster));
  };
  const std::string files = R"("ca_file":"cluster-ca.pem","cert_file":"n1.pem",)"
                            R"("key_file":"n1.key")";
  const std::string good = R"({"node_id":"n1","listen":"127.0.0.1:4100",)"
                           R"("peers":["127.0.0.1:4101","node2.example:4100"],)" +
                           files + R"(,"heartbeat_interval":250,"heartbeat_timeout":2000})";
  child_process check{{SSHPOOL_DEMO_BINARY, "--config", base(good), "--check-config"}};
  REQUIRE(check.wait_exit(20s) == 0);
  auto shown = json::parse(check.out())["cluster"];
  CHECK(shown["node_id"] == "n1");
  CHECK(shown["listen"] == "127.0.0.1:4100");
  CHECK(shown["peers"] == json{"127.0.0.1:4101", "node2.example:4100"});
  CHECK(shown["ca_file"] == dir.path() + "/cluster-ca.pem");
  CHECK(shown["heartbeat_interval"] == 250);
  CHECK(shown["heartbeat_timeout"] == 2000);
  struct bad_case {
    std::string cluster;
    std::string named;
  };
  std::vector<bad_case> cases = {
      {R"("n1")", "cluster: must be an object"},
      {R"({"listen":"127.0.0.1:4100",)" + files + "}", "cluster: missing node_id"},
      {R"({"node_id":"n1",)" + files + "}", "cluster: missing listen"},
      {R"({"node_id":"n 1","listen":"127.0.0.1:4100",)" + files + "}", "cluster.node_id"},
      {R"({"node_id":"n1","listen":"localhost:4100",)" + files + "}", "cluster.listen"},
      {R"({"node_id":"n1","listen":"127.0.0.1:0",)" + files + "}", "cluster.listen"},
      {R"({"node_id":"n1","listen":"127.0.0.1:4100","peers":"127.0.0.1:4101",)" + files + "}",
       "cluster.peers"},
      {R"({"node_id":"n1","listen":"127.0.0.1:4100","peers":["127.0.0.1"],)" + files + "}",
       "cluster.peers"},
      {R"({"node_id":"n1","listen":"127.0.0.1:4100","peers":["h:70000"],)" + files + "}",
       "cluster.peers"},
      {R"({"node_id":"n1","listen":"127.0.0.1:4100","cert_file":"n1.pem","key_file":"n1.key"})",
       "cluster: missing ca_file"},
      {R"({"node_id":"n1","listen":"10.1.2.3:4100","ca_file":"cluster-ca.pem","cert_file":)"
       R"("n1.pem"})",
       "cluster: missing key_file"},
      {R"({"node_id":"n1","listen":"127.0.0.1:4100","ca_file":"absent.pem","cert_file":)"
       R"("n1.pem","key_file":"n1.key"})",
       "cluster.ca_file"},
      {R"({"node_id":"n1","listen":"127.0.0.1:4100",)" + files + R"(,"heartbeat_interval":0})",
       "cluster.heartbeat_interval"},
      {R"({"node_id":"n1","listen":"127.0.0.1:4100",)" + files + R"(,"heartbeat_timeout":"x"})",
       "cluster.heartbeat_timeout"},
      {R"({"node_id":"n1","listen":"127.0.0.1:4100",)" + files + R"(,"secret":"hunter2"})",
       "cluster: unknown key 'secret'"},
  };
  for (auto& c : cases) {
    child_process p{{SSHPOOL_DEMO_BINARY, "--config", base(c.cluster)}};
    int code = p.wait_exit(20s);
    INFO(c.cluster << "\n  exit " << code << ", stderr: " << p.err());
    CHECK(code == 2);
    CHECK(p.err().find(c.named) != std::string::npos);
    CHECK(p.err().find("hunter2") == std::string::npos);
  }
}

TEST_CASE("three nodes: nine users served through every node, each with one set of SSH "
          "connections on its owner only; /stats and /metrics show the membership",
          "[cluster]") {
  temp_dir dir;
  test_sshd sshd;
  http_backend backend{quick_backend()};
  test_ca ca{dir, "cluster-ca"};
  auto users = user_names(9);
  const std::vector<std::string> ids = {"n1", "n2", "n3"};
  auto nodes = make_nodes(dir, ca, sshd, backend, users, ids, R"("max_connections_per_user":2)");
  for (auto& n : nodes)
    n.start();
  std::vector<node*> all = {&nodes[0], &nodes[1], &nodes[2]};
  REQUIRE(members_are(all, ids, 15s));

  for (auto& n : nodes)
    for (auto& u : users) {
      auto res = fetch(n.port(), "GET", "/u/" + u + "/api/tags");
      INFO("node " << n.id << ", user " << u << ": " << res.status << " " << res.body);
      CHECK(res.status == 200);
      CHECK(res.header("X-Backend") == "cluster-backend");
    }
  // Without the cluster each node would hold its own pool for each user (three nodes, at
  // least three connections per user): here a user's connections are its owner's pool
  // only (one or two: max_connections_per_user), whichever node the requests entered.
  std::map<std::string, int> owned;
  for (auto& u : users) {
    auto owner = *sshpool::rendezvous::owner(u, ids);
    ++owned[owner];
    for (auto& n : nodes) {
      INFO("user " << u << " (owner " << owner << ") on node " << n.id);
      auto count = n.connections(u);
      if (n.id == owner)
        CHECK((count >= 1 && count <= 2));
      else
        CHECK(count == 0);
    }
  }
  CHECK(owned.size() == 3); // the nine users are spread over the three nodes

  auto stats = nodes[0].stats()["cluster"];
  CHECK(stats["node_id"] == "n1");
  CHECK(stats["member_count"] == 3);
  REQUIRE(stats["peers"].size() == 2);
  for (auto& p : stats["peers"]) {
    CHECK(p["state"] == "up");
    CHECK(p["connects"].get<int>() >= 1);
  }
  // n1's callers asked the owners n2 and n3 for their users' leases, and n1 served theirs.
  CHECK(stats["remote_acquires"].get<int>() == 9 - owned["n1"]);
  CHECK(stats["served_acquires"].get<int>() == 2 * owned["n1"]);
  auto metrics = fetch(nodes[0].port(), "GET", "/metrics").body;
  check_promtool(dir, metrics);
  CHECK(metric_value(metrics, "sshpool_cluster_members") == "3");
  for (std::size_t j = 1; j < nodes.size(); ++j)
    CHECK(metric_value(metrics, "sshpool_cluster_peer_up{peer=\"127.0.0.1:" +
                                    std::to_string(nodes[j].cluster_port) + "\"}") == "1");
  CHECK(std::stoi(metric_value(metrics, "sshpool_cluster_membership_changes_total")) >= 1);
}

TEST_CASE("three nodes: one killed (SIGKILL) and restarted under load; every call answered "
          "within its bound, every user served again within 10 s",
          "[cluster][faults]") {
  temp_dir dir;
  test_sshd sshd;
  http_backend backend{quick_backend()};
  test_ca ca{dir, "cluster-ca"};
  auto users = user_names(9);
  const std::vector<std::string> ids = {"n1", "n2", "n3"};
  auto nodes = make_nodes(dir, ca, sshd, backend, users, ids);
  for (auto& n : nodes)
    n.start();
  REQUIRE(members_are({&nodes[0], &nodes[1], &nodes[2]}, ids, 15s));
  for (auto& u : users)
    REQUIRE(nodes[0].status_for(u) == 200);

  // The load enters at every running node (a killed one refuses connections: not a hang).
  std::mutex ports_mutex;
  std::vector<std::uint16_t> ports = {nodes[0].port(), nodes[1].port(), nodes[2].port()};
  load_loop load{[&] {
                   std::lock_guard<std::mutex> guard{ports_mutex};
                   return ports;
                 },
                 users, 4};
  REQUIRE(eventually([&] { return load.calls() > 50; }, 10s));

  auto killed_at = steady::now();
  nodes[2].kill();
  std::vector<node*> survivors = {&nodes[0], &nodes[1]};
  bool served = all_served(survivors, users, 10s);
  auto failover_ms = ms_since(killed_at);
  INFO("every user served by the survivors " << failover_ms << " ms after the kill");
  CHECK(served);
  CHECK(members_are(survivors, {"n1", "n2"}, 1s));

  nodes[2].start();
  {
    std::lock_guard<std::mutex> guard{ports_mutex};
    ports[2] = nodes[2].port();
  }
  auto restarted_at = steady::now();
  REQUIRE(members_are({&nodes[0], &nodes[1], &nodes[2]}, ids, 15s));
  CHECK(all_served({&nodes[0], &nodes[1], &nodes[2]}, users, 10s));
  INFO("the restarted node rejoined and served every user " << ms_since(restarted_at)
                                                            << " ms after its start");
  load.stop();
  auto statuses = load.statuses();
  std::string shown;
  for (auto& [status, count] : statuses)
    shown += std::to_string(status) + ": " + std::to_string(count) + "  ";
  INFO("calls by status (-1: refused, the node down): " << shown);
  CHECK(load.hung() == 0);
  CHECK(statuses[200] > 100);
  for (auto& [status, count] : statuses) // failures are the failover's, never another kind
    CHECK((status == 200 || status == -1 || status == 0 || status == 502 || status == 503 ||
           status == 504));
}

TEST_CASE("a node whose certificate another CA signed is refused by the cluster",
          "[cluster][security]") {
  temp_dir dir;
  test_sshd sshd;
  http_backend backend{quick_backend()};
  test_ca ca{dir, "cluster-ca"};
  test_ca foreign{dir, "foreign-ca"};
  auto users = user_names(3);
  auto good = make_nodes(dir, ca, sshd, backend, users, {"n1", "n2"});
  // The rogue node trusts its own CA and lists both nodes as peers; the nodes list it too.
  auto rogue = make_nodes(dir, foreign, sshd, backend, users, {"rogue"});
  auto with_peer = [&](node& n, std::uint16_t peer) {
    auto cfg = json::parse(read_file(n.config));
    cfg["cluster"]["peers"].push_back("127.0.0.1:" + std::to_string(peer));
    write_file(n.config, cfg.dump());
  };
  with_peer(good[0], rogue[0].cluster_port);
  with_peer(rogue[0], good[0].cluster_port);
  with_peer(rogue[0], good[1].cluster_port);
  for (auto* n : {&good[0], &good[1], &rogue[0]})
    n->start();
  REQUIRE(members_are({&good[0], &good[1]}, {"n1", "n2"}, 15s));
  // Both sides tried, and failed: n1 to reach the rogue, the rogue to reach n1 (the
  // handshake fails on both ends).
  auto failures_to = [](const node& n, std::uint16_t port) {
    auto stats = n.stats(); // kept: the loop walks a part of it
    for (auto& p : stats["cluster"]["peers"])
      if (p["address"] == "127.0.0.1:" + std::to_string(port))
        return p["failures"].get<int>();
    return -1;
  };
  CHECK(eventually([&] { return failures_to(good[0], rogue[0].cluster_port) >= 1; }, 15s));
  CHECK(eventually([&] { return failures_to(rogue[0], good[0].cluster_port) >= 1; }, 15s));
  CHECK(good[0].members() == std::vector<std::string>{"n1", "n2"});
  CHECK(good[1].members() == std::vector<std::string>{"n1", "n2"});
  CHECK(rogue[0].members() == std::vector<std::string>{"rogue"});
  // The refused handshakes did not disturb n1 and n2: they joined once and stayed.
  CHECK(good[0].stats()["cluster"]["membership_changes"] == 1);
  CHECK(good[1].stats()["cluster"]["membership_changes"] == 1);
  // Each side serves its users on its own.
  CHECK(rogue[0].status_for("u0") == 200);
  CHECK(good[0].status_for("u0") == 200);
}

TEST_CASE("a node in its own network namespace cut off and healed: the others serve its users "
          "meanwhile; healed, the cluster is whole and each user goes back to its owner",
          "[cluster][faults][netns]") {
  test_netns ns;
  if (!ns.available()) {
    WARN("skipped: " << ns.why_unavailable());
    return;
  }
  temp_dir dir;
  sshd_options options;
  options.listen_address = ns.host_address(); // reached from both sides of the veth pair
  test_sshd sshd{options};
  auto opts = quick_backend();
  opts.token_delay = 100ms;
  opts.tokens = 100; // a 10 s stream: still running when the network is cut
  http_backend backend{opts};
  test_ca ca{dir, "cluster-ca"};
  auto users = user_names(9);
  const std::vector<std::string> ids = {"n1", "n2", "n3"};
  // Idle connections close after 2 s, so that the users' return to their owners shows.
  auto nodes = make_nodes(dir, ca, sshd, backend, users, ids,
                          R"("max_idle_time":2000,"cleanup_interval":250)",
                          {ns.host_address(), ns.host_address(), ns.ns_address()});
  nodes[2].netns = ns.name();
  for (auto& n : nodes)
    n.start();
  std::vector<node*> all = {&nodes[0], &nodes[1], &nodes[2]};
  REQUIRE(members_are(all, ids, 15s));
  REQUIRE(all_served(all, users, 10s));
  // A stream of a user of n3's entering at n1 (handed to n3 across the veth pair).
  auto owned_by_n3 = std::find_if(users.begin(), users.end(), [&](const std::string& u) {
    return *sshpool::rendezvous::owner(u, ids) == "n3";
  });
  REQUIRE(owned_by_n3 != users.end());
  http_client streaming{nodes[0].port()};
  streaming.send_request("POST", "/u/" + *owned_by_n3 + "/api/chat", {}, "{}");
  auto stream = streaming.read_head();
  REQUIRE(stream.status == 200);

  ns.cut();
  auto cut_at = steady::now();
  // The stream cut off with n3 ends (connection_lost: the response stops short) within the
  // heartbeat deadline and a margin, long before its 10 s; it does not hang.
  streaming.read_body(stream, 8s);
  auto stream_end_ms = ms_since(cut_at);
  INFO("the stream through the cut node ended " << stream_end_ms << " ms after the cut");
  CHECK(stream.truncated);
  CHECK(stream_end_ms < 5000);
  // Each side counts the other out after the heartbeat deadline; n1 and n2 serve every user,
  // n3's too, with their own connections (n3 cannot reach the sshd: its side has nothing).
  CHECK(members_are({&nodes[0], &nodes[1]}, {"n1", "n2"}, 5s));
  CHECK(members_are({&nodes[2]}, {"n3"}, 5s));
  CHECK(all_served({&nodes[0], &nodes[1]}, users, 10s));
  INFO("n1 and n2 served every user " << ms_since(cut_at) << " ms after the cut");

  ns.restore();
  auto healed_at = steady::now();
  CHECK(members_are(all, ids, 20s));
  auto n3_stats = nodes[2].stats();
  for (auto& p : n3_stats["cluster"]["peers"])
    CHECK(p["failures"].get<int>() >= 1); // n3 lost both peers, and found them again
  CHECK(all_served(all, users, 10s));
  INFO("healed: the cluster whole and every user served through every node "
       << ms_since(healed_at) << " ms after the heal");
  // Idle, each user's connections are on its rendezvous owner only again (those the others
  // opened during the partition close as idle ones do).
  CHECK(eventually(
      [&] {
        for (auto& u : users) {
          auto owner = *sshpool::rendezvous::owner(u, ids);
          for (auto& n : nodes)
            if ((n.connections(u) > 0) != (n.id == owner))
              return false;
        }
        return true;
      },
      15s));
}

TEST_CASE("a node drained with SIGTERM leaves first: its peers drop it at once, streams in "
          "flight through it complete whole, and its users are served by the others",
          "[cluster][shutdown]") {
  temp_dir dir;
  test_sshd sshd;
  constexpr std::size_t tokens = 10;
  auto opts = quick_backend();
  opts.token_delay = 150ms;
  opts.tokens = tokens;
  http_backend backend{opts};
  test_ca ca{dir, "cluster-ca"};
  auto users = user_names(9);
  const std::vector<std::string> ids = {"n1", "n2", "n3"};
  auto nodes = make_nodes(dir, ca, sshd, backend, users, ids, R"("shutdown_grace_period":20000)");
  for (auto& n : nodes)
    n.start();
  REQUIRE(members_are({&nodes[0], &nodes[1], &nodes[2]}, ids, 15s));
  // A user of n3's, streamed entering at n1 (handed to n3) and at n3 itself.
  auto owned_by_n3 = std::find_if(users.begin(), users.end(), [&](const std::string& u) {
    return *sshpool::rendezvous::owner(u, ids) == "n3";
  });
  REQUIRE(owned_by_n3 != users.end());
  const auto chat = "/u/" + *owned_by_n3 + "/api/chat";
  http_client via_n1{nodes[0].port()};
  http_client at_n3{nodes[2].port()};
  via_n1.send_request("POST", chat, {}, "{}");
  at_n3.send_request("POST", chat, {}, "{}");
  auto relayed = via_n1.read_head();
  auto direct = at_n3.read_head();
  REQUIRE(relayed.status == 200);
  REQUIRE(direct.status == 200);

  nodes[2].proc->signal(SIGTERM);
  // n3 tells its peers it leaves before it drains ("left", not "lost" at the heartbeat
  // deadline): they stop sending it work at once.
  CHECK(nodes[0].proc->wait_for_output("node 'n3' left", 5s, true));
  CHECK(nodes[1].proc->wait_for_output("node 'n3' left", 5s, true));
  CHECK(members_are({&nodes[0], &nodes[1]}, {"n1", "n2"}, 1s));
  CHECK(all_served({&nodes[0], &nodes[1]}, users, 10s));
  // The drain lets the requests in flight finish, the one handed over by n1 too.
  for (auto* stream : {&relayed, &direct}) {
    (stream == &relayed ? via_n1 : at_n3).read_body(*stream, 20s);
    INFO((stream == &relayed ? "entered at n1" : "entered at n3") << ": " << stream->body);
    CHECK_FALSE(stream->truncated);
    CHECK(std::count(stream->body.begin(), stream->body.end(), '\n') ==
          static_cast<long>(tokens + 1)); // every token and the summary line
  }
  CHECK(nodes[2].proc->wait_exit(30s) == 0);
  CHECK(nodes[2].proc->out().find("shutdown report:") != std::string::npos);
}
