// Reverse mode, hostile or mistaken agents (issue 14, the SSH layer): everything an agent
// may not do is refused by the listener, with the stock OpenSSH client (and libssh's client
// for authentication methods OpenSSH will not try), counted by reason, and reaches no
// service: the backend behind the agents sees no connection. The host key file and the
// limits before authentication: login grace, max_startups, max_auth_tries, penalties.
#include <catch2/catch.hpp>

#include <libssh/libssh.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sstream>

#include "integration/agent_world.hpp"

using namespace sshpool;
using namespace std::chrono_literals;
using sshpool::ssh::agent_listener_stats;
using sshpool::ssh::agent_refusal;
using namespace sshpool::test;

namespace {

/// Everything the "sshpool" logger writes, from the first log line of the process on.
std::ostringstream& captured_log() {
  static std::ostringstream out;
  return out;
}

/// Registered before any test runs, so the engine's logger (made on first use) is this one.
const bool logger_registered = [] {
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured_log());
  auto logger = std::make_shared<spdlog::logger>("sshpool", sink);
  logger->set_level(spdlog::level::debug);
  spdlog::register_logger(logger);
  return true;
}();

/// Waits until the listener counted `n` more of `why` than in `before`.
bool counted(agent_world& w, const agent_listener_stats& before, agent_refusal why,
             std::uint64_t n = 1) {
  return w.wait_stats([&](const agent_listener_stats& s) {
    return s.refused_for(why) >= before.refused_for(why) + n;
  });
}

/// Reads from `fd` until EOF or `timeout`: what came.
std::string read_all(int fd, std::chrono::milliseconds timeout) {
  std::string out;
  char buf[512];
  pollfd p{fd, POLLIN, 0};
  while (::poll(&p, 1, static_cast<int>(timeout.count())) > 0) {
    auto n = ::read(fd, buf, sizeof buf);
    if (n <= 0)
      break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

/// Whether the peer of `fd` closed it within `timeout` (what it sent before is read).
bool closed_by_peer(int fd, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[512];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
      return false;
    if (::recv(fd, buf, sizeof buf, 0) <= 0)
      return true;
  }
}

/// An authentication attempt by libssh's client, which (unlike OpenSSH's) tries a method the
/// server does not offer: `method` is "password", "keyboard-interactive" or "none". The
/// result of ssh_userauth_*.
int libssh_attempt(agent_world& w, const std::string& user, const std::string& method) {
  ssh_session s = ssh_new();
  unsigned int port = w.listener->port();
  int quiet = SSH_LOG_NOLOG;
  bool no_config = false;
  ssh_options_set(s, SSH_OPTIONS_HOST, "127.0.0.1");
  ssh_options_set(s, SSH_OPTIONS_PORT, &port);
  ssh_options_set(s, SSH_OPTIONS_USER, user.c_str());
  ssh_options_set(s, SSH_OPTIONS_LOG_VERBOSITY, &quiet);
  ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &no_config);
  int rc = SSH_AUTH_ERROR;
  if (ssh_connect(s) == SSH_OK) {
    if (method == "password")
      rc = ssh_userauth_password(s, nullptr, "secret");
    else if (method == "keyboard-interactive")
      rc = ssh_userauth_kbdint(s, nullptr, nullptr);
    else
      rc = ssh_userauth_none(s, nullptr);
  }
  ssh_disconnect(s);
  ssh_free(s);
  return rc;
}

} // namespace

