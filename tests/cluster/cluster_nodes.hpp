// The cluster tests' nodes: sshpool-demo processes with a "cluster" section (the same users
// on every node, certificates of a test CA), started and killed by the test, in a network
// namespace if asked; their /stats read over HTTP (with curl inside a namespace); waits for
// a membership and for every user served; a load of bounded requests that counts calls left
// without an answer. Every wait is bounded.
//
// Thread-safety: none, but for load_loop, whose threads share only its counters.
#pragma once

#include <algorithm>
#include <atomic>
#include <csignal>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "backend/http_backend.hpp"
#include "gateway/gateway_harness.hpp"
#include "rendezvous.hpp"
#include "sshpool/text.hpp"
#include "support/child_process.hpp"
#include "support/pki.hpp"
#include "support/timing.hpp"

namespace sshpool::test::cluster {

using namespace std::chrono_literals;
using sshpool::demo::http_backend;
using json = nlohmann::json;

/// The users' names: u0 ... u(n-1).
inline std::vector<std::string> user_names(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i)
    out.push_back("u" + std::to_string(i));
  return out;
}

/// The first of `users` that `node_id` owns by rendezvous hashing over `ids`, or end.
inline std::vector<std::string>::const_iterator
first_owned_by(const std::string& node_id, const std::vector<std::string>& users,
               const std::vector<std::string>& ids) {
  return std::find_if(users.begin(), users.end(), [&](const std::string& u) {
    return *sshpool::rendezvous::owner(u, ids) == node_id;
  });
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
inline std::vector<node> make_nodes(const temp_dir& dir, const test_ca& ca, const test_sshd& sshd,
                                    const http_backend& backend,
                                    const std::vector<std::string>& users,
                                    const std::vector<std::string>& ids,
                                    const std::string& extra = {},
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
inline bool all_served(const std::vector<node*>& nodes, const std::vector<std::string>& users,
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

/// The lines of `text` that contain `what`.
inline std::string lines_with(const std::string& text, const std::string& what) {
  std::string out;
  for (std::size_t at = 0; at < text.size();) {
    auto end = std::min(text.find('\n', at), text.size());
    auto line = text.substr(at, end - at);
    if (line.find(what) != std::string::npos)
      out += line + "\n";
    at = end + 1;
  }
  return out;
}

/// Waits until every running node sees exactly the ids of `expected` as its members. If they
/// do not within `limit`, the next assertion shows what each node sees and its cluster log.
inline bool members_are(const std::vector<node*>& running, std::vector<std::string> expected,
                        std::chrono::milliseconds limit) {
  std::sort(expected.begin(), expected.end());
  bool whole = eventually(
      [&] {
        for (auto* n : running)
          if (n->members() != expected)
            return false;
        return true;
      },
      limit);
  if (!whole)
    for (auto* n : running) {
      auto seen = n->members();
      UNSCOPED_INFO("node " << n->id << " sees "
                            << (seen.empty() ? "nothing (its /stats does not answer)"
                                             : sshpool::text::join(seen, ","))
                            << "; its cluster log:\n"
                            << lines_with(n->proc->err(), "cluster:"));
    }
  return whole;
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
inline http_backend::options quick_backend() {
  http_backend::options opts;
  opts.name = "cluster-backend";
  return opts;
}

/// Three nodes n1, n2, n3 of one cluster on loopback for nine users u0 ... u8, on a private
/// sshd and one backend (`opts`), with `extra` settings; started, and seen as members by
/// each other (REQUIRE).
struct three_nodes {
  temp_dir dir;
  test_sshd sshd;
  http_backend backend;
  test_ca ca{dir, "cluster-ca"};
  std::vector<std::string> users = user_names(9);
  std::vector<std::string> ids = {"n1", "n2", "n3"};
  std::vector<node> nodes;

  explicit three_nodes(const std::string& extra = {}, http_backend::options opts = quick_backend())
      : backend(std::move(opts)) {
    nodes = make_nodes(dir, ca, sshd, backend, users, ids, extra);
    for (auto& n : nodes)
      n.start();
    REQUIRE(members_are(all(), ids, 15s));
  }
  std::vector<node*> all() { return {&nodes[0], &nodes[1], &nodes[2]}; }
};

} // namespace sshpool::test::cluster
