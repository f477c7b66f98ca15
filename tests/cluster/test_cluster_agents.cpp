// Reverse-mode agents in a cluster (issue #17), end to end: three sshpool-demo nodes (as in
// test_cluster.cpp), each with its own agent listener (one host key for all three, as behind
// a load balancer of the agent port) and the same users: an agent user, alice, whose machine
// dials in with the stock OpenSSH client (`ssh -N -R`, its key in every node's
// authorized_keys, the listeners' host key pinned), and two dial users beside her. Checked:
// an agent that dials in to a node that is not alice's rendezvous owner makes that node her
// owner on every node (the claim in every /stats), and requests entering at each node, whole
// and streamed, are served through that agent, no other node holding a connection for her;
// a second agent on another node stands by (the smaller node id's claim wins) and takes over
// when the first leaves; the agents gone, the claim is dropped everywhere and requests get
// agent_offline within acquire_timeout; the agent moving to another node takes the claim along;
// that node killed (SIGKILL), the survivors drop its claim within the heartbeat deadline and serve
// alice again once her agent redials one of them. Every wait polls /stats, bounded.
#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "cluster/cluster_nodes.hpp"
#include "rendezvous.hpp"
#include "support/agent_home.hpp"

using namespace sshpool::test;
using namespace sshpool::test::cluster;

namespace {

/// The port alice's agent gives to -R (virtual: nothing listens on it).
constexpr std::uint16_t alice_port = 8000;
/// The nodes' acquire_timeout and heartbeat_timeout (make_nodes), in ms.
constexpr long long acquire_timeout_ms = 3000;
constexpr long long heartbeat_timeout_ms = 1000;
constexpr std::size_t tokens = 8;

/// Three nodes n1, n2, n3 with agent listeners; agent user alice and dial users u0, u1;
/// started, each a member of all three (REQUIRE), the listeners' host key pinned for alice.
struct agent_cluster {
  temp_dir dir;
  test_sshd sshd;
  http_backend backend{quick_backend()};
  http_backend machine{[] {
    http_backend::options opts;
    opts.name = "alice-machine";
    opts.token_delay = 20ms;
    opts.tokens = tokens;
    return opts;
  }()};
  agent_home home;
  test_ca ca{dir, "cluster-ca"};
  std::vector<std::string> dial_users = user_names(2);
  std::vector<std::string> ids = {"n1", "n2", "n3"};
  std::vector<node> nodes;
  std::vector<std::uint16_t> agent_ports;

  agent_cluster() {
    nodes = make_nodes(dir, ca, sshd, backend, dial_users, ids);
    auto keys = dir.write("alice.keys", home.public_key() + "\n");
    for (auto& n : nodes) {
      auto cfg = json::parse(read_file(n.config));
      cfg["agent_listen"] = "127.0.0.1:0";
      cfg["agent_host_key"] = dir.path() + "/agent_host_key"; // made by the first node
      cfg["users"]["alice"] = {
          {"mode", "agent"}, {"authorized_keys_file", keys}, {"target_port", alice_port}};
      write_file(n.config, cfg.dump());
    }
    for (auto& n : nodes) {
      n.start();
      agent_ports.push_back(n.proc->agent_port());
      REQUIRE(agent_ports.back() != 0);
    }
    REQUIRE(members_are(all(), ids, 15s));
    auto host_key = nodes[0].stats()["agents"]["host_public_key"].get<std::string>();
    for (auto port : agent_ports)
      home.trust(port, host_key);
  }

  std::vector<node*> all() { return {&nodes[0], &nodes[1], &nodes[2]}; }

  /// Index of the node that owns alice by rendezvous hashing over all three.
  std::size_t hashed_owner() const {
    auto owner = *sshpool::rendezvous::owner("alice", ids);
    return static_cast<std::size_t>(std::find(ids.begin(), ids.end(), owner) - ids.begin());
  }

  /// alice's `ssh -N -R` against node `i`'s agent listener; waits until that node counts
  /// her agent (REQUIRE, with ssh's output).
  std::unique_ptr<logged_process> dial(std::size_t i) {
    auto agent = std::make_unique<logged_process>(
        home.log_file("agent"),
        home.ssh("alice", agent_ports[i],
                 {"-N", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=5", "-R",
                  std::to_string(alice_port) + ":127.0.0.1:" + std::to_string(machine.port())}));
    bool in = eventually([&] { return agents_on(nodes[i]) == 1; }, 10s);
    INFO("ssh says: " << agent->output());
    REQUIRE(in);
    return agent;
  }

