// The reverse-mode test world (see agent_world.hpp).
#include "integration/agent_world.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sshpool/ssh/http.hpp"

namespace sshpool::test {

// -- recording_sink -------------------------------------------------------------------------

void recording_sink::on_open(error result) {
  std::lock_guard<std::mutex> guard{mx_};
  opened_ = std::move(result);
  cv_.notify_all();
}

void recording_sink::on_response(std::uint64_t tag, response res, transfer_info) {
  std::lock_guard<std::mutex> guard{mx_};
  results_.insert_or_assign(tag, expected<response>{std::move(res)});
  cv_.notify_all();
}

void recording_sink::on_stream_head(std::uint64_t tag, response head) {
  std::lock_guard<std::mutex> guard{mx_};
  heads_.insert_or_assign(tag, std::move(head));
  cv_.notify_all();
}

void recording_sink::on_stream_chunk(std::uint64_t tag, std::string chunk) {
  std::lock_guard<std::mutex> guard{mx_};
  chunks_[tag].push_back(std::move(chunk));
  cv_.notify_all();
}

void recording_sink::on_failure(std::uint64_t tag, error err, transfer_info) {
  std::lock_guard<std::mutex> guard{mx_};
  results_.insert_or_assign(tag, expected<response>{std::move(err)});
  cv_.notify_all();
}

void recording_sink::on_lost(error reason) {
  std::lock_guard<std::mutex> guard{mx_};
  lost_ = std::move(reason);
  cv_.notify_all();
}

void recording_sink::on_alive() {
  std::lock_guard<std::mutex> guard{mx_};
  ++alive_;
  cv_.notify_all();
}

error recording_sink::wait_open(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> guard{mx_};
  if (!cv_.wait_for(guard, timeout, [&] { return opened_.has_value(); }))
    return error{errc::timeout, "no on_open"};
  return *opened_;
}

std::optional<expected<response>> recording_sink::wait_result(std::uint64_t tag,
                                                              std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> guard{mx_};
  if (!cv_.wait_for(guard, timeout, [&] { return results_.count(tag) > 0; }))
    return std::nullopt;
  return results_.at(tag);
}

bool recording_sink::wait_results(std::size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> guard{mx_};
  return cv_.wait_for(guard, timeout, [&] { return results_.size() >= n; });
}

std::optional<std::string> recording_sink::next_chunk(std::uint64_t tag,
                                                      std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> guard{mx_};
  if (!cv_.wait_for(guard, timeout, [&] { return !chunks_[tag].empty(); }))
    return std::nullopt;
  auto chunk = std::move(chunks_[tag].front());
  chunks_[tag].pop_front();
  return chunk;
}

std::optional<error> recording_sink::wait_lost(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> guard{mx_};
  if (!cv_.wait_for(guard, timeout, [&] { return lost_.has_value(); }))
    return std::nullopt;
  return lost_;
}

bool recording_sink::wait_alive(std::size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> guard{mx_};
  return cv_.wait_for(guard, timeout, [&] { return alive_ >= n; });
}

std::optional<response> recording_sink::head(std::uint64_t tag) {
  std::lock_guard<std::mutex> guard{mx_};
  auto i = heads_.find(tag);
  return i == heads_.end() ? std::nullopt : std::optional<response>{i->second};
}

// -- agent_world ----------------------------------------------------------------------------

ssh::agent_listener_options agent_world::options() {
  ssh::agent_listener_options opts;
  opts.listen = "127.0.0.1:0";
  opts.login_grace = std::chrono::seconds(10);
  return opts;
}

agent_world::agent_world(ssh::agent_listener_options opts, demo::http_backend::options backend_opts)
    : backend(std::move(backend_opts)),
      runtime(ssh::ssh_runtime::options{2, 1, std::make_shared<metrics>()}) {
  if (opts.host_key_file.empty())
    opts.host_key_file = dir + "/agent_host_ed25519";
  auto started = ssh::agent_listener::start(
      std::move(opts),
      [this](const std::string& user) -> std::shared_ptr<const ssh::agent_policy> {
        std::lock_guard<std::mutex> guard{mx_};
        auto i = users_.find(user);
        return i == users_.end() ? nullptr : i->second;
      },
      [this](ssh::agent_handle agent) {
        std::lock_guard<std::mutex> guard{mx_};
        if (!refuse_with_.empty()) {
          agent.refuse(refuse_with_);
          return;
        }
        arrived_.push_back(std::move(agent));
        cv_.notify_all();
      });
  REQUIRE(started);
  listener = std::move(*started);
  home.trust(listener->port(), listener->public_key());
}

agent_world::~agent_world() {
  listener->stop();
  arrived_.clear();
}

void agent_world::allow(const std::string& user, const std::vector<std::string>& keys,
                        std::vector<std::uint16_t> ports, const std::string& options) {
  std::string text;
  for (const auto& k : keys)
    text += (options.empty() ? "" : options + " ") + home.public_key(k) + "\n";
  allow_text(user, text, std::move(ports));
}

void agent_world::allow_text(const std::string& user, const std::string& authorized_keys,
                             std::vector<std::uint16_t> ports) {
  auto parsed = ssh::parse_authorized_keys(authorized_keys);
  auto policy = std::make_shared<ssh::agent_policy>();
  policy->keys = std::move(parsed.keys);
  policy->allowed_ports = std::move(ports);
  std::lock_guard<std::mutex> guard{mx_};
  users_[user] = std::move(policy);
}

std::unique_ptr<logged_process> agent_world::dial(const std::string& user,
                                                  const std::vector<std::string>& extra,
                                                  const std::string& forward,
                                                  const std::string& key_name) {
  auto port = std::to_string(backend.port());
  std::vector<std::string> options{"-N",
                                   "-R",
                                   forward.empty() ? port + ":127.0.0.1:" + port : forward,
                                   "-o",
                                   "ServerAliveInterval=15",
                                   "-o",
                                   "ExitOnForwardFailure=yes"};
  options.insert(options.end(), extra.begin(), extra.end());
  return std::make_unique<logged_process>(home.log_file("agent-" + user),
                                          home.ssh(user, listener->port(), options, {}, key_name));
}

std::pair<int, std::string> agent_world::run(const std::string& user,
                                             const std::vector<std::string>& options,
                                             const std::vector<std::string>& command,
                                             const std::string& key_name) {
  logged_process ssh{home.log_file("run-" + user),
                     home.ssh(user, listener->port(), options, command, key_name)};
  auto code = ssh.wait(std::chrono::seconds(20));
  REQUIRE(code.has_value());
  return {*code, ssh.output()};
}

ssh::agent_handle agent_world::next_agent(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> guard{mx_};
  if (!cv_.wait_for(guard, timeout, [&] { return !arrived_.empty(); }))
    return ssh::agent_handle{};
  auto agent = std::move(arrived_.front());
  arrived_.pop_front();
  return agent;
}

std::unique_ptr<ssh::transport> agent_world::adopt(ssh::agent_handle agent,
                                                   const std::shared_ptr<recording_sink>& sink,
                                                   ssh::transport_options opts) {
  REQUIRE(agent);
  auto t = runtime.adopt(std::move(agent), opts, sink);
  REQUIRE(t != nullptr);
  t->open();
  auto opened = sink->wait_open(std::chrono::seconds(5));
  REQUIRE(opened.code() == errc::none);
  return t;
}

bool agent_world::wait_stats(const std::function<bool(const ssh::agent_listener_stats&)>& pred,
                             std::chrono::milliseconds timeout) {
  return listener->wait_for(pred, timeout);
}

void agent_world::refuse_agents(std::string message) {
  std::lock_guard<std::mutex> guard{mx_};
  refuse_with_ = std::move(message);
}

ssh_ready::ssh_ready(const std::string& dir, const std::string& name)
    : path_(dir + "/" + name + ".fifo") {
  ::unlink(path_.c_str());
  REQUIRE(::mkfifo(path_.c_str(), 0600) == 0);
  // Open for reading first (without waiting for a writer), so the writer never blocks.
  fd_ = ::open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  REQUIRE(fd_ >= 0);
}

ssh_ready::~ssh_ready() {
  ::close(fd_);
  ::unlink(path_.c_str());
}

std::vector<std::string> ssh_ready::options() const {
  return {"-o", "PermitLocalCommand=yes", "-o", "LocalCommand=echo ready > " + path_};
}

bool ssh_ready::wait(std::chrono::milliseconds timeout) {
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0 || (p.revents & POLLIN) == 0)
    return false;
  char buf[16];
  return ::read(fd_, buf, sizeof buf) > 0;
}

int connect_from(const char* source, std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &from.sin_addr);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    if (fd >= 0)
      ::close(fd);
    return -1;
  }
  return fd;
}

ssh::outbound_request make_request(const std::string& method, const std::string& path,
                                   std::string body, bool stream) {
  request req;
  req.method = method;
  req.path = path;
  req.body = std::move(body);
  ssh::outbound_request out;
  auto info = ssh::serialize_request(req, "127.0.0.1", out.wire);
  REQUIRE(info);
  out.info = *info;
  out.stream = stream;
  return out;
}

std::string pattern(std::size_t n) {
  std::string result(n, '\0');
  for (std::size_t i = 0; i < n; ++i)
    result[i] = static_cast<char>('a' + i % 26);
  return result;
}

} // namespace sshpool::test
