// The fault-injecting SSH server (see fault_sshd.hpp): keys and files, the accept thread, and
// one thread per connection that runs libssh's server side in non-blocking mode and relays
// direct-tcpip channels to their targets.
#include "support/fault_sshd.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/server.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <system_error>

#include "offered_key.hpp"
#include "support/os.hpp"
#include "support/server_endpoint.hpp"

namespace sshpool::test {

namespace {

using clock = std::chrono::steady_clock;

/// Longest wait of every poll: how late a stop request or a cleared zero_window is noticed.
constexpr auto poll_bound = std::chrono::milliseconds{50};
/// Bytes moved per read in either direction.
constexpr std::size_t relay_chunk = 32 * 1024;
/// Reads per channel and direction in one turn, so one busy channel cannot starve the rest.
constexpr int reads_per_turn = 8;

ssh_key generate_ed25519() {
  ssh_key key = nullptr;
  if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key) != SSH_OK)
    throw std::runtime_error("fault_sshd: cannot generate an ed25519 key");
  return key;
}

/// Writes `key` as an OpenSSH private key file readable by its owner only: the file is
/// created 0600 first, so the key is never readable by others, not even for a moment.
void write_private_key(ssh_key key, const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    throw_errno("fault_sshd: open " + path);
  ::close(fd);
  if (ssh_pki_export_privkey_file(key, nullptr, nullptr, nullptr, path.c_str()) != SSH_OK)
    throw std::runtime_error("fault_sshd: cannot write " + path);
}

/// "ssh-ed25519 AAAA..." for `key`.
std::string public_line(ssh_key key) {
  char* blob = nullptr;
  if (ssh_pki_export_pubkey_base64(key, &blob) != SSH_OK)
    throw std::runtime_error("fault_sshd: cannot export a public key");
  std::string line = std::string{ssh_key_type_to_char(ssh_key_type(key))} + ' ' + blob;
  ssh_string_free_char(blob);
  return line;
}

void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/// A non-blocking TCP connection to 127.0.0.1:port (-1 if refused). Loopback connects
/// complete or fail at once, so the connect itself is made blocking.
int connect_loopback(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  set_nodelay(fd);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

} // namespace

// -- one connection -------------------------------------------------------------------------

class fault_sshd::connection {
public:
  connection(fault_sshd& server, ssh_session s) : server_(server), s_(s) {}
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Serves the session until the client goes or the server stops, then frees it.
  void run();

private:
  /// A confirmed direct-tcpip channel and the TCP connection to its target.
  struct relay {
    ssh_channel ch = nullptr;
    int target = -1;
    ssh_channel_callbacks_struct callbacks{};
    std::string to_target;
    std::string to_client;
    bool client_eof = false;
    /// The client closed the channel. Seen through a callback: while unread data is buffered
    /// (a stalled channel), libssh keeps the channel open and reports no EOF.
    bool client_closed = false;
    bool target_shut = false;
    bool done = false;
  };

  struct pending_open {
    ssh_message msg;
    clock::time_point due;
  };

  void wait_for_io(bool& stop);
  bool alive() const;
  void handle(ssh_message msg);
  void handle_auth(ssh_message msg);
  void answer_open(ssh_message msg);
  void open_due();
  void pump(relay& r);
  void flush_to_target(relay& r);
  void finish(relay& r);

  static void on_global_request(ssh_session, ssh_message msg, void* userdata);
  static void on_close(ssh_session, ssh_channel, void* userdata);

  fault_sshd& server_;
  ssh_session s_;
  ssh_callbacks_struct callbacks_{};
  std::vector<std::unique_ptr<relay>> relays_;
  std::vector<pending_open> pending_;
};

void fault_sshd::connection::run() {
  ssh_set_blocking(s_, 0);
  ssh_set_auth_methods(s_, SSH_AUTH_METHOD_PUBLICKEY);
  // Without a global-request callback libssh answers keepalive@openssh.com by itself.
  callbacks_.userdata = this;
  callbacks_.global_request_function = on_global_request;
  ssh_callbacks_init(&callbacks_);
  ssh_set_callbacks(s_, &callbacks_);
  set_nodelay(ssh_get_fd(s_));

  bool keyed = false;
  bool stop = false;
  while (!stop) {
    if (!keyed) {
      auto rc = ssh_handle_key_exchange(s_);
      if (rc == SSH_ERROR)
        break;
      keyed = rc == SSH_OK;
    }
    if (keyed) {
      while (ssh_message msg = ssh_message_get(s_))
        handle(msg);
      if (!alive())
        break;
      open_due();
      for (auto& r : relays_)
        pump(*r);
      for (auto& r : relays_)
        if (r->done)
          finish(*r);
      relays_.erase(
          std::remove_if(relays_.begin(), relays_.end(),
                         [](const std::unique_ptr<relay>& r) { return r->ch == nullptr; }),
          relays_.end());
    }
    wait_for_io(stop);
  }

  // The goodbyes below (CLOSE, DISCONNECT) must not wait for a client that stopped reading:
  // on a non-blocking socket libssh fails the send instead, which ends the session anyway.
  int fd = ssh_get_fd(s_);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  for (auto& p : pending_)
    ssh_message_free(p.msg);
  for (auto& r : relays_)
    finish(*r);
  ssh_disconnect(s_);
  ssh_free(s_);
}

