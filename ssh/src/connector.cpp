// Blocking handshakes on connector threads. Every libssh call gets the time left until
// the deadline as its timeout, so a handshake never outlives its deadline by more than
// one step's rounding. ~/.ssh/config is never read (SSH_OPTIONS_PROCESS_CONFIG off).
#include "connector.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>

#include "key_loader.hpp"
#include "known_hosts.hpp"
#include "reactor.hpp"
#include "small_file.hpp"
#include "sshpool/ssh/log.hpp"

namespace sshpool::ssh {

namespace {

using clock = std::chrono::steady_clock;

/// Warns (once per file and process) when a private key file can be read or written by
/// its group or by others. OpenSSH refuses such keys; we use them and say so.
void warn_if_exposed(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || (st.st_mode & (S_IRWXG | S_IRWXO)) == 0)
    return;
  static std::mutex mutex;
  static std::set<std::string> warned;
  {
    std::lock_guard<std::mutex> guard{mutex};
    if (!warned.insert(path).second)
      return;
  }
  log().warn("private key file '{}' is accessible to group or others (mode {:03o}): "
             "chmod 600 it",
             path, static_cast<unsigned>(st.st_mode & 0777));
}

/// The SHA256 fingerprint of the server's host key ("SHA256:..."), or "unknown".
std::string host_key_fingerprint(ssh_session s) {
  ssh_key key = nullptr;
  if (ssh_get_server_publickey(s, &key) != SSH_OK)
    return "unknown";
  key_ptr owned{key};
  return key_fingerprint(key);
}

/// What the server presented as its host key.
struct server_key {
  std::string type;   ///< e.g. "ssh-ed25519"
  std::string base64; ///< the public key blob, as in known_hosts
};

expected<server_key> server_key_of(ssh_session s) {
  ssh_key key = nullptr;
  if (ssh_get_server_publickey(s, &key) != SSH_OK)
    return error{errc::internal, std::string{"no server host key: "} + ssh_get_error(s)};
  server_key result;
  result.type = ssh_key_type_to_char(ssh_key_type(key));
  char* b64 = nullptr;
  if (ssh_pki_export_pubkey_base64(key, &b64) == SSH_OK) {
    result.base64 = b64;
    ssh_string_free_char(b64);
  }
  ssh_key_free(key);
  if (result.base64.empty())
    return error{errc::internal, "cannot export the server's host key"};
  return result;
}

/// The content of a known_hosts file; a missing file reads as an empty one (no host known).
expected<std::string> read_known_hosts(const std::string& path) {
  auto file = read_small_file(path, std::size_t{16} << 20);
  if (file.error == ENOENT)
    return std::string{};
  if (file.error != 0)
    return error{errc::host_key_unknown,
                 "cannot read '" + path + "' to check the host key: " + std::strerror(file.error)};
  if (file.over_limit)
    return error{errc::host_key_unknown, "'" + path + "' is over 16 MiB; not a known_hosts file"};
  return std::move(file.text);
}

/// Appends `entry` to the known_hosts file `path` (created if missing); the errno text of
/// a failure, else empty.
std::string append_known_host(const std::string& path, const std::string& entry) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return std::strerror(errno);
  // One write: O_APPEND places it whole at the end, after any other process's line.
  bool written = ::write(fd, entry.data(), entry.size()) == static_cast<ssize_t>(entry.size());
  int saved = errno;
  if (::close(fd) != 0 && written) {
    written = false;
    saved = errno;
  }
  return written ? std::string{} : std::strerror(saved);
}

/// The error for a host key that is not known (nothing for a known one).
std::optional<error> refusal(host_key_status status, const endpoint& ep, const std::string& where,
                             ssh_session s) {
  const auto key = " (" + host_key_fingerprint(s) + ")";
  switch (status) {
  case host_key_status::known:
    return std::nullopt;
  case host_key_status::revoked:
    return error{errc::host_key_revoked, "host key of " + where + key + " is marked @revoked in '" +
                                             ep.known_hosts_file + "'; not authenticating"};
  case host_key_status::mismatch:
    return error{errc::host_key_mismatch, "host key of " + where + key +
                                              " differs from the one in '" + ep.known_hosts_file +
                                              "' (possible man-in-the-middle); not authenticating"};
  case host_key_status::unknown:
    break;
  }
  return error{errc::host_key_unknown, "host key of " + where + key + " is not in '" +
                                           ep.known_hosts_file + "'; not authenticating"};
}

