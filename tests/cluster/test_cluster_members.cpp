// Cluster membership (issue #17, item 1) with real node processes (tests/support/
// cluster_node.cpp: an engine as a cluster node, printing the members it sees) on loopback,
// over CAF's middleman with mutual TLS from a CA made at test time: three nodes see each
// other; a node killed is counted down within the heartbeat deadline by the others and is a
// member again once restarted; a node with a certificate of another CA, a TLS client without
// a certificate, and a node with a duplicate id are refused; a drained node leaves at once;
// a node cut off in its own network namespace is counted down within the deadline and comes
// back when the network does. In process: an engine does not start as a node without CAF's
// modules or with TLS files that do not serve.
#include <catch2/catch.hpp>

#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "sshpool/engine.hpp"
#include "support/child_process.hpp"
#include "support/netns.hpp"
#include "support/pki.hpp"
#include "support/timing.hpp"

using namespace sshpool::test;
using namespace std::chrono_literals;

namespace {

/// The nodes' heartbeat: probed every 200 ms, counted down after 1 s without an answer.
constexpr auto heartbeat_interval = 200ms;
constexpr auto heartbeat_timeout = 1000ms;
/// What the 2-core CI machine may add to the deadline (scheduling, the test's 20 ms polls).
constexpr auto margin = 1000ms;

/// The cluster CA with certificates n1..n4, and a foreign CA with one certificate.
struct cluster_pki {
  temp_dir dir{"sshpool-cluster"};
  test_ca ca{dir, "ca"};
  test_ca foreign{dir, "foreign"};

  cluster_pki() {
    for (auto n : {"n1", "n2", "n3", "n4"})
      ca.issue(n, n);
    foreign.issue("intruder", "n9");
  }
};

/// Node processes and what they print.
struct cluster {
  cluster_pki pki;
  std::map<std::string, std::string> addresses;
  std::map<std::string, std::unique_ptr<logged_process>> nodes;
  int runs = 0;

  /// Starts node `id` listening on `address`, with the peers `peers`, the certificate
  /// `cert` (of the cluster CA unless it is "intruder"), after `prefix` (e.g. ip netns exec),
  /// as nodes[key] (`id` if empty). Returns once it printed "ready" (or failed).
  void start(const std::string& id, const std::string& address,
             const std::vector<std::string>& peers, const std::string& cert,
             std::vector<std::string> prefix = {}, const std::string& key = "") {
    auto& d = pki.dir.path();
    auto args = std::move(prefix);
    for (auto a :
         {std::string{SSHPOOL_CLUSTER_NODE_BINARY}, std::string{"--id"}, id,
          std::string{"--listen"}, address, std::string{"--ca"}, pki.ca.ca, std::string{"--cert"},
          d + "/" + cert + ".pem", std::string{"--key"}, d + "/" + cert + ".key",
          std::string{"--interval"}, std::to_string(heartbeat_interval.count()),
          std::string{"--timeout"}, std::to_string(heartbeat_timeout.count())})
      args.push_back(a);
    for (auto& p : peers) {
      args.push_back("--peer");
      args.push_back(p);
    }
    auto log = d + "/" + id + "-" + std::to_string(++runs) + ".log";
    auto& proc = nodes[key.empty() ? id : key];
    proc.reset(); // a previous run of the same id is killed
    proc = std::make_unique<logged_process>(log, args);
    auto& p = *proc;
    REQUIRE(eventually([&] {
      auto out = p.output();
      return out.find("ready\n") != std::string::npos || out.find("error:") != std::string::npos;
    }));
    INFO(p.output());
    REQUIRE(p.output().find("ready\n") != std::string::npos);
  }

  /// Three nodes n1..n3 on loopback, each configured with the other two.
  void start_three() {
    for (auto n : {"n1", "n2", "n3"})
      addresses[n] = "127.0.0.1:" + std::to_string(free_port());
    for (auto n : {"n1", "n2", "n3"})
      start(n, addresses[n], peers_of(n), n);
  }

  std::vector<std::string> peers_of(const std::string& id) const {
    std::vector<std::string> out;
    for (auto& [n, a] : addresses)
      if (n != id)
        out.push_back(a);
    return out;
  }