  /// alice's agent sessions on `n`, from /stats.
  static int agents_on(const node& n) {
    auto stats = n.stats(); // kept: the loop walks a part of it
    for (auto& u : stats["pool"]["per_user"])
      if (u["user"] == "alice")
        return u["agents"].get<int>();
    return 0;
  }
};

/// The node that claims alice as `n`'s /stats shows it ("" if none; "?" if `n` is not there).
std::string claim_of(const node& n) {
  auto cluster = n.stats()["cluster"];
  if (!cluster.is_object())
    return "?";
  auto& directory = cluster["directory"];
  return directory.contains("alice") ? directory["alice"].get<std::string>() : "";
}

/// Waits until every node of `nodes` shows alice claimed by `claimer` ("" for no claim).
bool claimed_everywhere(const std::vector<node*>& nodes, const std::string& claimer,
                        std::chrono::milliseconds limit) {
  return eventually(
      [&] {
        for (auto* n : nodes)
          if (claim_of(*n) != claimer)
            return false;
        return true;
      },
      limit);
}

/// A GET and a streamed /api/chat for alice entering at `n`: both answered by her machine,
/// the stream whole (every token and the summary line).
void served_by_agent(const node& n) {
  INFO("entering at " << n.id);
  auto tags = fetch(n.port(), "GET", "/u/alice/api/tags");
  INFO("GET: " << tags.status << " " << tags.body);
  CHECK(tags.status == 200);
  CHECK(tags.header("X-Backend") == "alice-machine");
  http_client c{n.port()};
  c.send_request("POST", "/u/alice/api/chat", {{"Content-Type", "application/json"}},
                 R"({"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true})");
  auto stream = c.read_head();
  REQUIRE(stream.status == 200);
  CHECK(stream.header("X-Backend") == "alice-machine");
  c.read_body(stream, 20s);
  CHECK_FALSE(stream.truncated);
  CHECK(std::count(stream.body.begin(), stream.body.end(), '\n') == static_cast<long>(tokens + 1));
}

/// alice's SSH connections on each node of `nodes`: one on `with_agent`, none elsewhere.
void connections_only_on(const std::vector<node*>& nodes, const node& with_agent) {
  for (auto* n : nodes) {
    INFO("node " << n->id << " (the agent is on " << with_agent.id << ")");
    CHECK(n->connections("alice") == (n == &with_agent ? 1 : 0));
  }
}

} // namespace