void fault_sshd::connection::wait_for_io(bool& stop) {
  std::vector<pollfd> fds;
  fds.push_back({server_.stop_fd_, POLLIN, 0});
  short session_events = POLLIN;
  if ((ssh_get_poll_flags(s_) & SSH_WRITE_PENDING) != 0)
    session_events |= POLLOUT;
  fds.push_back({ssh_get_fd(s_), session_events, 0});
  for (auto& r : relays_) {
    short events = 0;
    // Read from the target only what the client's window can take: the rest waits in the
    // socket (backpressure), and a WINDOW_ADJUST on the session socket wakes us.
    if (r->to_client.empty() && ssh_channel_window_size(r->ch) > 0)
      events |= POLLIN;
    if (!r->to_target.empty())
      events |= POLLOUT;
    fds.push_back({r->target, events, 0});
  }
  auto timeout = poll_bound;
  auto now = clock::now();
  for (auto& p : pending_)
    timeout = std::min(timeout, std::chrono::ceil<std::chrono::milliseconds>(
                                    std::max(p.due - now, clock::duration::zero())));
  if (::poll(fds.data(), fds.size(), static_cast<int>(timeout.count())) > 0)
    stop = fds[0].revents != 0;
}

bool fault_sshd::connection::alive() const {
  return ssh_is_connected(s_) != 0 && (ssh_get_status(s_) & (SSH_CLOSED | SSH_CLOSED_ERROR)) == 0;
}

void fault_sshd::connection::handle(ssh_message msg) {
  switch (ssh_message_type(msg)) {
  case SSH_REQUEST_AUTH:
    handle_auth(msg);
    break;
  case SSH_REQUEST_CHANNEL_OPEN: {
    if (ssh_message_subtype(msg) != SSH_CHANNEL_DIRECT_TCPIP) {
      ssh_message_reply_default(msg); // a failure: this server has no shell
      break;
    }
    // The switch is read before the count is published: a test that waits for the count
    // and then changes the switch must not change what this open gets.
    auto delay = server_.delay_channel_open.load();
    auto held = pending_.size() + 1 +
                static_cast<std::size_t>(std::count_if(
                    relays_.begin(), relays_.end(), [](const std::unique_ptr<relay>& r) {
                      return r->ch != nullptr && !r->client_closed;
                    }));
    server_.update([held](counters& c) {
      ++c.channel_opens;
      c.peak_channels = std::max<std::uint64_t>(c.peak_channels, held);
    });
    if (delay.count() > 0) {
      pending_.push_back({msg, clock::now() + delay});
      return; // answered (and freed) by open_due
    }
    answer_open(msg);
    break;
  }
  case SSH_REQUEST_CHANNEL:
    // A hung peer answers nothing; a healthy one refuses what it does not serve.
    if (!server_.ignore_keepalives.load())
      ssh_message_reply_default(msg);
    break;
  default: // service requests (accepted by default) and other global requests
    ssh_message_reply_default(msg);
    break;
  }
  ssh_message_free(msg);
}

void fault_sshd::connection::handle_auth(ssh_message msg) {
  if (ssh_message_subtype(msg) == SSH_AUTH_METHOD_PUBLICKEY) {
    ssh_publickey_state_e state = SSH_PUBLICKEY_STATE_NONE;
    ssh_key key = ssh::offered_key(msg, state);
    if (key != nullptr && ssh_key_cmp(key, server_.user_key_, SSH_KEY_CMP_PUBLIC) == 0) {
      if (state == SSH_PUBLICKEY_STATE_VALID) {
        ssh_message_auth_reply_success(msg, 0);
        server_.update([](counters& c) { ++c.authenticated; });
        return;
      }
      if (state == SSH_PUBLICKEY_STATE_NONE) { // a probe: "would this key do?"
        ssh_message_auth_reply_pk_ok_simple(msg);
        return;
      }
    }
  }
  ssh_message_auth_set_methods(msg, SSH_AUTH_METHOD_PUBLICKEY);
  ssh_message_reply_default(msg);
}

