// The gateway tests' harness: child processes, config files, a small HTTP client.
#include "gateway/gateway_harness.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>

#include "net/text.hpp"
#include "sshpool/ssh/http_framing.hpp"
#include "sshpool/text.hpp"
#include "support/os.hpp"

extern char** environ;

namespace sshpool::test {

namespace {

int remaining_ms(steady::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
  return static_cast<int>(std::max<long long>(0, left.count()));
}

/// `s` as a JSON string literal.
std::string json_string(const std::string& s) {
  std::string out;
  net::append_json_string(out, s);
  return out;
}

/// Waits until `deadline` for bytes on `fd` and receives up to `size` of them into `buf`:
/// how many, 0 at EOF or on an error, nullopt if nothing came in time.
std::optional<std::size_t> receive(int fd, char* buf, std::size_t size,
                                   steady::time_point deadline) {
  pollfd pfd{fd, POLLIN, 0};
  if (::poll(&pfd, 1, remaining_ms(deadline)) <= 0)
    return std::nullopt;
  auto n = ::recv(fd, buf, size, 0);
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

/// The port that `pattern`'s first group matches in `text` (0 if none).
std::uint16_t port_in(const std::string& text, const char* pattern) {
  std::smatch m;
  if (std::regex_search(text, m, std::regex{pattern}))
    return static_cast<std::uint16_t>(std::stoi(m[1]));
  return 0;
}

} // namespace

// -- child_process --------------------------------------------------------------------------

child_process::child_process(const std::vector<std::string>& args,
                             const std::vector<std::string>& env) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e)
    env_strings.emplace_back(*e);
  for (auto& kv : env) {
    auto eq = kv.find('=');
    auto name = eq == std::string::npos ? kv + "=" : kv.substr(0, eq + 1);
    env_strings.erase(std::remove_if(env_strings.begin(), env_strings.end(),
                                     [&](const std::string& s) { return s.rfind(name, 0) == 0; }),
                      env_strings.end());
    if (eq != std::string::npos)
      env_strings.push_back(kv);
  }
  std::vector<char*> argv;
  std::vector<std::string> args_copy = args;
  for (auto& a : args_copy)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env_strings)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  int out[2];
  int err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe2 failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  ::close(err[1]);
  out_fd_ = out[0];
  err_fd_ = err[0];
  if (rc != 0) {
    ::close(out_fd_);
    ::close(err_fd_);
    throw std::runtime_error(std::string{"posix_spawn "} + args[0] + ": " + std::strerror(rc));
  }
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (stop_fd_ < 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status_, 0);
    ::close(out_fd_);
    ::close(err_fd_);
    throw std::runtime_error("eventfd failed");
  }
  reader_ = std::thread{[this] { read_output(); }};
}

child_process::~child_process() {
  if (!exited_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status_, 0);
  }
  ::eventfd_write(stop_fd_, 1); // stops the reader even if a grandchild holds the pipes
  reader_.join();
  ::close(stop_fd_);
}

void child_process::read_output() {
  pollfd fds[3] = {{stop_fd_, POLLIN, 0}, {out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  char buf[8192];
  // poll ignores a negative fd: a closed pipe is set to -1.
  while ((fds[1].fd >= 0 || fds[2].fd >= 0) && fds[0].revents == 0) {
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    for (int i = 1; i < 3; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0)
        continue;
      auto got = ::read(fds[i].fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR)
        continue;
      if (got <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        continue;
      }
      {
        std::lock_guard<std::mutex> lock{mutex_};
        (i == 1 ? out_ : err_).append(buf, static_cast<std::size_t>(got));
      }
      changed_.notify_all();
    }
  }
  for (int i = 1; i < 3; ++i)
    if (fds[i].fd >= 0)
      ::close(fds[i].fd);
  {
    std::lock_guard<std::mutex> lock{mutex_};
    reading_ = false;
  }
  changed_.notify_all();
}

bool child_process::wait_for_output(const std::string& pattern, std::chrono::milliseconds limit,
                                    bool from_stderr) {
  std::unique_lock<std::mutex> lock{mutex_};
  const std::string& text = from_stderr ? err_ : out_;
  auto found = [&] { return text.find(pattern) != std::string::npos; };
  changed_.wait_for(lock, limit, [&] { return found() || !reading_; });
  return found();
}

int child_process::wait_exit(std::chrono::milliseconds limit) {
  auto deadline = steady::now() + limit;
  {
    std::unique_lock<std::mutex> lock{mutex_};
    changed_.wait_until(lock, deadline, [this] { return !reading_; });
  }
  if (!exited_) {
    // A pidfd becomes readable when the child exits: wait for that event, bounded.
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd >= 0) {
      pollfd pfd{pidfd, POLLIN, 0};
      ::poll(&pfd, 1, remaining_ms(deadline));
      ::close(pidfd);
    }
    if (::waitpid(pid_, &status_, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status_, 0);
      exited_ = true;
      return -1;
    }
    exited_ = true;
  }
  return WIFEXITED(status_) ? WEXITSTATUS(status_) : -1;
}