/// Checks the server's host key against the endpoint's known_hosts file (see
/// known_hosts.hpp). Trust on first use (host_key_policy::accept_new) records an unknown
/// host's key: one writer at a time, and the file is checked again under the lock, so
/// handshakes racing to the same new host append its key once and a key recorded meanwhile
/// is compared, not appended. A revoked or changed key is never recorded. Returns the
/// error, if any.
std::optional<error> verify_host_key(ssh_session s, const endpoint& ep) {
  const auto where = ep.host + ":" + std::to_string(ep.port);
  const auto name = known_hosts_name(ep.host, ep.port);
  auto key = server_key_of(s);
  if (!key)
    return key.error();
  auto text = read_known_hosts(ep.known_hosts_file);
  if (!text)
    return text.error();
  auto status = check_host_key(*text, name, key->base64);
  if (status != host_key_status::unknown || ep.host_keys != host_key_policy::accept_new)
    return refusal(status, ep, where, s);
  static std::mutex mutex;
  std::lock_guard<std::mutex> guard{mutex};
  text = read_known_hosts(ep.known_hosts_file);
  if (!text)
    return text.error();
  status = check_host_key(*text, name, key->base64);
  if (status != host_key_status::unknown)
    return refusal(status, ep, where, s);
  if (auto why = append_known_host(ep.known_hosts_file,
                                   known_hosts_entry(*text, name, key->type, key->base64));
      !why.empty())
    return error{errc::host_key_unknown, "cannot record the host key of " + where + " in '" +
                                             ep.known_hosts_file + "': " + why};
  log().warn("accepted the new host key of {} ({}) into '{}' (host_keys accept_new)", where,
             host_key_fingerprint(s), ep.known_hosts_file);
  return std::nullopt;
}

struct session_guard {
  ssh_session s;
  ~session_guard() {
    if (s != nullptr) {
      ssh_disconnect(s);
      ssh_free(s);
    }
  }
  ssh_session release() {
    auto result = s;
    s = nullptr;
    return result;
  }
};

/// AES-GCM first when the CPU has AES instructions, else libssh's default order (empty).
const std::string& default_ciphers() {
  static const std::string list = [] {
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("aes"))
      return std::string{"aes128-gcm@openssh.com,aes256-gcm@openssh.com,"
                         "chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr"};
#endif
    return std::string{};
  }();
  return list;
}

/// Sets the timeout of the next blocking libssh call to the time left; false if none.
bool arm_timeout(ssh_session s, clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - clock::now());
  if (left.count() <= 0)
    return false;
  long secs = static_cast<long>(left.count() / 1000000);
  long usecs = static_cast<long>(left.count() % 1000000);
  ssh_options_set(s, SSH_OPTIONS_TIMEOUT, &secs);
  ssh_options_set(s, SSH_OPTIONS_TIMEOUT_USEC, &usecs);
  return true;
}

error timed_out(const endpoint& ep, const char* step) {
  return {errc::timeout, std::string{"handshake with "} + ep.host + ":" + std::to_string(ep.port) +
                             " exceeded its deadline during " + step};
}

/// Opens a session channel and execs a no-op so that OpenSSH's sshd enables TCP_NODELAY
/// on the connection (it does so once a session channel execs). Best effort. The server
/// runs the no-op through the user's shell: the channel is returned open so the command
/// ends on its own (closing it now would hang up the shell in its startup files).
ssh_channel nudge_nodelay(ssh_session s, const endpoint& ep, clock::time_point deadline) {
  if (!arm_timeout(s, deadline))
    return nullptr;
  ssh_channel ch = ssh_channel_new(s);
  if (ch == nullptr)
    return nullptr;
  if (ssh_channel_open_session(ch) == SSH_OK && ssh_channel_request_exec(ch, "true") == SSH_OK) {
    log().debug("nodelay nudge done on {}:{}", ep.host, ep.port);
    return ch;
  }
  log().debug("nodelay nudge refused by {}:{}: {}", ep.host, ep.port, ssh_get_error(s));
  ssh_channel_free(ch);
  return nullptr;
}

} // namespace