void fault_sshd::connection::answer_open(ssh_message msg) {
  // Like sshd: a target that cannot be reached is an open failure, so is a refusal.
  int fd = -1;
  if (!server_.refuse_channel_open.load() &&
      std::strcmp(ssh_message_channel_request_open_destination(msg), "127.0.0.1") == 0)
    fd = connect_loopback(
        static_cast<std::uint16_t>(ssh_message_channel_request_open_destination_port(msg)));
  if (fd < 0) {
    // Counted first: the client may act on the refusal before this thread runs again.
    server_.update([](counters& c) { ++c.channels_refused; });
    ssh_message_reply_default(msg);
    return;
  }
  auto r = std::make_unique<relay>();
  r->target = fd;
  r->ch = ssh_message_channel_request_open_reply_accept(msg);
  if (r->ch == nullptr) {
    ::close(fd);
    return;
  }
  // Only the close callback: without a data callback, data stays in libssh's buffer and
  // the window grows only as pump() reads, which is what zero_window relies on.
  r->callbacks.userdata = r.get();
  r->callbacks.channel_close_function = on_close;
  ssh_callbacks_init(&r->callbacks);
  ssh_set_channel_callbacks(r->ch, &r->callbacks);
  relays_.push_back(std::move(r));
  server_.update([](counters& c) {
    ++c.channels_accepted;
    ++c.open_channels;
  });
}

void fault_sshd::connection::open_due() {
  auto now = clock::now();
  for (std::size_t i = 0; i < pending_.size();) {
    if (pending_[i].due > now) {
      ++i;
      continue;
    }
    answer_open(pending_[i].msg);
    ssh_message_free(pending_[i].msg);
    pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
  }
}

void fault_sshd::connection::pump(relay& r) {
  if (r.client_closed) {
    r.done = true;
    return;
  }
  char buf[relay_chunk];
  // Client to target, one chunk in hand at a time: a slow target leaves data in libssh,
  // whose window then stops the client. zero_window stops reading altogether.
  for (int i = 0; i < reads_per_turn && !r.client_eof && !server_.zero_window.load(); ++i) {
    flush_to_target(r);
    if (!r.to_target.empty() || r.done)
      break;
    auto n = ssh_channel_read_nonblocking(r.ch, buf, sizeof(buf), 0);
    if (n == SSH_EOF) {
      r.client_eof = true;
    } else if (n < 0) {
      r.done = true;
      return;
    } else if (n == 0) {
      break;
    } else {
      r.to_target.assign(buf, static_cast<std::size_t>(n));
    }
  }
  flush_to_target(r);
  if (r.client_eof && r.to_target.empty() && !r.target_shut) {
    ::shutdown(r.target, SHUT_WR);
    r.target_shut = true;
  }
  // Target to client, within the client's window.
  for (int i = 0; i < reads_per_turn && !r.done; ++i) {
    if (r.to_client.empty()) {
      auto window = ssh_channel_window_size(r.ch);
      if (window == 0)
        break;
      auto n = ::recv(r.target, buf, std::min<std::size_t>(window, sizeof(buf)), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        // The target closed (a close-delimited response ends here): EOF, then close.
        ssh_channel_send_eof(r.ch);
        r.done = true;
        break;
      }
      if (n < 0)
        break;
      r.to_client.assign(buf, static_cast<std::size_t>(n));
    }
    auto w =
        ssh_channel_write(r.ch, r.to_client.data(), static_cast<std::uint32_t>(r.to_client.size()));
    if (w < 0) {
      r.done = true;
      break;
    }
    r.to_client.erase(0, static_cast<std::size_t>(w));
    if (!r.to_client.empty())
      break; // the window closed meanwhile
  }
}

void fault_sshd::connection::flush_to_target(relay& r) {
  while (!r.to_target.empty()) {
    auto n = ::send(r.target, r.to_target.data(), r.to_target.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        r.done = true;
      return;
    }
    r.to_target.erase(0, static_cast<std::size_t>(n));
  }
}

void fault_sshd::connection::finish(relay& r) {
  if (r.ch == nullptr)
    return;
  // Callbacks could fire after the free while the client has not closed its side.
  ssh_remove_channel_callbacks(r.ch, &r.callbacks);
  ssh_channel_free(r.ch); // sends CLOSE unless we already did
  r.ch = nullptr;
  ::close(r.target);
  r.target = -1;
  server_.update([](counters& c) { --c.open_channels; });
}

