// The private test sshd: key generation, config, start with readiness as the "Server
// listening" log event, and a stop that freezes and then terminates sshd's whole process tree
// so that no connection process survives the fixture.
#include "support/test_sshd.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "support/child_process.hpp"
#include "support/process_info.hpp"
#include "support/server_endpoint.hpp"

namespace sshpool::test {

namespace {

using namespace std::chrono_literals;

constexpr const char* sshd_path = "/usr/sbin/sshd";
constexpr auto ready_bound = 10s;
constexpr auto term_bound = 2s;
constexpr auto reader_bound = 2s;
constexpr int port_attempts = 5;
constexpr std::size_t tail_lines = 30;

/// Closes `fd` if it is open and marks it closed.
void close_fd(int& fd) noexcept {
  if (fd >= 0)
    ::close(fd);
  fd = -1;
}

/// "ssh-ed25519 AAAA..." from an OpenSSH public key file (the comment dropped).
std::string public_key(const std::string& pub_file) {
  std::istringstream in(read_file(pub_file));
  std::string type;
  std::string blob;
  if (!(in >> type >> blob))
    throw std::runtime_error("test_sshd: malformed public key " + pub_file);
  return type + ' ' + blob;
}

/// The name of the effective user.
std::string current_user() {
  passwd pw{};
  passwd* result = nullptr;
  std::vector<char> buf(16384);
  if (::getpwuid_r(::geteuid(), &pw, buf.data(), buf.size(), &result) != 0 || result == nullptr)
    throw std::runtime_error("test_sshd: no passwd entry for uid " + std::to_string(::geteuid()));
  return pw.pw_name;
}

/// Sends SIGTERM (and SIGCONT, for stopped ones) to the processes in `pidfds`, waits for them
/// to exit, and kills those still alive after a bound.
void terminate(const std::vector<int>& pidfds) {
  for (int fd : pidfds) {
    send_signal(fd, SIGTERM);
    send_signal(fd, SIGCONT);
  }
  auto stubborn = wait_exits(pidfds, term_bound);
  for (int fd : stubborn)
    send_signal(fd, SIGKILL);
  wait_exits(stubborn, term_bound);
}

} // namespace

test_sshd::test_sshd(sshd_options options) : options_(std::move(options)) {
  for (const char* quiet : {"QUIET", "FATAL", "ERROR"}) {
    if (::strcasecmp(options_.log_level.c_str(), quiet) == 0)
      throw std::invalid_argument("test_sshd: LogLevel must be INFO or more verbose");
  }
  user_ = current_user();
  try {
    if (::geteuid() == 0 && ::mkdir("/run/sshd", 0755) < 0 && errno != EEXIST)
      throw_errno("mkdir /run/sshd");
    log_fd_ = ::open(log_file().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd_ < 0)
      throw_errno("open " + log_file());
    generate_keys();
    std::string failure;
    for (int attempt = 0; attempt < port_attempts; ++attempt) {
      port_ = free_port();
      switch (launch(failure)) {
      case launch_result::ready:
        return;
      case launch_result::bind_failed:
        continue;
      case launch_result::failed:
        throw std::runtime_error(failure);
      }
    }
    throw std::runtime_error(failure);
  } catch (...) {
    cleanup();
    throw;
  }
}

test_sshd::~test_sshd() {
  cleanup();
}

sshpool::endpoint test_sshd::make_endpoint(std::uint16_t target_port) const {
  return server_endpoint(options_.listen_address, port_, user_, identity_file(), known_hosts_file(),
                         target_port);
}

std::vector<pid_t> test_sshd::connection_pids() const {
  return pid_ > 0 ? descendants(pid_) : std::vector<pid_t>{};
}

void test_sshd::signal_all(int sig) const {
  if (pid_ <= 0)
    return;
  // Children first: once the listener dies they are re-parented and no longer found.
  for (auto pid : descendants(pid_))
    ::kill(pid, sig);
  ::kill(pid_, sig);
}

bool test_sshd::running() const {
  if (pid_ <= 0)
    return false;
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
         info.si_pid == 0;
}

void test_sshd::start() {
  if (running())
    return;
  stop();
  std::string failure;
  if (launch(failure) != launch_result::ready)
    throw std::runtime_error(failure);
}

void test_sshd::stop() {
  if (pid_ <= 0)
    return;
  // Freeze the listener (so it forks no new connection process), then freeze its descendants
  // top-down until a scan finds no new one: the whole tree is known before anything dies and
  // is reparented out of reach.
  ::kill(pid_, SIGSTOP);
  int status = 0;
  pid_t waited;
  do {
    waited = ::waitpid(pid_, &status, WUNTRACED);
  } while (waited < 0 && errno == EINTR);
  if (waited == pid_ && WIFSTOPPED(status)) {
    std::vector<int> pidfds;
    std::set<pid_t> seen;
    for (bool found = true; found;) {
      found = false;
      for (pid_t p : descendants(pid_)) {
        if (!seen.insert(p).second)
          continue;
        found = true;
        int fd = open_pidfd(p);
        if (fd >= 0) {
          send_signal(fd, SIGSTOP);
          pidfds.push_back(fd);
        }
      }
    }
    // Connection processes first, so that the listener reaps them as it wakes up to exit.
    terminate(pidfds);
    int listener_fd = open_pidfd(pid_);
    if (listener_fd >= 0)
      terminate({listener_fd});
    else
      ::kill(pid_, SIGKILL);
    close_fd(listener_fd);
    for (int& fd : pidfds)
      close_fd(fd);
    ::waitpid(pid_, &status, 0);
  }
  pid_ = -1;
  join_reader();
}

void test_sshd::generate_keys() {
  const std::string keygen_log = dir_.path() + "/keygen.log";
  int out = ::open(keygen_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0)
    throw_errno("open " + keygen_log);
  const std::vector<std::string> keys = {dir_.path() + "/ssh_host_ed25519_key", identity_file(),
                                         wrong_identity_file(),
                                         dir_.path() + "/wrong_host_ed25519_key"};
  std::vector<pid_t> pids;
  try {
    for (const auto& key : keys)
      pids.push_back(spawn(
          {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sshpool-test", "-f", key}, out));
  } catch (...) {
    for (pid_t pid : pids)
      wait_child(pid);
    ::close(out);
    throw;
  }
  ::close(out);
  bool ok = true;
  for (pid_t pid : pids) {
    int status = wait_child(pid);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  if (!ok)
    throw std::runtime_error("test_sshd: ssh-keygen failed: " + read_file(keygen_log));
  for (const auto& key : keys) {
    if (::chmod(key.c_str(), 0600) < 0)
      throw_errno("chmod " + key);
  }
  host_public_key_ = public_key(keys[0] + ".pub");
  wrong_host_public_key_ = public_key(keys[3] + ".pub");
  write_file(dir_.path() + "/authorized_keys", public_key(identity_file() + ".pub") + '\n');
  write_file(empty_known_hosts_file(), "");
}

void test_sshd::write_port_files() const {
  const std::string host = "[" + options_.listen_address + "]:" + std::to_string(port_) + ' ';
  write_file(known_hosts_file(), host + host_public_key_ + '\n');
  write_file(wrong_known_hosts_file(), host + wrong_host_public_key_ + '\n');
  std::string config;
  auto line = [&config](const std::string& text) { config += text + '\n'; };
  line("ListenAddress " + options_.listen_address + ':' + std::to_string(port_));
  line("HostKey " + dir_.path() + "/ssh_host_ed25519_key");
  line("PidFile " + dir_.path() + "/sshd.pid");
  line("AuthorizedKeysFile " + dir_.path() + "/authorized_keys");
  line("StrictModes no");
  line("PubkeyAuthentication yes");
  line("PasswordAuthentication no");
  line("KbdInteractiveAuthentication no");
  line("UsePAM no");
  line(std::string("AllowTcpForwarding ") + (options_.allow_tcp_forwarding ? "yes" : "no"));
  line("PermitTTY no");
  line("UseDNS no");
  line("PermitRootLogin prohibit-password");
  line("MaxStartups " + options_.max_startups);
  line("LogLevel " + options_.log_level);
  line("X11Forwarding no");
  line("PrintMotd no");
  for (const auto& extra : options_.extra_config)
    line(extra);
  write_file(dir_.path() + "/sshd_config", config);
}

test_sshd::launch_result test_sshd::launch(std::string& failure) {
  write_port_files();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0)
    throw_errno("pipe2");
  pipe_fd_ = fds[0];
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    ::close(fds[1]);
    close_fd(pipe_fd_);
    throw_errno("eventfd");
  }
  {
    std::lock_guard<std::mutex> guard(mutex_);
    ready_line_ =
        "Server listening on " + options_.listen_address + " port " + std::to_string(port_) + '.';
    ready_ = false;
    eof_ = false;
    tail_.clear();
  }
  try {
    std::vector<std::string> argv{sshd_path, "-D", "-e", "-f", dir_.path() + "/sshd_config"};
    if (!options_.netns.empty()) // `ip netns exec` enters the namespace, then execs sshd.
      argv.insert(argv.begin(), {"/usr/sbin/ip", "netns", "exec", options_.netns});
    pid_ = spawn(argv, fds[1]);
  } catch (...) {
    ::close(fds[1]);
    close_fd(pipe_fd_);
    close_fd(wake_fd_);
    throw;
  }
  ::close(fds[1]);
  reader_ = std::thread([this, fd = pipe_fd_, wake = wake_fd_] { read_log(fd, wake); });
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait_for(lock, ready_bound, [this] { return ready_ || eof_; });
  if (ready_)
    return launch_result::ready;
  const bool exited = eof_;
  std::string log;
  bool bind_failed = false;
  for (const auto& text : tail_) {
    log += "\n  " + text;
    bind_failed = bind_failed || text.find("Cannot bind any address") != std::string::npos;
  }
  lock.unlock();
  stop();
  failure = "test_sshd: sshd on " + options_.listen_address + ':' + std::to_string(port_) +
            (exited ? " exited before listening" : " not listening after 10 s") +
            "; log tail:" + log;
  return bind_failed ? launch_result::bind_failed : launch_result::failed;
}

void test_sshd::read_log(int fd, int wake_fd) {
  std::string pending;
  for (;;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (fds[1].revents != 0)
      break;
    if (!read_some(fd, pending))
      break;
    std::size_t begin = 0;
    for (auto end = pending.find('\n'); end != std::string::npos; end = pending.find('\n', begin)) {
      handle_line(pending.substr(begin, end - begin));
      begin = end + 1;
    }
    pending.erase(0, begin);
  }
  if (!pending.empty())
    handle_line(std::move(pending));
  std::lock_guard<std::mutex> guard(mutex_);
  eof_ = true;
  cv_.notify_all();
}

void test_sshd::handle_line(std::string line) {
  // sshd -e ends its lines with "\r\n".
  if (!line.empty() && line.back() == '\r')
    line.pop_back();
  std::string record = line + '\n';
  for (std::size_t done = 0; done < record.size();) {
    auto n = ::write(log_fd_, record.data() + done, record.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      break;
    done += static_cast<std::size_t>(n);
  }
  std::lock_guard<std::mutex> guard(mutex_);
  if (line == ready_line_) {
    ready_ = true;
    cv_.notify_all();
  }
  tail_.push_back(std::move(line));
  if (tail_.size() > tail_lines)
    tail_.pop_front();
}

void test_sshd::join_reader() {
  if (!reader_.joinable())
    return;
  {
    // sshd and its descendants are gone, so EOF comes at once unless a process outside the
    // tree inherited the pipe; then the reader is woken up after the bound.
    std::unique_lock<std::mutex> lock(mutex_);
    if (!cv_.wait_for(lock, reader_bound, [this] { return eof_; })) {
      const std::uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
    }
  }
  reader_.join();
  close_fd(pipe_fd_);
  close_fd(wake_fd_);
}

void test_sshd::cleanup() noexcept {
  try {
    stop();
  } catch (...) {
    // Best effort: the temp dir is removed below either way.
  }
  join_reader();
  close_fd(log_fd_);
}

} // namespace sshpool::test