void child_process::signal(int sig) const {
  ::kill(pid_, sig);
}

std::string child_process::out() const {
  std::lock_guard<std::mutex> lock{mutex_};
  return out_;
}

std::string child_process::err() const {
  std::lock_guard<std::mutex> lock{mutex_};
  return err_;
}

std::uint16_t child_process::listening_port() const {
  return port_in(out(), "listening on .*:(\\d+)");
}

std::uint16_t child_process::agent_port() const {
  return port_in(out(), "agents dial in on port (\\d+)");
}

std::uint16_t child_process::admin_port() const {
  return port_in(out(), "admin endpoints on .*:(\\d+)");
}

std::size_t child_process::rss_bytes() const {
  std::ifstream statm("/proc/" + std::to_string(pid_) + "/statm");
  std::size_t size_pages = 0;
  std::size_t resident_pages = 0;
  if (!(statm >> size_pages >> resident_pages))
    return 0;
  return resident_pages * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

std::string make_config(const test_sshd& sshd, const std::vector<test_user>& users,
                        const std::string& extra) {
  std::string users_json;
  for (auto& u : users) {
    auto ep = sshd.make_endpoint(u.target_port);
    if (!users_json.empty())
      users_json += ",";
    users_json +=
        json_string(u.name) + ":{\"host\":" + json_string(ep.host) +
        ",\"port\":" + std::to_string(ep.port) + ",\"username\":" + json_string(ep.username) +
        ",\"identity_file\":" + json_string(ep.identity_file) +
        ",\"known_hosts_file\":" + json_string(ep.known_hosts_file) +
        ",\"target_host\":\"127.0.0.1\",\"target_port\":" + std::to_string(u.target_port) +
        ",\"server_nodelay\":false}";
  }
  return "{\"listen\":\"127.0.0.1:0\"" + (extra.empty() ? "" : "," + extra) + ",\"users\":{" +
         users_json + "}}";
}

running_gateway::running_gateway(const std::string& config_file,
                                 const std::vector<std::string>& env,
                                 const std::vector<std::string>& extra_args)
    : proc(
          [&] {
            std::vector<std::string> args = {SSHPOOL_DEMO_BINARY, "--config", config_file};
            args.insert(args.end(), extra_args.begin(), extra_args.end());
            return args;
          }(),
          env) {
  bool up = proc.wait_for_output("listening on", std::chrono::seconds(30));
  INFO("stdout: " << proc.out() << "\nstderr: " << proc.err());
  REQUIRE(up);
  port = proc.listening_port();
  REQUIRE(port != 0);
}

// -- http_response / http_client ------------------------------------------------------------

std::string http_response::header(const std::string& name) const {
  for (auto& [k, v] : headers)
    if (text::iequals(k, name))
      return v;
  return {};
}

http_client::http_client(std::uint16_t port, int receive_buffer) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0)
    throw std::runtime_error("socket failed");
  if (receive_buffer > 0)
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw std::runtime_error(std::string{"connect: "} + std::strerror(errno));
}

http_client::~http_client() {
  close();
}

void http_client::close() {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
}

void http_client::send_raw(const std::string& bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    auto n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0)
      throw std::runtime_error(std::string{"send: "} + std::strerror(errno));
    off += static_cast<std::size_t>(n);
  }
}

void http_client::send_request(const std::string& method, const std::string& target,
                               const std::vector<std::pair<std::string, std::string>>& headers,
                               const std::string& body) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: gateway\r\n";
  for (auto& [k, v] : headers)
    req += k + ": " + v + "\r\n";
  if (!body.empty() || method == "POST")
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  send_raw(req);
}

bool http_client::fill(steady::time_point deadline) {
  char buf[65536];
  auto n = receive(fd_, buf, sizeof buf, deadline);
  if (!n || *n == 0)
    return false;
  buffer_.append(buf, *n);
  return true;
}