void fault_sshd::connection::on_global_request(ssh_session, ssh_message msg, void* userdata) {
  auto& self = *static_cast<connection*>(userdata);
  if (ssh_message_subtype(msg) != SSH_GLOBAL_REQUEST_KEEPALIVE) {
    ssh_message_reply_default(msg);
    return;
  }
  bool ignore = self.server_.ignore_keepalives.load();
  self.server_.update([ignore](counters& c) {
    ++c.keepalives;
    c.keepalives_ignored += ignore ? 1 : 0;
  });
  if (!ignore)
    ssh_message_global_request_reply_success(msg, 0);
}

void fault_sshd::connection::on_close(ssh_session, ssh_channel, void* userdata) {
  static_cast<relay*>(userdata)->client_closed = true;
}

// -- the server -----------------------------------------------------------------------------

fault_sshd::fault_sshd() {
  try {
    ssh_key host_key = generate_ed25519();
    std::string host_line;
    try {
      write_private_key(host_key, dir_.path() + "/host_ed25519");
      host_line = public_line(host_key);
    } catch (...) {
      ssh_key_free(host_key);
      throw;
    }
    ssh_key_free(host_key);
    user_key_ = generate_ed25519();
    write_private_key(user_key_, identity_file());

    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (listen_fd_ < 0)
      throw_errno("fault_sshd: socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(listen_fd_, 64) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw_errno("fault_sshd: listen on 127.0.0.1");
    port_ = ntohs(addr.sin_port);
    write_file(known_hosts_file(), "[127.0.0.1]:" + std::to_string(port_) + ' ' + host_line + '\n');

    stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd_ < 0)
      throw_errno("fault_sshd: eventfd");
    bind_ = ssh_bind_new();
    if (bind_ == nullptr)
      throw std::runtime_error("fault_sshd: ssh_bind_new failed");
    bool no_config = false;
    int quiet = SSH_LOG_NOLOG;
    std::string host_key_file = dir_.path() + "/host_ed25519";
    if (ssh_bind_options_set(bind_, SSH_BIND_OPTIONS_PROCESS_CONFIG, &no_config) != SSH_OK ||
        ssh_bind_options_set(bind_, SSH_BIND_OPTIONS_LOG_VERBOSITY, &quiet) != SSH_OK ||
        ssh_bind_options_set(bind_, SSH_BIND_OPTIONS_HOSTKEY, host_key_file.c_str()) != SSH_OK)
      throw std::runtime_error("fault_sshd: ssh_bind options: " +
                               std::string{ssh_get_error(bind_)});
    acceptor_ = std::thread{[this] { accept_loop(); }};
  } catch (...) {
    release();
    throw;
  }
}

fault_sshd::~fault_sshd() {
  release();
}

void fault_sshd::release() noexcept {
  if (stop_fd_ >= 0) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_fd_, &one, sizeof(one));
  }
  if (acceptor_.joinable())
    acceptor_.join();
  for (auto& w : workers_)
    w.join();
  workers_.clear();
  if (bind_ != nullptr)
    ssh_bind_free(bind_);
  bind_ = nullptr;
  ssh_key_free(user_key_);
  user_key_ = nullptr;
  for (int* fd : {&listen_fd_, &stop_fd_}) {
    if (*fd >= 0)
      ::close(*fd);
    *fd = -1;
  }
}

sshpool::endpoint fault_sshd::make_endpoint(std::uint16_t target_port) const {
  return server_endpoint("127.0.0.1", port_, "fault", identity_file(), known_hosts_file(),
                         target_port);
}

fault_sshd::counters fault_sshd::snapshot() const {
  std::lock_guard<std::mutex> guard{mx_};
  return counters_;
}

bool fault_sshd::wait_until(const std::function<bool(const counters&)>& pred,
                            std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> guard{mx_};
  return cv_.wait_for(guard, timeout, [&] { return pred(counters_); });
}

void fault_sshd::update(const std::function<void(counters&)>& change) {
  {
    std::lock_guard<std::mutex> guard{mx_};
    change(counters_);
  }
  cv_.notify_all();
}

void fault_sshd::accept_loop() {
  pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
  for (;;) {
    if (::poll(fds, 2, -1) < 0)
      continue; // EINTR
    if (fds[0].revents != 0)
      return;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
      continue;
    ssh_session s = ssh_new();
    if (s == nullptr) {
      ::close(fd);
      continue;
    }
    if (ssh_bind_accept_fd(bind_, s, fd) != SSH_OK) {
      // libssh owns the fd once its socket holds it; ssh_free then closes it.
      if (ssh_get_fd(s) != fd)
        ::close(fd);
      ssh_free(s);
      continue;
    }
    update([](counters& c) { ++c.connections; });
    workers_.emplace_back([this, s] { connection{*this, s}.run(); });
  }
}

} // namespace sshpool::test