  /// The members node `id` printed last.
  std::string members(const std::string& id) const {
    auto out = nodes.at(id)->output();
    auto at = out.rfind("members ");
    if (at == std::string::npos)
      return "";
    return out.substr(at + 8, out.find('\n', at) - at - 8);
  }

  /// Waits until node `id` sees `expected` (up to `limit`).
  bool sees(const std::string& id, const std::string& expected,
            std::chrono::milliseconds limit = 10s) const {
    return eventually([&] { return members(id) == expected; }, limit);
  }

  std::string output(const std::string& id) const { return nodes.at(id)->output(); }

  /// What node `id` printed last of its link to `address`: "ID up|down CONNECTS FAILURES".
  std::string link(const std::string& id, const std::string& address) const {
    auto out = output(id);
    auto at = out.rfind("peer " + address + " ");
    if (at == std::string::npos)
      return "";
    at += 6 + address.size();
    return out.substr(at, out.find('\n', at) - at);
  }

  /// The failures counted on that link (0 if none printed).
  int failures(const std::string& id, const std::string& address) const {
    auto l = link(id, address);
    return l.empty() ? 0 : std::stoi(l.substr(l.rfind(' ') + 1));
  }
};

/// A TLS 1.2 handshake with the node at 127.0.0.1:`port`, trusting the cluster CA, with the
/// client certificate `cert` (none if empty); true if it completed.
bool tls_handshake(const cluster& c, std::uint16_t port, const std::string& cert) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx{SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free};
  REQUIRE(ctx);
  SSL_CTX_set_max_proto_version(ctx.get(), TLS1_2_VERSION);
  REQUIRE(SSL_CTX_load_verify_locations(ctx.get(), c.pki.ca.ca.c_str(), nullptr) == 1);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (!cert.empty()) {
    auto base = c.pki.dir.path() + "/" + cert;
    REQUIRE(SSL_CTX_use_certificate_chain_file(ctx.get(), (base + ".pem").c_str()) == 1);
    REQUIRE(SSL_CTX_use_PrivateKey_file(ctx.get(), (base + ".key").c_str(), SSL_FILETYPE_PEM) == 1);
  }
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl{SSL_new(ctx.get()), SSL_free};
  SSL_set_fd(ssl.get(), fd);
  bool ok = SSL_connect(ssl.get()) == 1;
  // In TLS 1.2 the server's verdict on the client certificate comes with its Finished;
  // a refused client reads an alert (or the close) instead of the node's first bytes.
  if (ok) {
    char byte;
    ok = SSL_peek(ssl.get(), &byte, 1) > 0;
  }
  ::close(fd);
  return ok;
}

std::uint16_t port_of(const std::string& address) {
  return static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
}

} // namespace

TEST_CASE("three nodes see each other; a killed node is counted down within the heartbeat "
          "deadline and is a member again once restarted",
          "[cluster]") {
  cluster c;
  c.start_three();
  for (auto n : {"n1", "n2", "n3"}) {
    INFO(n << ": " << c.output(n));
    CHECK(c.sees(n, "n1,n2,n3"));
  }
  auto t0 = std::chrono::steady_clock::now();
  c.nodes.at("n3")->signal(SIGKILL);
  for (auto n : {"n1", "n2"}) {
    INFO(n << ": " << c.output(n));
    CHECK(c.sees(n, "n1,n2", heartbeat_timeout + margin));
    CHECK(c.output(n).find("node 'n3' lost") != std::string::npos);
  }
  INFO("counted down after " << ms_since(t0) << " ms");
  CHECK(ms_since(t0) <= ms(heartbeat_timeout + margin));
  c.start("n3", c.addresses["n3"], c.peers_of("n3"), "n3");
  for (auto n : {"n1", "n2", "n3"}) {
    INFO(n << ": " << c.output(n));
    CHECK(c.sees(n, "n1,n2,n3"));
  }
  // n1's link to n3: connected twice, lost at least once (and maybe refused while down).
  INFO(c.output("n1"));
  CHECK(eventually([&] { return c.link("n1", c.addresses["n3"]).rfind("n3 up 2 ", 0) == 0; }));
  CHECK(c.failures("n1", c.addresses["n3"]) >= 1);
}