bool http_client::read_line(std::string& line, steady::time_point deadline) {
  for (;;) {
    auto eol = buffer_.find("\r\n");
    if (eol != std::string::npos) {
      line = buffer_.substr(0, eol);
      buffer_.erase(0, eol + 2);
      return true;
    }
    if (!fill(deadline))
      return false;
  }
}

http_response http_client::read_head(std::chrono::milliseconds limit) {
  auto deadline = steady::now() + limit;
  http_response res;
  std::string line;
  do { // interim 1xx responses are skipped
    if (!read_line(line, deadline)) {
      res.truncated = true;
      return res;
    }
    if (line.size() < 12 || line.compare(0, 5, "HTTP/") != 0) {
      res.truncated = true;
      return res;
    }
    res.status = std::stoi(line.substr(9, 3));
    res.headers.clear();
    while (read_line(line, deadline) && !line.empty()) {
      auto colon = line.find(':');
      auto value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      res.headers.emplace_back(line.substr(0, colon), value);
    }
  } while (res.status / 100 == 1);
  res.chunked = text::iequals(res.header("Transfer-Encoding"), "chunked");
  return res;
}

void http_client::read_body(http_response& res, std::chrono::milliseconds limit) {
  auto deadline = steady::now() + limit;
  auto add = [&](std::string piece) {
    res.body += piece;
    res.pieces.emplace_back(steady::now(), std::move(piece));
  };
  if (has_no_body(false, res.status))
    return;
  if (res.chunked) {
    for (;;) {
      std::string line;
      if (!read_line(line, deadline)) {
        res.truncated = true;
        return;
      }
      auto size = std::stoul(line, nullptr, 16);
      while (buffer_.size() < size + 2)
        if (!fill(deadline)) {
          res.truncated = true;
          return;
        }
      if (size == 0) {
        buffer_.erase(0, 2);
        return;
      }
      add(buffer_.substr(0, size));
      buffer_.erase(0, size + 2);
    }
  }
  auto length = res.header("Content-Length");
  if (!length.empty()) {
    std::size_t want = std::stoul(length);
    std::size_t got = 0;
    while (got < want) {
      if (buffer_.empty() && !fill(deadline)) {
        res.truncated = true;
        return;
      }
      auto take = std::min(want - got, buffer_.size());
      add(buffer_.substr(0, take));
      buffer_.erase(0, take);
      got += take;
    }
    return;
  }
  for (;;) { // close-delimited
    if (!buffer_.empty()) {
      add(buffer_);
      buffer_.clear();
    }
    if (!fill(deadline))
      return;
  }
}

http_response http_client::read_response(std::chrono::milliseconds limit) {
  auto deadline = steady::now() + limit;
  auto res = read_head(limit);
  if (!res.truncated)
    read_body(res, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()));
  return res;
}

std::size_t http_client::pending_bytes() const {
  int n = 0;
  if (::ioctl(fd_, FIONREAD, &n) != 0)
    return 0;
  return static_cast<std::size_t>(n);
}

bool http_client::closed_by_server(std::chrono::milliseconds limit) {
  auto deadline = steady::now() + limit;
  char buf[4096];
  for (;;) {
    auto n = receive(fd_, buf, sizeof buf, deadline);
    if (!n)
      return false;
    if (*n == 0)
      return true;
  }
}

http_response fetch(std::uint16_t port, const std::string& method, const std::string& target,
                    const std::vector<std::pair<std::string, std::string>>& headers,
                    const std::string& body) {
  http_client c{port};
  c.send_request(method, target, headers, body);
  return c.read_response();
}

std::string metric_value(const std::string& text, const std::string& name_and_labels) {
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(name_and_labels + " ", 0) == 0)
      return line.substr(name_and_labels.size() + 1);
  return {};
}

double metric(std::uint16_t port, const std::string& name_and_labels) {
  auto res = fetch(port, "GET", "/metrics");
  REQUIRE(res.status == 200);
  auto text = metric_value(res.body, name_and_labels);
  return text.empty() ? -1 : std::stod(text);
}

void check_promtool(const temp_dir& dir, const std::string& text) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    WARN("promtool not found (Debian package prometheus): the exposition format is not checked");
    return;
  }
  auto file = dir.write("metrics.txt", text);
  auto out = dir.path() + "/promtool.out";
  int rc = std::system(("promtool check metrics < '" + file + "' > '" + out + "' 2>&1").c_str());
  auto problems = read_file(out);
  INFO("promtool: " << problems);
  CHECK(rc == 0);
  CHECK(problems.empty());
}

} // namespace sshpool::test
