// Tests of the private test sshd fixture, driven by the real OpenSSH client: the generated keys
// and known_hosts files work (and the wrong ones fail the right way), connection processes are
// visible, stop/start keeps the port, and nothing (process, thread, fd, dir) outlives it; and
// the /proc readers beside it (support/process_info).
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "support/os.hpp"
#include "support/process_info.hpp"
#include "support/test_sshd.hpp"
#include "support/timing.hpp"

namespace {

using namespace sshpool::test;
using namespace std::chrono_literals;

/// The result of a finished client process.
struct run_result {
  int status = -1;
  std::string output;

  bool succeeded() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
};

/// The OpenSSH client command line for `sshd`, non-interactive and hermetic.
std::vector<std::string> ssh_command(const test_sshd& sshd, const std::string& identity,
                                     const std::string& known_hosts) {
  return {"ssh",
          "-F",
          "/dev/null",
          "-o",
          "BatchMode=yes",
          "-o",
          "IdentitiesOnly=yes",
          "-o",
          "IdentityAgent=none",
          "-o",
          "UserKnownHostsFile=" + known_hosts,
          "-o",
          "GlobalKnownHostsFile=/dev/null",
          "-o",
          "StrictHostKeyChecking=yes",
          "-i",
          identity,
          "-p",
          std::to_string(sshd.port()),
          sshd.user() + "@127.0.0.1"};
}

/// Runs `ssh ... true` to completion and collects its output.
run_result run_ssh(const test_sshd& sshd, const std::string& identity,
                   const std::string& known_hosts) {
  auto argv = ssh_command(sshd, identity, known_hosts);
  argv.emplace_back("true");
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  pid_t pid = spawn(argv, fds[1]);
  ::close(fds[1]);
  run_result result;
  while (read_some(fds[0], result.output)) {
  }
  ::close(fds[0]);
  result.status = wait_child(pid);
  return result;
}

/// Starts `ssh -N` (an open connection without a session) in the background.
pid_t open_connection(const test_sshd& sshd) {
  auto argv = ssh_command(sshd, sshd.identity_file(), sshd.known_hosts_file());
  argv.emplace_back("-N");
  int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  pid_t pid = spawn(argv, null_fd);
  ::close(null_fd);
  return pid;
}

/// Whether sshd has authenticated a client and serves it: once the log says so, the
/// connection's processes stay until the client disconnects.
bool logged_in(const test_sshd& sshd) {
  return read_file(sshd.log_file()).find("Accepted publickey for " + sshd.user()) !=
             std::string::npos &&
         !sshd.connection_pids().empty();
}

/// Whether `pid` is a live process (neither gone nor a zombie awaiting its reaper).
bool process_alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat))
    return false;
  auto close_paren = stat.rfind(')');
  return close_paren != std::string::npos && close_paren + 2 < stat.size() &&
         stat[close_paren + 2] != 'Z' && stat[close_paren + 2] != 'X';
}

} // namespace

TEST_CASE("test_sshd accepts the OpenSSH client with its generated keys", "[sshd]") {
  test_sshd sshd;
  REQUIRE(sshd.running());
  REQUIRE(sshd.port() != 0);
  REQUIRE(read_file(sshd.known_hosts_file())
              .rfind("[127.0.0.1]:" + std::to_string(sshd.port()) + " ssh-ed25519 ", 0) == 0);
  REQUIRE(read_file(sshd.empty_known_hosts_file()).empty());

  SECTION("the right key and known host log in") {
    auto result = run_ssh(sshd, sshd.identity_file(), sshd.known_hosts_file());
    INFO(result.output);
    CHECK(result.succeeded());
    CHECK(read_file(sshd.log_file()).find("Accepted publickey for " + sshd.user()) !=
          std::string::npos);
  }
  SECTION("an unauthorised key is refused") {
    auto result = run_ssh(sshd, sshd.wrong_identity_file(), sshd.known_hosts_file());
    INFO(result.output);
    CHECK_FALSE(result.succeeded());
    CHECK(result.output.find("Permission denied") != std::string::npos);
  }
  SECTION("a changed host key is refused") {
    auto result = run_ssh(sshd, sshd.identity_file(), sshd.wrong_known_hosts_file());
    INFO(result.output);
    CHECK_FALSE(result.succeeded());
    CHECK(result.output.find("HOST IDENTIFICATION HAS CHANGED") != std::string::npos);
  }
  SECTION("an unknown host is refused") {
    auto result = run_ssh(sshd, sshd.identity_file(), sshd.empty_known_hosts_file());
    INFO(result.output);
    CHECK_FALSE(result.succeeded());
    CHECK(result.output.find("Host key verification failed") != std::string::npos);
  }
}

TEST_CASE("test_sshd makes endpoints for its user and keys", "[sshd]") {
  test_sshd sshd;
  auto ep = sshd.make_endpoint(8080);
  CHECK(ep.host == "127.0.0.1");
  CHECK(ep.port == sshd.port());
  CHECK(ep.username == sshd.user());
  CHECK(ep.identity_file == sshd.identity_file());
  CHECK(ep.known_hosts_file == sshd.known_hosts_file());
  CHECK(ep.target_host == "127.0.0.1");
  CHECK(ep.target_port == 8080);
}