TEST_CASE("a node of another CA, a TLS client without a certificate and a duplicate node id "
          "are refused and never members",
          "[cluster]") {
  cluster c;
  auto intruder_address = "127.0.0.1:" + std::to_string(free_port());
  c.addresses["n1"] = "127.0.0.1:" + std::to_string(free_port());
  c.addresses["n2"] = "127.0.0.1:" + std::to_string(free_port());
  c.start("n1", c.addresses["n1"], {c.addresses["n2"], intruder_address}, "n1");
  c.start("n2", c.addresses["n2"], {c.addresses["n1"], intruder_address}, "n2");
  CHECK(c.sees("n1", "n1,n2"));
  CHECK(c.sees("n2", "n1,n2"));
  // The intruder trusts the cluster CA, but its own certificate is of another CA.
  c.start("n9", intruder_address, {c.addresses["n1"], c.addresses["n2"]}, "intruder");
  // It tried both, and both tried it, three times over.
  auto tried = [&](const std::string& id, const std::string& address) {
    return c.failures(id, address) >= 3;
  };
  CHECK(
      eventually([&] { return tried("n9", c.addresses["n1"]) && tried("n9", c.addresses["n2"]); }));
  CHECK(eventually([&] { return tried("n1", intruder_address) && tried("n2", intruder_address); }));
  CHECK(c.members("n9") == "n9");
  for (auto n : {"n1", "n2"}) {
    INFO(c.output(n));
    CHECK(c.output(n).find("'n9'") == std::string::npos);
    CHECK(c.members(n) == "n1,n2");
    // The refusals did not disturb the members' own connection (see cluster_modules.cpp:
    // CAF's OpenSSL session and the thread's error queue).
    CHECK(c.output(n).find("lost") == std::string::npos);
  }
  // The TLS layer itself: without a certificate, or with the intruder's, the handshake
  // fails; with a certificate of the cluster CA it completes (the control).
  auto port = port_of(c.addresses["n1"]);
  CHECK_FALSE(tls_handshake(c, port, ""));
  CHECK_FALSE(tls_handshake(c, port, "intruder"));
  CHECK(tls_handshake(c, port, "n4"));
  // A second process calling itself n2 (with a valid certificate) is refused by n1, which
  // has a live n2 of another process.
  auto dup_address = "127.0.0.1:" + std::to_string(free_port());
  c.start("n2", dup_address, {c.addresses["n1"]}, "n4", {}, "n2-again");
  CHECK(eventually([&] { return c.failures("n2-again", c.addresses["n1"]) >= 1; }));
  INFO(c.output("n1"));
  CHECK(c.output("n1").find("refused node 'n2' (" + dup_address + "): duplicate node id") !=
        std::string::npos);
  CHECK(c.members("n2-again") == "n2");
  CHECK(c.members("n1") == "n1,n2");
}

TEST_CASE("a drained node leaves at once: the others drop it before any heartbeat deadline",
          "[cluster]") {
  cluster c;
  c.start_three();
  for (auto n : {"n1", "n2", "n3"})
    CHECK(c.sees(n, "n1,n2,n3"));
  auto t0 = std::chrono::steady_clock::now();
  c.nodes.at("n3")->signal(SIGTERM);
  for (auto n : {"n1", "n2"}) {
    INFO(n << ": " << c.output(n));
    CHECK(c.sees(n, "n1,n2", heartbeat_timeout));
    CHECK(c.output(n).find("node 'n3' left") != std::string::npos);
    CHECK(c.output(n).find("node 'n3' lost") == std::string::npos);
  }
  INFO("dropped after " << ms_since(t0) << " ms");
  CHECK(ms_since(t0) < ms(heartbeat_timeout));
  auto code = c.nodes.at("n3")->wait(10s);
  INFO(c.output("n3"));
  REQUIRE(code);
  CHECK(*code == 0);
  CHECK(c.output("n3").find("drained") != std::string::npos);
}