TEST_CASE("the host key is made 0600, is ssh-keygen's fingerprint, and is refused if exposed",
          "[agents][security]") {
  std::string fingerprint;
  std::string key_file;
  {
    agent_world w;
    key_file = w.dir + "/kept_host_key";
    auto opts = agent_world::options();
    opts.host_key_file = key_file;
    auto listener = ssh::agent_listener::start(
        opts, [](const std::string&) { return nullptr; }, [](ssh::agent_handle) {});
    REQUIRE(listener);
    struct stat st {};
    REQUIRE(::stat(key_file.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    fingerprint = (*listener)->fingerprint();
    CHECK(fingerprint.rfind("SHA256:", 0) == 0);
    test::logged_process keygen{w.dir + "/keygen.log", {"ssh-keygen", "-lf", key_file}};
    REQUIRE(keygen.wait(10s) == 0);
    CHECK(keygen.output().find(" " + fingerprint + " ") != std::string::npos);
    CHECK(keygen.output().find("(ED25519)") != std::string::npos);
    CHECK(captured_log().str().find(fingerprint) != std::string::npos); // logged at start
    (*listener)->stop();

    // Started again: the same key.
    auto again = ssh::agent_listener::start(
        opts, [](const std::string&) { return nullptr; }, [](ssh::agent_handle) {});
    REQUIRE(again);
    CHECK((*again)->fingerprint() == fingerprint);
    (*again)->stop();

    // Readable by others: refused, as sshd refuses it.
    REQUIRE(::chmod(key_file.c_str(), 0644) == 0);
    auto exposed = ssh::agent_listener::start(
        opts, [](const std::string&) { return nullptr; }, [](ssh::agent_handle) {});
    REQUIRE_FALSE(exposed);
    CHECK(exposed.error().code() == errc::invalid_argument);
    CHECK(exposed.error().message().find("mode 644") != std::string::npos);

    // Not ed25519: refused.
    auto rsa = w.dir + "/rsa_key";
    test::logged_process make{w.dir + "/keygen.log",
                              {"ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", rsa}};
    REQUIRE(make.wait(20s) == 0);
    opts.host_key_file = rsa;
    auto wrong_type = ssh::agent_listener::start(
        opts, [](const std::string&) { return nullptr; }, [](ssh::agent_handle) {});
    REQUIRE_FALSE(wrong_type);
    CHECK(wrong_type.error().message().find("not ed25519") != std::string::npos);
  }
}

TEST_CASE("the listener takes numeric IPv4 and IPv6 addresses only", "[agents][security]") {
  agent_world w;
  auto opts = agent_world::options();
  opts.host_key_file = w.dir + "/other_host_key";
  auto start = [&](const std::string& listen) {
    opts.listen = listen;
    return ssh::agent_listener::start(
        opts, [](const std::string&) { return nullptr; }, [](ssh::agent_handle) {});
  };
  for (auto bad : {"localhost:2222", "127.0.0.1", "[::1]", "127.0.0.1:port", ":2222"}) {
    auto refused = start(bad);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code() == errc::invalid_argument);
  }
  auto busy = start("127.0.0.1:" + std::to_string(w.listener->port()));
  REQUIRE_FALSE(busy);
  CHECK(busy.error().code() == errc::connect_failed);

  auto v6 = start("[::1]:0");
  if (!v6) {
    WARN("no IPv6 loopback here: " << v6.error().message());
    return;
  }
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 to{};
  to.sin6_family = AF_INET6;
  to.sin6_port = htons((*v6)->port());
  to.sin6_addr = in6addr_loopback;
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
  char banner[8];
  REQUIRE(::recv(fd, banner, sizeof banner, MSG_WAITALL) == 8);
  CHECK(std::string(banner, 8) == "SSH-2.0-");
  ::close(fd);
  CHECK((*v6)->wait_for(
      [](const agent_listener_stats& s) {
        return s.refused_for(agent_refusal::handshake_failed) == 1;
      },
      10s));
}

TEST_CASE("an agent gets no session: ssh gw true, -A and -X are refused", "[agents][security]") {
  agent_world w;
  w.allow("alice", {"id"}, {w.backend.port()});
  for (auto flags : std::vector<std::vector<std::string>>{{}, {"-A"}, {"-X"}}) {
    auto before = w.listener->stats();
    auto [code, out] = w.run("alice", flags, {"true"});
    CHECK(code == 255);
    CHECK(out.find("administratively prohibited") != std::string::npos);
    CHECK(w.listener->stats().refused_for(agent_refusal::session_channel) ==
          before.refused_for(agent_refusal::session_channel) + 1);
  }
  CHECK(w.backend.connections_accepted() == 0);
}

TEST_CASE("an agent never reaches into the gateway's network: -W, -L and -D are refused",
          "[agents][security]") {
  agent_world w;
  w.allow("alice", {"id"}, {w.backend.port()});
  auto target = "127.0.0.1:" + std::to_string(w.backend.port());

  auto before = w.listener->stats();
  auto [code, out] = w.run("alice", {"-W", target});
  CHECK(code == 255);
  CHECK(out.find("administratively prohibited") != std::string::npos);
  CHECK(counted(w, before, agent_refusal::direct_tcpip));

  // -L: the client listens, and opens direct-tcpip when someone connects.
  auto local = test::free_port();
  test::ssh_ready ready{w.dir, "local"};
  auto options = ready.options();
  options.insert(options.end(), {"-N", "-L", std::to_string(local) + ":" + target});
  test::logged_process forward_l{w.home.log_file("L"),
                                 w.home.ssh("alice", w.listener->port(), options)};
  REQUIRE(ready.wait(10s));
  before = w.listener->stats();
  int fd = test::connect_from("127.0.0.1", local);
  REQUIRE(fd >= 0);
  std::string get = "GET /info HTTP/1.1\r\nHost: x\r\n\r\n";
  ::send(fd, get.data(), get.size(), MSG_NOSIGNAL);
  CHECK(read_all(fd, 5s).empty()); // closed without an answer
  ::close(fd);
  CHECK(counted(w, before, agent_refusal::direct_tcpip));

  // -D: a SOCKS5 CONNECT to the backend through the agent's client.
  test::ssh_ready ready_d{w.dir, "socks"};
  options = ready_d.options();
  auto socks = test::free_port();
  options.insert(options.end(), {"-N", "-D", std::to_string(socks)});
  test::logged_process forward_d{w.home.log_file("D"),
                                 w.home.ssh("alice", w.listener->port(), options)};
  REQUIRE(ready_d.wait(10s));
  before = w.listener->stats();
  fd = test::connect_from("127.0.0.1", socks);
  REQUIRE(fd >= 0);
  const unsigned char hello[] = {5, 1, 0};
  ::send(fd, hello, sizeof hello, MSG_NOSIGNAL);
  char method[2];
  REQUIRE(::recv(fd, method, 2, MSG_WAITALL) == 2);
  auto port = w.backend.port();
  const unsigned char connect[] = {5,
                                   1,
                                   0,
                                   1,
                                   127,
                                   0,
                                   0,
                                   1,
                                   static_cast<unsigned char>(port >> 8),
                                   static_cast<unsigned char>(port & 0xff)};
  ::send(fd, connect, sizeof connect, MSG_NOSIGNAL);
  auto reply = read_all(fd, 5s);
  CHECK((reply.size() < 2 || reply[1] != 0)); // no "succeeded"
  ::close(fd);
  CHECK(counted(w, before, agent_refusal::direct_tcpip));
  CHECK(w.backend.connections_accepted() == 0);
  CHECK(w.listener->stats().agents == 0);
}

TEST_CASE("a forward of a port the user may not use is refused", "[agents][security]") {
  agent_world w;
  w.allow("alice", {"id"}, {w.backend.port()});
  w.allow_text("bob",
               "restrict,port-forwarding,permitlisten=\"7000\" " + w.home.public_key() + "\n",
               {7000, 7001});
  auto before = w.listener->stats();
  auto alice = w.dial("alice", {}, "9:127.0.0.1:" + std::to_string(w.backend.port()));
  CHECK(alice->wait(10s) == 255);
  CHECK(alice->output().find("remote port forwarding failed for listen port 9") !=
        std::string::npos);
  // bob's key narrows his ports to 7000: 7001 is refused, 7000 is his.
  auto bob = w.dial("bob", {}, "7001:127.0.0.1:" + std::to_string(w.backend.port()));
  CHECK(bob->wait(10s) == 255);
  CHECK(counted(w, before, agent_refusal::forward_not_allowed, 2));
  CHECK(counted(w, before, agent_refusal::no_forward, 2));
  // A forward of a Unix socket (streamlocal-forward@openssh.com): libssh refuses the
  // request before the policy sees it (docs/libssh.md, trap 16), so only the session's end
  // is counted.
  auto path = w.dir + "/agent.sock";
  auto local = w.dial("alice", {}, path + ":127.0.0.1:" + std::to_string(w.backend.port()));
  CHECK(local->wait(10s) == 255);
  CHECK(local->output().find("remote port forwarding failed for listen path") != std::string::npos);
  CHECK(counted(w, before, agent_refusal::no_forward, 3));
  auto bob_ok = w.dial("bob", {}, "7000:127.0.0.1:" + std::to_string(w.backend.port()));
  auto agent = w.next_agent();
  REQUIRE(agent);
  CHECK(agent.bound_port() == 7000);
  CHECK(w.listener->stats().agents == 1);
  CHECK(w.backend.connections_accepted() == 0);
}

TEST_CASE("an unknown key and a known key with another user name are refused alike",
          "[agents][security]") {
  agent_world w;
  w.allow("alice", {"id"}, {w.backend.port()});
  auto before = w.listener->stats();
  auto stranger = w.run("alice", {"-N"}, {}, "stranger");
  auto wrong_user = w.run("mallory", {"-N"});
  for (auto& [code, out] : {stranger, wrong_user}) {
    CHECK(code == 255);
    CHECK(out.find("Permission denied (publickey)") != std::string::npos);
  }
  CHECK(counted(w, before, agent_refusal::auth_failed, 2));
  CHECK(counted(w, before, agent_refusal::left_unauthenticated, 2));
  CHECK(w.listener->stats().authenticated == 0);
  auto log = captured_log().str();
  CHECK(log.find("for 'mallory' from 127.0.0.1") != std::string::npos);
  CHECK(log.find("no such user") != std::string::npos);
  CHECK(log.find("not an authorized key of the user") != std::string::npos);
  // Refusals name the key by its fingerprint, never by the key itself.
  for (auto name : {"id", "stranger"}) {
    auto line = w.home.public_key(name);
    CHECK(log.find(line.substr(line.find(' ') + 1, 40)) == std::string::npos);
  }
  CHECK(log.find("PRIVATE KEY") == std::string::npos);
}

TEST_CASE("a key's from= and expiry-time hold at authentication", "[agents][security]") {
  agent_world w;
  w.allow_text("alice",
               "from=\"127.0.0.9\" " + w.home.public_key("id") + "\n" +
                   "expiry-time=\"20200101Z\" " + w.home.public_key("old") + "\n",
               {w.backend.port()});
  auto before = w.listener->stats();
  auto elsewhere = w.run("alice", {"-N"});
  auto expired = w.run("alice", {"-N", "-o", "BindAddress=127.0.0.9"}, {}, "old");
  for (auto& [code, out] : {elsewhere, expired}) {
    CHECK(code == 255);
    CHECK(out.find("Permission denied (publickey)") != std::string::npos);
  }
  CHECK(counted(w, before, agent_refusal::auth_failed, 2));
  auto log = captured_log().str();
  CHECK(log.find("the key's from= does not allow this address") != std::string::npos);
  CHECK(log.find("the key's expiry-time has passed") != std::string::npos);
  auto allowed = w.dial("alice", {"-o", "BindAddress=127.0.0.9"});
  auto agent = w.next_agent();
  REQUIRE(agent);
  CHECK(agent.source_address() == "127.0.0.9");
}

TEST_CASE("password, keyboard-interactive and none are refused; only publickey is offered",
          "[agents][security]") {
  agent_world w;
  w.allow("alice", {"id"}, {w.backend.port()});
  auto before = w.listener->stats();
  for (auto method : {"password", "keyboard-interactive"}) {
    auto [code, out] =
        w.run("alice", {"-N", "-o", std::string{"PreferredAuthentications="} + method, "-o",
                        "NumberOfPasswordPrompts=0"});
    CHECK(code == 255);
    CHECK(out.find("Permission denied (publickey)") != std::string::npos);
  }
  CHECK(counted(w, before, agent_refusal::left_unauthenticated, 2));
  // OpenSSH's client does not even try what is not offered; libssh's client does.
  CHECK(libssh_attempt(w, "alice", "password") == SSH_AUTH_DENIED);
  CHECK(libssh_attempt(w, "alice", "keyboard-interactive") == SSH_AUTH_DENIED);
  CHECK(libssh_attempt(w, "alice", "none") == SSH_AUTH_DENIED);
  CHECK(counted(w, before, agent_refusal::auth_method, 2));
  CHECK(w.listener->stats().authenticated == 0);
  CHECK(captured_log().str().find("secret") == std::string::npos);
}

TEST_CASE("max_auth_tries failures end the session", "[agents][security]") {
  agent_world w;
  w.allow("alice", {"id"}, {w.backend.port()});
  std::vector<std::string> options{"-N"};
  for (int i = 0; i < 7; ++i)
    options.insert(options.end(), {"-i", w.home.key("k" + std::to_string(i))});
  auto before = w.listener->stats();
  auto [code, out] = w.run("alice", options, {}, "k7");
  INFO(out);
  CHECK(code == 255);
  CHECK(out.find("Too many authentication failures") != std::string::npos);
  CHECK(counted(w, before, agent_refusal::max_auth_tries));
  CHECK(w.listener->stats().refused_for(agent_refusal::auth_failed) ==
        before.refused_for(agent_refusal::auth_failed) + 6);
}

TEST_CASE("a source whose sessions keep failing is refused for a while; others are not",
          "[agents][security]") {
  auto opts = agent_world::options();
  opts.penalties.auth_failed = 5s;
  opts.penalties.min = 8s; // two failures in quick succession: ~10 s of debt
  agent_world w{opts};
  w.allow("alice", {"id"}, {w.backend.port()});
  auto before = w.listener->stats();
  for (int i = 0; i < 2; ++i)
    CHECK(w.run("alice", {"-N", "-o", "BindAddress=127.0.0.7"}, {}, "stranger").first == 255);
  REQUIRE(w.wait_stats([](const agent_listener_stats& s) { return s.penalized_sources == 1; }));
  auto [code, out] = w.run("alice", {"-N", "-o", "BindAddress=127.0.0.7"});
  CHECK(code == 255);
  CHECK(out.find("Permission denied") == std::string::npos); // closed before any SSH byte
  CHECK(counted(w, before, agent_refusal::penalized_source));
  auto agent = w.dial("alice", {"-o", "BindAddress=127.0.0.8"});
  CHECK(w.next_agent());
}

TEST_CASE("login grace and max_startups close connections that hold a slot", "[agents][security]") {
  auto opts = agent_world::options();
  opts.login_grace = 500ms;
  opts.max_startups = 2;
  agent_world w{opts};
  auto before = w.listener->stats();
  int a = test::connect_from("127.0.0.1", w.listener->port());
  int b = test::connect_from("127.0.0.2", w.listener->port());
  REQUIRE(w.wait_stats([](const agent_listener_stats& s) { return s.pre_auth == 2; }));
  int c = test::connect_from("127.0.0.3", w.listener->port());
  CHECK(closed_by_peer(c, 200ms)); // closed at once, not at the grace
  CHECK(counted(w, before, agent_refusal::max_startups));
  auto started = std::chrono::steady_clock::now();
  CHECK(closed_by_peer(a, 5s));
  CHECK(closed_by_peer(b, 5s));
  CHECK(std::chrono::steady_clock::now() - started < 2s);
  CHECK(counted(w, before, agent_refusal::login_grace, 2));
  for (int fd : {a, b, c})
    ::close(fd);
}

TEST_CASE("the policy holds after the hand-off: -L and new forwards through an adopted agent",
          "[agents][security]") {
  agent_world w;
  w.allow("alice", {"id"}, {w.backend.port()});
  auto local = test::free_port();
  test::ssh_ready ready{w.dir, "local"};
  auto options = ready.options();
  options.insert(options.end(),
                 {"-L", std::to_string(local) + ":127.0.0.1:" + std::to_string(w.backend.port())});
  auto ssh = w.dial("alice", options);
  auto sink = std::make_shared<recording_sink>();
  auto t = w.adopt(w.next_agent(), sink);
  REQUIRE(ready.wait(10s));

  auto before = w.listener->stats();
  int fd = test::connect_from("127.0.0.1", local);
  REQUIRE(fd >= 0);
  CHECK(closed_by_peer(fd, 5s));
  ::close(fd);
  CHECK(counted(w, before, agent_refusal::direct_tcpip)); // answered on the reactor thread
  CHECK(w.backend.connections_accepted() == 0);

  t->forward(1, make_request("GET", "/info"));
  auto r = sink->wait_result(1, 10s);
  REQUIRE(r.has_value());
  CHECK(*r);
  CHECK(w.backend.connections_accepted() == 1);
}

TEST_CASE("an agent the gateway refuses is told why", "[agents][security]") {
  agent_world w;
  w.allow("alice", {"id"}, {w.backend.port()});
  w.refuse_agents("alice already has 3 agents connected (max_connections_per_user)");
  auto before = w.listener->stats();
  auto ssh = w.dial("alice");
  CHECK(ssh->wait(10s) == 255);
  INFO(ssh->output());
  CHECK(ssh->output().find("alice already has 3 agents connected") != std::string::npos);
  CHECK(counted(w, before, agent_refusal::agent_refused));
}

TEST_CASE("an agent that cancels the forward in use is lost", "[agents][security]") {
  agent_world w;
  w.allow("alice", {"id"}, {w.backend.port()});
  auto control = w.home.dir() + "/control";
  auto forward =
      std::to_string(w.backend.port()) + ":127.0.0.1:" + std::to_string(w.backend.port());
  auto master = w.dial("alice", {"-M", "-S", control});
  auto sink = std::make_shared<recording_sink>();
  auto t = w.adopt(w.next_agent(), sink);
  auto [code, out] = w.run("alice", {"-S", control, "-O", "cancel", "-R", forward});
  CHECK(code == 0);
  auto lost = sink->wait_lost(5s);
  REQUIRE(lost.has_value());
  CHECK(lost->code() == errc::connection_lost);
  CHECK(lost->message().find("cancelled the forward in use") != std::string::npos);
}
