// Routing across cluster nodes (issue #17): node processes (routing_node.cpp) publish their
// supervisors on CAF's middleman; the test forms the cluster itself (each node connects to
// the others' supervisors and its supervisor gets a cluster_view), as the cluster actor
// does. One sshd and one backend serve every user; rendezvous hashing picks each user's
// owner. What is checked: a user owned by another node is served through the owner's
// connections (the entry node holds none), closed and drained there (a consumer that holds its
// acks holds the owner's connection back: unacknowledged bytes stay bounded), errors keep
// their errc, releases keep their rules, killing the owner mid-request fails that request
// with connection_lost at once and the next acquire is served by the new owner, the killed
// node's leases on a survivor go back, and a node that stops owning a busy user claims it
// until it is idle. The last case runs the engine's own cluster actor instead (mutual TLS,
// heartbeats): routing through it, and a killed owner replaced within the heartbeat deadline.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "backend/http_backend.hpp"
#include "rendezvous.hpp"
#include "sshpool/error.hpp"
#include "support/child_process.hpp"
#include "support/os.hpp"
#include "support/pki.hpp"
#include "support/test_sshd.hpp"
#include "support/timing.hpp"

extern char** environ;

namespace sshpool::test {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

/// A routing_node process: commands on its stdin, tagged answers on its stdout.
class node_process {
public:
  node_process(std::string id, const std::vector<std::string>& settings) : id_(std::move(id)) {
    int in[2];
    int out[2];
    REQUIRE(pipe2(in, O_CLOEXEC) == 0);
    REQUIRE(pipe2(out, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::vector<std::string> args{ROUTING_NODE, id_};
    args.insert(args.end(), settings.begin(), settings.end());
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    REQUIRE(posix_spawn(&pid_, ROUTING_NODE, &actions, nullptr, argv.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    in_ = in[1];
    out_ = out[0];
    auto ready = wait("ready", 20s);
    port_ = static_cast<std::uint16_t>(std::stoi(ready));
  }

  ~node_process() {
    close(in_); // EOF: the node ends
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(out_);
  }

  node_process(const node_process&) = delete;
  node_process& operator=(const node_process&) = delete;

  const std::string& id() const { return id_; }
  std::uint16_t port() const { return port_; }

  /// Sends a command; returns the tag its answer will carry.
  std::string start(const std::string& command) {
    auto tag = "c" + std::to_string(++tags_);
    auto line = tag + ' ' + command + '\n';
    REQUIRE(write(in_, line.data(), line.size()) == static_cast<ssize_t>(line.size()));
    return tag;
  }

  /// The answer tagged `tag` (its text after the tag), waiting up to `bound`.
  std::string wait(const std::string& tag, std::chrono::milliseconds bound) {
    auto deadline = clock_type::now() + bound;
    for (;;) {
      if (auto i = answers_.find(tag); i != answers_.end()) {
        auto answer = i->second;
        answers_.erase(i);
        return answer;
      }
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
      INFO("node " << id_ << " did not answer " << tag);
      REQUIRE(left.count() > 0);
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0)
        continue;
      std::string more;
      REQUIRE(read_some(out_, more));
      buffer_ += more;
      for (auto nl = buffer_.find('\n'); nl != std::string::npos; nl = buffer_.find('\n')) {
        auto line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        auto space = line.find(' ');
        answers_[line.substr(0, space)] = line.substr(space + 1);
      }
    }
  }

  /// Runs a command and returns its answer.
  std::string call(const std::string& command, std::chrono::milliseconds bound = 30s) {
    return wait(start(command), bound);
  }

  /// Sends `sig` to the process.
  void signal(int sig) { kill(pid_, sig); }

  /// Kills the process (SIGKILL) and reaps it.
  void kill_now() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

private:
  std::string id_;
  pid_t pid_ = -1;
  int in_ = -1;
  int out_ = -1;
  std::uint16_t port_ = 0;
  std::uint64_t tags_ = 0;
  std::string buffer_;
  std::map<std::string, std::string> answers_;
};

/// "err CODE" of an errc, as a node answers it.
std::string err(errc code) {
  return "err " + std::to_string(static_cast<int>(code)) + ' ';
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

/// A number of a node's "ok A B C ..." answer.
std::uint64_t field(const std::string& answer, std::size_t index) {
  std::istringstream in{answer};
  std::string word;
  in >> word; // ok
  for (std::size_t i = 0; i <= index; ++i)
    in >> word;
  return std::stoull(word);
}

/// The first of PREFIX0, PREFIX1, ... that rendezvous hashing gives to `node` in `members`.
std::string user_owned_by(const std::string& node, const std::vector<std::string>& members,
                          const std::string& prefix = "user-") {
  for (int i = 0;; ++i) {
    auto user = prefix + std::to_string(i);
    if (rendezvous::owner(user, members) == node)
      return user;
  }
}

/// Users `near` (owned by n1) and `far` (owned by n2) of nodes n1 and n2, set on both.
struct two_users {
  test_sshd sshd;
  demo::http_backend backend{demo::http_backend::options{"backend-a"}};
  std::vector<std::string> members{"n1", "n2"};
  std::string near = user_owned_by("n1", members);
  std::string far = user_owned_by("n2", members);

  /// Sets both users on `n`.
  void set_users(node_process& n) {
    auto ep = sshd.make_endpoint(backend.port());
    std::ostringstream args;
    args << ep.host << ' ' << ep.port << ' ' << ep.username << ' ' << ep.identity_file << ' '
         << ep.known_hosts_file << ' ' << backend.port();
    for (auto& user : {near, far})
      REQUIRE(n.call("endpoint " + user + ' ' + args.str()) == "ok");
  }
};

/// Two nodes n1 and n2 that know each other, users `near` (owned by n1) and `far` (owned by
/// n2) set on both, served by one sshd and one backend.
struct two_nodes : two_users {
  /// A user set on no node, owned by n2.
  std::string nobody = user_owned_by("n2", members, "nobody-");
  node_process n1;
  node_process n2;

  explicit two_nodes(const std::vector<std::string>& settings = {})
      : n1("n1", settings), n2("n2", settings) {
    set_users(n1);
    set_users(n2);
    REQUIRE(n1.call("peer n2 " + std::to_string(n2.port())) == "ok");
    REQUIRE(n2.call("peer n1 " + std::to_string(n1.port())) == "ok");
    REQUIRE(n1.call("view n1 n2") == "ok");
    REQUIRE(n2.call("view n1 n2") == "ok");
  }
};

TEST_CASE("a user owned by another node is served through the owner's connections", "[cluster]") {
  two_nodes c;
  CHECK(c.n1.call("get " + c.far + " /bytes/5000") == "ok 200 5000");
  // Only the owner holds SSH connections for the user.
  CHECK(c.n1.call("conns") == "ok 0");
  CHECK(c.n2.call("conns") == "ok 1");
  // The owner's own callers share that connection; the other node serves its own users.
  CHECK(c.n2.call("get " + c.far + " /bytes/10") == "ok 200 10");
  CHECK(c.n2.call("conns") == "ok 1");
  CHECK(c.n1.call("get " + c.near + " /bytes/10") == "ok 200 10");
  CHECK(c.n1.call("conns") == "ok 1");
  // remote_acquires, failures, served_acquires, served_leases (released: none held).
  CHECK(c.n1.call("counters") == "ok 1 0 0 0");
  CHECK(c.n2.call("counters") == "ok 0 0 1 0");
  // Closing and draining a user from any node reach its owner's connections.
  CHECK(c.n1.call("close " + c.far) == "ok 1");
  CHECK(c.n2.call("conns") == "ok 0");
  CHECK(c.n1.call("get " + c.far + " /bytes/1") == "ok 200 1");
  CHECK(c.n1.call("drainuser " + c.far) == "ok 1");
  CHECK(c.n2.call("conns") == "ok 0");
  CHECK(c.n1.call("conns") == "ok 1"); // its own user's connection stays
}

TEST_CASE("errors keep their errc across nodes, releases keep their rules", "[cluster]") {
  two_nodes c{{"conns=1", "channels=1", "waiters=1", "acquire_ms=1500", "connect_ms=500"}};
  // No endpoint for the user on its owner.
  CHECK(starts_with(c.n1.call("get " + c.nobody + " /"), err(errc::unknown_user)));
  // One lease takes the only channel, a second caller waits (and gets none in time), a
  // third is refused at once.
  REQUIRE(c.n1.call("hold " + c.far) == "ok");
  CHECK(c.n2.call("counters") == "ok 0 0 2 1");
  auto waiting = c.n1.start("get " + c.far + " /");
  REQUIRE(eventually([&] { return c.n2.call("counters") == "ok 0 0 3 1"; }, 5s));
  CHECK(starts_with(c.n1.call("get " + c.far + " /"), err(errc::pool_exhausted)));
  CHECK(starts_with(c.n1.wait(waiting, 10s), err(errc::pool_exhausted)));
  // A request on the relayed lease, then its releases: as another user, twice.
  CHECK(c.n1.call("holdget /bytes/7") == "ok 200 7");
  CHECK(starts_with(c.n1.call("drop " + c.near), err(errc::wrong_user)));
  CHECK(c.n1.call("drop") == "ok");
  CHECK(starts_with(c.n1.call("drop"), err(errc::not_leased)));
  CHECK(c.n2.call("counters") == "ok 0 0 4 0");
  CHECK(c.n1.call("counters") == "ok 4 3 0 0");
  // An owner that does not answer (stopped): timeout once the acquire deadline passed.
  c.n2.signal(SIGSTOP);
  auto asked = clock_type::now();
  CHECK(starts_with(c.n1.call("get " + c.far + " /", 10s), err(errc::timeout)));
  CHECK(clock_type::now() - asked < 4s);
  c.n2.signal(SIGCONT);
}

TEST_CASE("a peer's calls of a node's own are refused; its routed calls are served", "[cluster]") {
  two_nodes c;
  auto refused = std::to_string(static_cast<int>(errc::invalid_argument));
  // n1 tells n2 a view (n1 owns everything), then stops it, reads and sets its pools.
  CHECK(c.n1.call("intrude n2") == "ok " + refused + ' ' + refused + ' ' + refused + ' ' + refused);
  // n2 kept its own view and runs: its user is served there, n1's through n1.
  CHECK(c.n2.call("get " + c.far + " /bytes/10") == "ok 200 10");
  CHECK(c.n2.call("get " + c.near + " /bytes/10") == "ok 200 10");
  CHECK(c.n2.call("counters") == "ok 1 0 0 0");
  CHECK(c.n1.call("counters") == "ok 0 0 1 0");
}

TEST_CASE("a streamed response crosses nodes with its backpressure", "[cluster]") {
  constexpr std::size_t window = 64 << 10;
  constexpr std::size_t body = 4 << 20;
  two_nodes c{{"window=" + std::to_string(window)}};
  // The sink acknowledges nothing for a second: the owner's connection stops reading.
  auto answer = c.n1.call("stream " + c.far + " /bytes/" + std::to_string(body) + " 1000");
  INFO(answer);
  REQUIRE(starts_with(answer, "ok "));
  CHECK(field(answer, 0) == body);
  CHECK(field(answer, 1) <= 3 * window);
  CHECK(c.n1.call("conns") == "ok 0");
}

TEST_CASE("the owner's death fails its requests at once; the new owner serves", "[cluster]") {
  two_nodes c;
  // n2 holds a lease n1 served, n1 a lease n2 serves with a request in flight on it.
  REQUIRE(c.n2.call("hold " + c.near) == "ok");
  CHECK(field(c.n1.call("counters"), 3) == 1);
  REQUIRE(c.n1.call("hold " + c.far) == "ok");
  auto before = c.backend.requests_received();
  auto in_flight = c.n1.start("holdget /slow/20000");
  REQUIRE(c.backend.wait_for_requests(before + 1, 10s));
  auto killed = clock_type::now();
  c.n2.kill_now();
  CHECK(starts_with(c.n1.wait(in_flight, 10s), err(errc::connection_lost)));
  CHECK(clock_type::now() - killed < 3s);
  // The relay quit with its connection: later calls on that lease fail at once too (as the
  // facade maps a gone connection); its release is accepted.
  CHECK(starts_with(c.n1.call("holdget /bytes/1", 2s), err(errc::connection_lost)));
  // The cluster actor would now tell n1 that n2 left.
  REQUIRE(c.n1.call("view n1") == "ok");
  CHECK(c.n1.call("drop") == "ok");
  CHECK(c.n1.call("get " + c.far + " /bytes/3") == "ok 200 3");
  CHECK(c.n1.call("conns") == "ok 2");
  // The lease n2 held goes back to n1's pool.
  CHECK(eventually([&] { return field(c.n1.call("counters"), 3) == 0; }, 5s));
}

TEST_CASE("a node that stops owning a busy user claims it until it is idle", "[cluster]") {
  two_nodes c;
  // Alone, n1 owns every user: it serves `far` itself and keeps a lease.
  REQUIRE(c.n1.call("view n1") == "ok");
  REQUIRE(c.n1.call("hold " + c.far) == "ok");
  CHECK(c.n1.call("conns") == "ok 1");
  // n2 joins: `far` hashes to n2, but n1 holds work for it: n1 claims it.
  REQUIRE(c.n1.call("view n1 n2") == "ok");
  REQUIRE(eventually([&] { return c.n1.call("claims") == "ok " + c.far; }, 5s));
  // Idle again: the claim is given up.
  CHECK(c.n1.call("drop") == "ok");
  CHECK(eventually([&] { return c.n1.call("claims") == "ok"; }, 5s));
}

TEST_CASE("a member's hello with another node's handles or a second node id is refused",
          "[cluster]") {
  temp_dir pki{"sshpool-cluster-pki"};
  test_ca ca{pki};
  ca.issue("n1", "n1");
  ca.issue("n2", "n2");
  auto p1 = free_port();
  node_process n1{"n1", {"listen=" + std::to_string(p1), "pki=" + pki.path()}};
  node_process n2{"n2", {"listen=" + std::to_string(free_port()), "pki=" + pki.path()}};
  auto refused = err(errc::invalid_argument);
  auto to_n1 = "hello " + std::to_string(p1) + ' ';
  // n1's own handles under another id: n1 would route that id's users to itself.
  CHECK(starts_with(n2.call(to_n1 + "ghost theirs"), refused));
  // n2 joins as x1 (its own handles), then tries a second id for a second share of users.
  CHECK(n2.call(to_n1 + "x1 mine") == "ok");
  CHECK(starts_with(n2.call(to_n1 + "x2 mine"), refused));
  auto members = n1.call("members");
  CHECK(members.find("x2") == std::string::npos);
  CHECK(members.find("ghost") == std::string::npos);
}

TEST_CASE("the engine's cluster actor forms the cluster the routing follows", "[cluster]") {
  temp_dir pki{"sshpool-cluster-pki"};
  test_ca ca{pki};
  ca.issue("n1", "n1");
  ca.issue("n2", "n2");
  auto p1 = std::to_string(free_port());
  auto p2 = std::to_string(free_port());
  two_users u;
  node_process n1{"n1", {"listen=" + p1, "peers=" + p2, "pki=" + pki.path()}};
  node_process n2{"n2", {"listen=" + p2, "peers=" + p1, "pki=" + pki.path()}};
  u.set_users(n1);
  u.set_users(n2);
  REQUIRE(eventually(
      [&] { return n1.call("members") == "ok n1 n2" && n2.call("members") == "ok n1 n2"; }, 10s));
  CHECK(n1.call("get " + u.far + " /bytes/100") == "ok 200 100");
  CHECK(n1.call("conns") == "ok 0");
  CHECK(n2.call("conns") == "ok 1");
  CHECK(n1.call("cstats") == "ok 1 0 0 0");
  CHECK(n2.call("cstats") == "ok 0 0 1 0");
  // The owner dies with a request in flight on a lease of n1.
  REQUIRE(n1.call("hold " + u.far) == "ok");
  auto before = u.backend.requests_received();
  auto in_flight = n1.start("holdget /slow/20000");
  REQUIRE(u.backend.wait_for_requests(before + 1, 10s));
  auto killed = clock_type::now();
  n2.kill_now();
  CHECK(starts_with(n1.wait(in_flight, 10s), err(errc::connection_lost)));
  // Within the heartbeat deadline (1 s here) n1 alone owns every user and serves them.
  REQUIRE(eventually([&] { return n1.call("members") == "ok n1"; }, 5s));
  CHECK(clock_type::now() - killed < 3s);
  CHECK(n1.call("get " + u.far + " /bytes/5") == "ok 200 5");
  CHECK(n1.call("conns") == "ok 1");
}

} // namespace
} // namespace sshpool::test