TEST_CASE("a node cut off in its own network namespace is counted down within the heartbeat "
          "deadline, and is a member again when the network is back",
          "[cluster][netns]") {
  SSHPOOL_TEST_NETNS(ns)
  cluster c;
  c.addresses["n1"] = ns.host_address() + ":" + std::to_string(free_port());
  c.addresses["n2"] = ns.host_address() + ":" + std::to_string(free_port());
  c.addresses["n3"] = ns.ns_address() + ":" + std::to_string(free_port());
  c.start("n1", c.addresses["n1"], c.peers_of("n1"), "n1");
  c.start("n2", c.addresses["n2"], c.peers_of("n2"), "n2");
  c.start("n3", c.addresses["n3"], c.peers_of("n3"), "n3",
          {"/usr/sbin/ip", "netns", "exec", ns.name()});
  for (auto n : {"n1", "n2", "n3"}) {
    INFO(n << ": " << c.output(n));
    CHECK(c.sees(n, "n1,n2,n3"));
  }
  auto t0 = std::chrono::steady_clock::now();
  ns.cut();
  for (auto n : {"n1", "n2"}) {
    INFO(n << ": " << c.output(n));
    CHECK(c.sees(n, "n1,n2", heartbeat_timeout + margin));
    // Nothing closed the connection: the heartbeat deadline found the cut.
    CHECK(c.output(n).find("node 'n3' lost (no heartbeat answer within 1000 ms)") !=
          std::string::npos);
  }
  auto detected = ms_since(t0);
  INFO("counted down after " << detected << " ms");
  CHECK(detected <= ms(heartbeat_timeout + margin));
  CHECK(c.sees("n3", "n3", heartbeat_timeout + margin));
  ns.restore();
  for (auto n : {"n1", "n2", "n3"}) {
    INFO(n << ": " << c.output(n));
    CHECK(c.sees(n, "n1,n2,n3", 20s));
  }
}

TEST_CASE("an engine does not start as a cluster node without CAF's modules, or with TLS files "
          "that do not serve",
          "[cluster]") {
  cluster_pki pki;
  auto& d = pki.dir.path();
  sshpool::engine_config cfg;
  cfg.scheduler_threads = 1;
  cfg.reactor_threads = 1;
  cfg.cluster.node_id = "n1";
  cfg.cluster.listen = "127.0.0.1:" + std::to_string(free_port());
  cfg.cluster.ca_file = pki.ca.ca;
  cfg.cluster.cert_file = d + "/n1.pem";
  cfg.cluster.key_file = d + "/n1.key";
  auto refusal = [](auto make) {
    try {
      make();
    } catch (const std::invalid_argument& e) {
      return std::string{e.what()};
    }
    return std::string{"started"};
  };
  // A service's actor system without add_cluster_modules.
  caf::actor_system_config plain;
  sshpool::add_message_types(plain);
  caf::actor_system sys{plain};
  CHECK_THAT(refusal([&] {
               sshpool::engine e{sys, cfg};
             }),
             Catch::Contains("no middleman (use add_cluster_modules)"));
  // Another certificate's key; a file that is not PEM.
  auto wrong_key = cfg;
  wrong_key.cluster.key_file = d + "/n2.key";
  auto wrong = refusal([&] { sshpool::engine e{wrong_key}; });
  CHECK_THAT(wrong, Catch::Contains("cluster.key_file " + d + "/n2.key: cannot load"));
  CHECK_THAT(wrong, Catch::Contains("key values mismatch"));
  auto not_pem = cfg;
  not_pem.cluster.ca_file = pki.dir.write("junk.pem", "not a certificate\n");
  CHECK_THAT(refusal([&] { sshpool::engine e{not_pem}; }), Catch::Contains("cluster.ca_file"));
  // The control: the same settings start a node (alone), which sees itself.
  sshpool::engine node{cfg};
  auto status = node.cluster_status();
  REQUIRE(status);
  CHECK(status->node_id == "n1");
  CHECK(status->members == std::vector<std::string>{"n1"});
  // Not a cluster node: no status.
  sshpool::engine_config alone;
  alone.scheduler_threads = 1;
  alone.reactor_threads = 1;
  CHECK_FALSE(sshpool::engine{alone}.cluster_status());
}
