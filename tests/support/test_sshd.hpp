// A private OpenSSH sshd for tests, demos and benchmarks.
//
// Each test_sshd owns a temporary directory with freshly generated ed25519 keys (host key,
// an authorised user key, an unauthorised one and a foreign host key), an sshd_config and
// known_hosts files, and runs `/usr/sbin/sshd -D -e` on 127.0.0.1 on a free port. The login
// user is the current user, so the fixture works as root (CI) and as a normal user (sshd then
// runs unprivileged and can only log in that user). Readiness is the event "Server listening"
// on sshd's stderr, which a reader thread copies into log_file().
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sshpool/types.hpp"
#include "support/os.hpp"

namespace sshpool::test {

/// How the private sshd is configured.
struct sshd_options {
  /// sshd's MaxStartups. The default is raised for tests that are not about connection storms;
  /// "10:30:100" is sshd's own default.
  std::string max_startups = "200:30:400";
  /// sshd's LogLevel. Must be INFO or more verbose: readiness is read from the log.
  std::string log_level = "INFO";
  bool allow_tcp_forwarding = true;
  /// Address sshd listens on (and that endpoints and known_hosts name).
  std::string listen_address = "127.0.0.1";
  /// Network namespace to run sshd in (`ip netns exec`), empty for the test's own. The
  /// namespace must exist and reach `listen_address`; see tests/support/netns.hpp.
  std::string netns;
  /// Extra sshd_config lines, appended after the fixture's own lines. sshd keeps the first
  /// value of an option, so these cannot override the options above; `Match` blocks work.
  std::vector<std::string> extra_config;
};

/// A running private sshd (see the top of this file). Not copyable or movable.
class test_sshd {
public:
  /// Makes a temp dir (under $TMPDIR or /tmp), generates keys, writes the config, starts sshd
  /// on a free port (retrying up to 5 ports if binding fails) and waits until it listens.
  /// Throws std::runtime_error with the tail of sshd's log on failure.
  explicit test_sshd(sshd_options options = {});
  /// Stops sshd and every process serving a connection, and removes the temp dir.
  ~test_sshd();

  test_sshd(const test_sshd&) = delete;
  test_sshd& operator=(const test_sshd&) = delete;

  std::uint16_t port() const { return port_; }
  /// The listening sshd process, or -1 while stopped.
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_.path(); }
  /// The login user: the current (effective) user.
  const std::string& user() const { return user_; }

  /// ed25519 private key authorised for user().
  std::string identity_file() const { return dir_.path() + "/id_ed25519"; }
  /// Another ed25519 private key, not authorised.
  std::string wrong_identity_file() const { return dir_.path() + "/wrong_id_ed25519"; }
  /// "[127.0.0.1]:PORT ssh-ed25519 ..." with sshd's host key.
  std::string known_hosts_file() const { return dir_.path() + "/known_hosts"; }
  /// The same host with a different ed25519 key (as if the host key had changed).
  std::string wrong_known_hosts_file() const { return dir_.path() + "/wrong_known_hosts"; }
  /// An existing, empty known_hosts file (host unknown).
  std::string empty_known_hosts_file() const { return dir_.path() + "/empty_known_hosts"; }
  /// Everything sshd and its connection processes write to stderr, one line per line.
  std::string log_file() const { return dir_.path() + "/sshd.log"; }

  /// An endpoint for user() at listen_address:port() with the right key and known_hosts, forwarding
  /// to 127.0.0.1:target_port, with server_nodelay off (see server_endpoint.hpp).
  sshpool::endpoint make_endpoint(std::uint16_t target_port) const;

  /// Every descendant of pid(): the processes serving client connections (a connection's
  /// monitor, its privilege-separated child and the commands of its sessions).
  std::vector<pid_t> connection_pids() const;

  /// Sends `sig` to the listening sshd and every connection process (SIGKILL: a crash of the
  /// whole server; SIGSTOP/SIGCONT: a hung server whose kernel still accepts TCP).
  void signal_all(int sig) const;

  /// Terminates sshd and its descendants (SIGTERM, SIGKILL after 2 s) and waits for them.
  /// port() stays reserved for start(). Does nothing while stopped.
  void stop();
  /// Starts sshd again on the same port with the same keys and waits until it listens.
  /// Does nothing while running. Throws std::runtime_error on failure.
  void start();
  /// Whether the listening sshd process is alive.
  bool running() const;

private:
  enum class launch_result { ready, bind_failed, failed };

  void generate_keys();
  void write_port_files() const;
  launch_result launch(std::string& failure);
  void read_log(int fd, int wake_fd);
  void handle_line(std::string line);
  void join_reader();
  void cleanup() noexcept;

  sshd_options options_;
  temp_dir dir_{"sshpool-sshd"};
  std::string user_;
  std::string host_public_key_;
  std::string wrong_host_public_key_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
  int log_fd_ = -1;

  /// The reader thread of the current run and its pipe (read end) and wake-up eventfd.
  std::thread reader_;
  int pipe_fd_ = -1;
  int wake_fd_ = -1;

  /// Reader state, guarded by mutex_.
  std::mutex mutex_;
  std::condition_variable cv_;
  std::string ready_line_;
  bool ready_ = false;
  bool eof_ = false;
  std::deque<std::string> tail_;
};

} // namespace sshpool::test