TEST_CASE("test_sshd shows the processes of an open connection", "[sshd]") {
  test_sshd sshd;
  CHECK(sshd.connection_pids().empty());
  pid_t client = open_connection(sshd);
  CHECK(eventually([&] { return logged_in(sshd); }));
  for (pid_t pid : sshd.connection_pids())
    CHECK(pid != sshd.pid());
  ::kill(client, SIGTERM);
  wait_child(client);
  CHECK(eventually([&] { return sshd.connection_pids().empty(); }));
}

TEST_CASE("test_sshd restarts on the same port", "[sshd]") {
  test_sshd sshd;
  const auto port = sshd.port();
  sshd.stop();
  CHECK_FALSE(sshd.running());
  CHECK(sshd.pid() == -1);
  CHECK(sshd.port() == port);
  sshd.stop();

  SECTION("start listens again with the same keys") {
    sshd.start();
    CHECK(sshd.running());
    CHECK(sshd.port() == port);
    auto result = run_ssh(sshd, sshd.identity_file(), sshd.known_hosts_file());
    INFO(result.output);
    CHECK(result.succeeded());
  }
  SECTION("start fails with sshd's log while the port is taken") {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd, 1) == 0);
    CHECK_THROWS_WITH(sshd.start(), Catch::Contains("Address already in use"));
    CHECK_FALSE(sshd.running());
    ::close(fd);
    sshd.start();
    CHECK(sshd.running());
  }
}

TEST_CASE("test_sshd reports a config sshd rejects", "[sshd]") {
  sshpool::test::sshd_options options;
  options.extra_config.emplace_back("NoSuchOption yes");
  CHECK_THROWS_WITH(test_sshd(options), Catch::Contains("Bad configuration option"));
}

TEST_CASE("test_sshd leaves no process, thread, fd or file behind", "[sshd]") {
  const auto threads = sshpool::test::thread_count();
  const auto fds = sshpool::test::open_fd_count();
  pid_t listener = -1;
  std::vector<pid_t> connection;
  std::string dir;
  pid_t client = -1;
  {
    test_sshd sshd;
    listener = sshd.pid();
    dir = sshd.dir();
    CHECK(sshpool::test::thread_count() == threads + 1); // the log reader
    client = open_connection(sshd);
    REQUIRE(eventually([&] { return logged_in(sshd); }));
    connection = sshd.connection_pids();
    ::kill(connection.front(), SIGSTOP); // a stopped connection must not delay the stop
  }
  CHECK_FALSE(std::filesystem::exists("/proc/" + std::to_string(listener))); // reaped
  for (pid_t pid : connection)
    CHECK_FALSE(process_alive(pid));
  CHECK_FALSE(std::filesystem::exists(dir));
  ::kill(client, SIGTERM);
  wait_child(client);
  CHECK(sshpool::test::thread_count() == threads);
  CHECK(sshpool::test::open_fd_count() == fds);
}

TEST_CASE("process_info reports sane figures", "[sshd]") {
  CHECK(sshpool::test::thread_count() >= 1);
  const auto fds = sshpool::test::open_fd_count();
  CHECK(fds >= 3);
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  CHECK(sshpool::test::open_fd_count() == fds + 1);
  ::close(fd);
  std::thread worker([&] { CHECK(sshpool::test::thread_count() >= 2); });
  worker.join();
  CHECK(sshpool::test::rss_bytes() > 1024 * 1024);
}

namespace {

/// Spins until this process has used `seconds` more CPU (async-signal-safe: fit for a child
/// forked from a threaded process).
void burn_cpu(double seconds) {
  timespec start{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
  for (timespec now = start; static_cast<double>(now.tv_sec - start.tv_sec) +
                                 static_cast<double>(now.tv_nsec - start.tv_nsec) / 1e9 <
                             seconds;)
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
}

} // namespace

TEST_CASE("process_info sees a process tree and its CPU, reaped children included", "[sshd]") {
  const pid_t self = ::getpid();
  const double before = sshpool::test::cpu_seconds(self);
  int go[2];
  REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    char byte = 0;
    ::close(go[1]);
    if (::read(go[0], &byte, 1) == 1)
      burn_cpu(0.2);
    ::_exit(0);
  }
  ::close(go[0]);
  auto below = sshpool::test::descendants(self);
  CHECK(std::find(below.begin(), below.end(), child) != below.end());
  burn_cpu(0.1);
  CHECK(::write(go[1], "x", 1) == 1);
  ::close(go[1]);
  wait_child(child);
  // 0.1 s here and 0.2 s in the reaped child, counted in whole clock ticks.
  CHECK(sshpool::test::cpu_seconds(self) - before >= 0.25);
  CHECK(sshpool::test::cpu_seconds(child) == 0); // gone
  CHECK(sshpool::test::tree_cpu_seconds(self) >= sshpool::test::cpu_seconds(self));
}