TEST_CASE("an agent dialed in to a node that is not its user's owner: that node claims the user "
          "on every node, requests entering anywhere go through the agent; a second agent "
          "stands by; the agents gone, the claim is dropped everywhere and requests get "
          "agent_offline",
          "[cluster][agent]") {
  agent_cluster c;
  auto owner = c.hashed_owner();
  auto& with_agent = c.nodes[(owner + 1) % 3];
  auto agent = c.dial((owner + 1) % 3);

  CHECK(claimed_everywhere(c.all(), with_agent.id, 5s));
  for (auto* n : c.all())
    served_by_agent(*n);
  connections_only_on(c.all(), with_agent);
  // The other two nodes asked the agent's node for their leases (each keeps its lease for
  // the user's next request: at least one each).
  for (auto* n : c.all())
    if (n != &with_agent)
      CHECK(n->stats()["cluster"]["remote_acquires"].get<int>() >= 1);
  CHECK(with_agent.stats()["cluster"]["served_acquires"].get<int>() >= 2);
  CHECK(all_served(c.all(), c.dial_users, 10s));

  // A second agent of alice's, on her hashed owner: both nodes claim her, every node picks
  // the smaller node id; when that one's agent leaves, the other takes over.
  auto standby = c.dial(owner);
  auto* first = c.ids[owner] < with_agent.id ? &c.nodes[owner] : &with_agent;
  auto* other = first == &with_agent ? &c.nodes[owner] : &with_agent;
  CHECK(claimed_everywhere(c.all(), first->id, 5s));
  auto& leaving = first == &with_agent ? agent : standby;
  leaving->signal(SIGTERM);
  REQUIRE(leaving->wait(10s).has_value());
  CHECK(claimed_everywhere(c.all(), other->id, 3s));
  for (auto* n : c.all()) {
    auto tags = fetch(n->port(), "GET", "/u/alice/api/tags");
    CHECK(tags.status == 200);
    CHECK(tags.header("X-Backend") == "alice-machine");
  }
  connections_only_on(c.all(), *other);

  // The last agent leaves at once, with leases still kept by the gateways for alice's next
  // request (keep_idle, 100 ms): a relay quits with its remote connection, so the gateway
  // drops such a lease instead of failing that request with connection_lost.
  auto& last = first == &with_agent ? standby : agent;
  last->signal(SIGTERM);
  REQUIRE(last->wait(10s).has_value());
  auto gone_at = steady::now();
  CHECK(claimed_everywhere(c.all(), "", 3s));
  INFO("the claim was dropped everywhere " << ms_since(gone_at) << " ms after the agent left");
  CHECK(eventually([&] { return c.agents_on(*other) == 0; }, 3s));

  // A request entering at each node, all at once: the owner's pool waits acquire_timeout
  // for an agent, then answers agent_offline (503 with Retry-After).
  std::vector<std::unique_ptr<http_client>> clients;
  auto asked_at = steady::now();
  for (auto* n : c.all()) {
    clients.push_back(std::make_unique<http_client>(n->port()));
    clients.back()->send_request("GET", "/u/alice/api/tags");
  }
  for (std::size_t i = 0; i < clients.size(); ++i) {
    auto res = clients[i]->read_response(10s);
    auto elapsed = ms_since(asked_at);
    INFO("entering at " << c.ids[i] << ": " << res.status << " " << res.body << " after " << elapsed
                        << " ms");
    CHECK(res.status == 503);
    CHECK(res.header("Retry-After") != "");
    auto body = json::parse(res.body, nullptr, false);
    CHECK((body.is_object() && body["code"] == "agent_offline"));
    CHECK(elapsed < acquire_timeout_ms + 1500);
  }
}

TEST_CASE("an agent that moves to another node takes its claim along; that node killed "
          "(SIGKILL), the survivors drop its claim within the heartbeat deadline and serve the "
          "user again once the agent redials one of them",
          "[cluster][agent][faults]") {
  agent_cluster c;
  auto owner = c.hashed_owner();
  auto first = (owner + 1) % 3;
  auto second = (owner + 2) % 3;
  auto agent = c.dial(first);
  CHECK(claimed_everywhere(c.all(), c.ids[first], 5s));

  // The agent moves: the claim follows it.
  agent->signal(SIGTERM);
  REQUIRE(agent->wait(10s).has_value());
  agent = c.dial(second);
  CHECK(claimed_everywhere(c.all(), c.ids[second], 5s));
  CHECK(eventually([&] { return c.agents_on(c.nodes[first]) == 0; }, 3s));
  for (auto* n : c.all())
    served_by_agent(*n);
  connections_only_on(c.all(), c.nodes[second]);

  // The agent's node dies: the survivors drop it, and its claim with it.
  c.nodes[second].kill();
  auto killed_at = steady::now();
  std::vector<node*> survivors = {&c.nodes[owner], &c.nodes[first]};
  std::vector<std::string> survivor_ids = {c.ids[owner], c.ids[first]};
  CHECK(members_are(survivors, survivor_ids, std::chrono::milliseconds(heartbeat_timeout_ms) + 1s));
  CHECK(claimed_everywhere(survivors, "", std::chrono::milliseconds(heartbeat_timeout_ms) + 1s));
  INFO("the survivors dropped the claim " << ms_since(killed_at) << " ms after the kill");
  // The agent's ssh lost its server.
  CHECK(agent->wait(10s).has_value());

  // The agent redials a survivor that is not the hashed owner: served again through it.
  agent = c.dial(first);
  CHECK(claimed_everywhere(survivors, c.ids[first], 5s));
  for (auto* n : survivors)
    served_by_agent(*n);
  connections_only_on(survivors, c.nodes[first]);
  CHECK(all_served(survivors, c.dial_users, 10s));
}