expected<connected_session> blocking_handshake(const endpoint& ep, clock::time_point deadline) {
  session_guard guard{ssh_new()};
  auto s = guard.s;
  if (s == nullptr)
    return error{errc::internal, "ssh_new failed"};
  int verbosity = SSH_LOG_NOLOG;
  bool process_config = false;
  unsigned int port = ep.port;
  int nodelay = 1;
  ssh_options_set(s, SSH_OPTIONS_LOG_VERBOSITY, &verbosity);
  ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &process_config);
  // libssh reads the known_hosts file only to prefer the algorithms of the keys it lists;
  // whether the host key is accepted is decided by verify_host_key.
  if (ssh_options_set(s, SSH_OPTIONS_HOST, ep.host.c_str()) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_PORT, &port) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_USER, ep.username.c_str()) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, ep.known_hosts_file.c_str()) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null") != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_NODELAY, &nodelay) != SSH_OK)
    return error{errc::invalid_argument,
                 std::string{"invalid endpoint option: "} + ssh_get_error(s)};
  // AES-GCM is 15-35 % faster than chacha20-poly1305 where the CPU has AES instructions
  // (measured here); both ends then prefer it. An explicit list wins.
  auto ciphers = ep.ciphers.empty() ? default_ciphers() : ep.ciphers;
  if (!ciphers.empty() && (ssh_options_set(s, SSH_OPTIONS_CIPHERS_C_S, ciphers.c_str()) != SSH_OK ||
                           ssh_options_set(s, SSH_OPTIONS_CIPHERS_S_C, ciphers.c_str()) != SSH_OK))
    return error{errc::invalid_argument, "unsupported cipher list '" + ciphers + "'"};
  // The key is read before connecting: a key that cannot be used is the caller's error
  // (engine::set_endpoint checked it already; the file may have changed since).
  warn_if_exposed(ep.identity_file);
  auto key = load_private_key(ep.identity_file, ep.passphrase);
  if (!key)
    return key.error();
  if (!arm_timeout(s, deadline))
    return timed_out(ep, "connect");
  if (ssh_connect(s) != SSH_OK) {
    if (clock::now() >= deadline)
      return timed_out(ep, "connect");
    return error{errc::connect_failed, std::string{"cannot connect to "} + ep.host + ":" +
                                           std::to_string(ep.port) + ": " + ssh_get_error(s)};
  }
  if (auto refused = verify_host_key(s, ep))
    return *refused;
  if (!arm_timeout(s, deadline))
    return timed_out(ep, "authentication");
  auto rc = ssh_userauth_publickey(s, nullptr, key->get());
  if (rc != SSH_AUTH_SUCCESS) {
    if (clock::now() >= deadline)
      return timed_out(ep, "authentication");
    if (rc == SSH_AUTH_ERROR)
      return error{errc::connect_failed,
                   std::string{"authentication aborted: "} + ssh_get_error(s)};
    return error{errc::auth_failed, "server refused the key for user '" + ep.username + "'"};
  }
  connected_session result;
  if (ep.server_nodelay)
    result.nudge = nudge_nodelay(s, ep, deadline);
  result.session = guard.release();
  return result;
}

connector_pool::connector_pool(std::size_t threads) {
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i)
    threads_.emplace_back([this] { run(); });
}

connector_pool::~connector_pool() {
  stop();
}

void connector_pool::stop() {
  std::deque<std::shared_ptr<session_control>> pending;
  {
    std::lock_guard<std::mutex> guard{mx_};
    stopping_ = true;
    pending.swap(queue_);
  }
  cv_.notify_all();
  for (auto& t : threads_)
    t.join();
  threads_.clear();
  for (auto& ctl : pending)
    if (!ctl->closed.load())
      ctl->sink->on_open(error{errc::shutting_down, "the engine is stopping"});
}

void connector_pool::submit(std::shared_ptr<session_control> ctl) {
  {
    std::lock_guard<std::mutex> guard{mx_};
    if (!stopping_) {
      queue_.push_back(std::move(ctl));
      ++started_;
      cv_.notify_one();
      return;
    }
  }
  ctl->sink->on_open(error{errc::shutting_down, "the engine is stopping"});
}

std::uint64_t connector_pool::started() const {
  std::lock_guard<std::mutex> guard{mx_};
  return started_;
}

std::uint64_t connector_pool::failed() const {
  std::lock_guard<std::mutex> guard{mx_};
  return failed_;
}

void connector_pool::run() {
  pthread_setname_np(pthread_self(), "sshpool.connect");
  for (;;) {
    std::shared_ptr<session_control> ctl;
    {
      std::unique_lock<std::mutex> guard{mx_};
      cv_.wait(guard, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_)
        return;
      ctl = std::move(queue_.front());
      queue_.pop_front();
    }
    handshake(ctl);
  }
}

void connector_pool::handshake(const std::shared_ptr<session_control>& ctl) {
  if (ctl->closed.load())
    return;
  auto start = clock::now();
  ctl->counters->handshakes_started.fetch_add(1, std::memory_order_relaxed);
  auto res = start < ctl->start_deadline
                 ? blocking_handshake(ctl->ep, start + ctl->opts.connect_timeout)
                 : expected<connected_session>{timed_out(ctl->ep, "its wait for a connector")};
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start).count();
  if (!res) {
    ctl->counters->handshakes_failed.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> guard{mx_};
      ++failed_;
    }
    log().info("handshake #{} with {}@{}:{} failed after {} ms: {}", ctl->id, ctl->ep.username,
               ctl->ep.host, ctl->ep.port, ms, res.error().to_string());
    if (!ctl->closed.load())
      ctl->sink->on_open(res.error());
    return;
  }
  ctl->counters->handshake_seconds.observe(clock::now() - start);
  log().debug("handshake #{} with {}@{}:{} done in {} ms", ctl->id, ctl->ep.username, ctl->ep.host,
              ctl->ep.port, ms);
  ctl->home->adopt(ctl, *res);
}

} // namespace sshpool::ssh
