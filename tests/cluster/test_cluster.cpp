// sshpool-demo as a cluster node (issue #17), end to end: three real gateway processes on
// loopback, each with a "cluster" section (mutual TLS with a cluster CA made by the openssl
// CLI at run time), the same users on every node, one private sshd and one in-process
// backend. Checked here: the cluster section's settings (exit 2 naming the key;
// --check-config shows it); nine users served through every node with one set of SSH
// connections per user (on its rendezvous owner only, counted from every node's /stats);
// /stats and /metrics (promtool) of the membership and the routed leases; a node whose
// certificate another CA signed kept out of the cluster; and a node drained with SIGTERM,
// which leaves before it drains its streams in flight. Faults: test_cluster_faults.cpp.
#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <memory>
#include <vector>

#include "cluster/cluster_nodes.hpp"
#include "rendezvous.hpp"

using namespace sshpool::test;
using namespace sshpool::test::cluster;

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
      {R"({"node_id":"n1",)" + files + "}", "cluster.listen is missing"},
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
       "cluster.ca_file is missing"},
      {R"({"node_id":"n1","listen":"10.1.2.3:4100","ca_file":"cluster-ca.pem","cert_file":)"
       R"("n1.pem"})",
       "cluster.key_file is missing"},
      {R"({"node_id":"n1","listen":"127.0.0.1:4100","ca_file":"absent.pem","cert_file":)"
       R"("n1.pem","key_file":"n1.key"})",
       "cluster.ca_file"},
      {R"({"node_id":"n1","listen":"127.0.0.1:4100",)" + files + R"(,"heartbeat_interval":0})",
       "cluster.heartbeat_interval"},
      {R"({"node_id":"n1","listen":"127.0.0.1:4100",)" + files + R"(,"heartbeat_timeout":"x"})",
       "cluster.heartbeat_timeout"},
      {R"({"node_id":"n1","listen":"127.0.0.1:4100",)" + files +
           R"(,"heartbeat_interval":500,"heartbeat_timeout":500})",
       "cluster.heartbeat_timeout"},
      {R"({"node_id":"n1","listen":"127.0.0.1:4100","peers":["127.0.0.1:4100"],)" + files + "}",
       "cluster.peers"},
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
  three_nodes c{R"("max_connections_per_user":2)"};
  auto& dir = c.dir;
  auto& users = c.users;
  auto& ids = c.ids;
  auto& nodes = c.nodes;

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

TEST_CASE("a node drained with SIGTERM leaves first: its peers drop it at once, streams in "
          "flight through it complete whole, and its users are served by the others",
          "[cluster][shutdown]") {
  constexpr std::size_t tokens = 10;
  auto opts = quick_backend();
  opts.token_delay = 150ms;
  opts.tokens = tokens;
  three_nodes c{R"("shutdown_grace_period":20000)", opts};
  auto& users = c.users;
  auto& ids = c.ids;
  auto& nodes = c.nodes;
  // Three streams through n3: a user of n3's entering at n1 (handed to n3) and at n3
  // itself, and a user of n1's entering at n3 (handed to n1).
  auto owned_by_n3 = first_owned_by("n3", users, ids);
  auto owned_by_n1 = first_owned_by("n1", users, ids);
  REQUIRE(owned_by_n3 != users.end());
  REQUIRE(owned_by_n1 != users.end());
  struct stream {
    const char* what;
    http_client client;
    std::string user;
    http_response res;
  };
  std::vector<std::unique_ptr<stream>> streams;
  streams.emplace_back(
      new stream{"n3's user entering at n1", http_client{nodes[0].port()}, *owned_by_n3, {}});
  streams.emplace_back(
      new stream{"n3's user entering at n3", http_client{nodes[2].port()}, *owned_by_n3, {}});
  streams.emplace_back(
      new stream{"n1's user entering at n3", http_client{nodes[2].port()}, *owned_by_n1, {}});
  for (auto& s : streams)
    s->client.send_request("POST", "/u/" + s->user + "/api/chat", {}, "{}");
  for (auto& s : streams) {
    s->res = s->client.read_head();
    REQUIRE(s->res.status == 200);
  }

  nodes[2].proc->signal(SIGTERM);
  // n3 tells its peers it leaves before it drains ("left", not "lost" at the heartbeat
  // deadline): they stop sending it work at once.
  CHECK(nodes[0].proc->wait_for_output("node 'n3' left", 5s, true));
  CHECK(nodes[1].proc->wait_for_output("node 'n3' left", 5s, true));
  CHECK(members_are({&nodes[0], &nodes[1]}, {"n1", "n2"}, 1s));
  CHECK(all_served({&nodes[0], &nodes[1]}, users, 10s));
  // The drain lets the requests in flight finish, those handed over both ways too.
  for (auto& s : streams) {
    s->client.read_body(s->res, 20s);
    INFO(s->what << ": " << s->res.body);
    CHECK_FALSE(s->res.truncated);
    CHECK(std::count(s->res.body.begin(), s->res.body.end(), '\n') ==
          static_cast<long>(tokens + 1)); // every token and the summary line
  }
  CHECK(nodes[2].proc->wait_exit(30s) == 0);
  CHECK(nodes[2].proc->out().find("shutdown report:") != std::string::npos);
}
