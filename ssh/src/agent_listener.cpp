// The agent listener's loop (see sshpool/ssh/agent_listener.hpp). One thread, one epoll set
// over the listening socket, an eventfd that stops it, and the socket of every session not
// yet handed on. Those sessions are libssh server sessions in non-blocking mode, each with
// its own ssh_event (trap 1 of docs/libssh.md), driven only when their socket is ready, so
// no peer can hold the thread; their answers come from their agent_session policy.
//
//   accept ──admit? no──► closed at once, no SSH byte (max_startups, _per_source, penalized)
//      │ yes: a startup, deadline = now + login_grace
//      ▼
//   key exchange ──error, or the peer left──► ended: handshake_failed
//      │ ssh_handle_key_exchange OK
//      ▼
//   authenticating ──peer left──► ended: left_unauthenticated
//      │           ──max_auth_tries failures, another service──► ended: that reason
//      │ publickey accepted (the policy's key, from an allowed address, not expired)
//      ▼
//   authenticated ──peer left──► ended: no_forward
//      │ an allowed tcpip-forward bound (answered with its port)
//      ▼
//   handed on: on_agent(agent_handle) ──► a reactor adopts it, or it is refused
//
//   every state above "handed on": login_grace passed ──► ended: login_grace
//
// Each end is counted and logged (rate-limited) with its reason, the peer is sent a
// disconnect message, and the source's startup ends with its penalty (agent_gate.hpp).
//
// An epoll event names its session by id (never reused), not by address: a session ended
// and freed in an earlier pass may still have an event queued (libssh closes a socket it
// finds broken, and the descriptor's number may then be reused by the next accept), and such
// an event finds no live session and is dropped. For the same reason the epoll set is
// changed for a session only while libssh still holds its descriptor.
#include "sshpool/ssh/agent_listener.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "agent_gate.hpp"
#include "agent_session.hpp"
#include "disconnect.hpp"
#include "host_key.hpp"
#include "session_control.hpp"
#include "sshpool/ssh/log.hpp"

namespace sshpool::ssh {

namespace {

using clock = std::chrono::steady_clock;

constexpr int accepts_per_pass = 64;
constexpr auto accept_pause = std::chrono::milliseconds(100);
constexpr auto housekeeping_period = std::chrono::seconds(1);

/// A session not yet handed on.
/// The epoll tags of the listening socket and the stop eventfd; sessions' tags are their ids.
constexpr std::uint64_t listen_tag = ~std::uint64_t{0};
constexpr std::uint64_t wake_tag = listen_tag - 1;

struct pending {
  /// Also its epoll tag: ids count up from 1, far below the two tags above.
  std::uint64_t id = 0;
  ssh_session s = nullptr;
  ssh_event event = nullptr;
  int fd = -1;
  std::string source;
  clock::time_point deadline;
  bool kexed = false;
  bool done = false;
  std::uint32_t interest = EPOLLIN;
  std::shared_ptr<agent_session> agent;
};

/// Whether libssh still holds the session's descriptor (it closes one it finds broken, and
/// the number may then belong to another session's socket).
bool holds_fd(const pending& p) {
  return p.s != nullptr && ssh_get_fd(p.s) == p.fd;
}

bool alive(ssh_session s) {
  return ssh_is_connected(s) != 0 && (ssh_get_status(s) & (SSH_CLOSED | SSH_CLOSED_ERROR)) == 0;
}

/// The numeric address and port of a peer; IPv4-mapped IPv6 addresses as IPv4.
std::pair<std::string, std::uint16_t> peer_of(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    auto& a = reinterpret_cast<const sockaddr_in&>(addr);
    ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof text);
    return {text, ntohs(a.sin_port)};
  }
  auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
  if (IN6_IS_ADDR_V4MAPPED(&a.sin6_addr))
    ::inet_ntop(AF_INET, a.sin6_addr.s6_addr + 12, text, sizeof text);
  else
    ::inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof text);
  return {text, ntohs(a.sin6_port)};
}

/// A listening socket for "IPv4:port" or "[IPv6]:port" (non-blocking).
expected<int> listen_on(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size())
    return error{errc::invalid_argument,
                 "agent listen address '" + listen + "' is not IPv4:port or [IPv6]:port"};
  auto host = listen.substr(0, colon);
  auto port = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr)
    return error{errc::invalid_argument,
                 "agent listen address '" + listen + "' is not a numeric IPv4:port or [IPv6]:port"};
  int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  bool ok = fd >= 0 && ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
            ::bind(fd, found->ai_addr, found->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0;
  int err = errno;
  ::freeaddrinfo(found);
  if (!ok) {
    if (fd >= 0)
      ::close(fd);
    return error{errc::connect_failed,
                 "cannot listen for agents on " + listen + ": " + std::strerror(err)};
  }
  return fd;
}

std::uint16_t local_port(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return peer_of(addr).second;
}

} // namespace

struct agent_listener::impl {
  std::shared_ptr<agent_shared> shared;
  agent_fn on_agent;
  std::string fingerprint;
  std::string public_key;
  ssh_bind bind = nullptr;
  int listen_fd = -1;
  int epoll_fd = -1;
  int wake_fd = -1;
  std::uint16_t port = 0;
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> pre_auth{0};
  std::atomic<std::uint64_t> penalized{0};
  std::thread thread;

  // -- listener thread only --------------------------------------------------------------
  agent_gate gate;
  std::vector<std::unique_ptr<pending>> sessions;
  bool accepting = true;
  clock::time_point accept_resume;
  clock::time_point next_housekeeping;

  impl(std::shared_ptr<agent_shared> sh, agent_fn cb)
      : shared(std::move(sh)), on_agent(std::move(cb)),
        gate(shared->options().max_startups, shared->options().max_startups_per_source,
             shared->options().penalties) {}

  ~impl() {
    for (int fd : {listen_fd, epoll_fd, wake_fd})
      if (fd >= 0)
        ::close(fd);
    if (bind != nullptr)
      ssh_bind_free(bind);
  }

  void run();
  int wait_ms(clock::time_point now) const;
  /// The session not yet ended whose id is `id`, if any (at most max_startups to look at).
  pending* live(std::uint64_t id) {
    for (auto& p : sessions)
      if (p->id == id)
        return p->done ? nullptr : p.get();
    return nullptr;
  }
  void accept_all(clock::time_point now);
  void start_session(int fd, const std::string& address, std::uint16_t port, clock::time_point now);
  void drive(pending& p, clock::time_point now);
  void settle(pending& p, clock::time_point now);
  void end(pending& p, std::optional<agent_refusal> why, const std::string& message,
           clock::time_point now);
  void release(pending& p, std::chrono::milliseconds penalty, clock::time_point now);
  void hand_off(pending& p, clock::time_point now);
  void set_accepting(bool on);
  /// Publishes the gauge of penalized sources (they expire with time).
  void housekeeping(clock::time_point now);
};

void agent_listener::impl::run() {
  pthread_setname_np(pthread_self(), "sshpool.agents");
  epoll_event events[64];
  next_housekeeping = clock::now() + housekeeping_period;
  while (!stopping.load(std::memory_order_relaxed)) {
    int n = ::epoll_wait(epoll_fd, events, 64, wait_ms(clock::now()));
    auto now = clock::now();
    for (int i = 0; i < n; ++i) {
      auto tag = events[i].data.u64;
      if (tag == wake_tag)
        continue; // stopping: the loop condition ends it
      if (tag == listen_tag)
        accept_all(now);
      else if (auto* p = live(tag))
        drive(*p, now);
    }
    for (auto& p : sessions)
      if (!p->done && now >= p->deadline)
        end(*p, agent_refusal::login_grace, "Login grace time exceeded", now);
    if (!accepting && now >= accept_resume)
      set_accepting(true);
    if (now >= next_housekeeping) {
      housekeeping(now);
      next_housekeeping = now + housekeeping_period;
    }
    sessions.erase(std::remove_if(sessions.begin(), sessions.end(),
                                  [](const std::unique_ptr<pending>& p) { return p->done; }),
                   sessions.end());
    if (pre_auth.exchange(sessions.size(), std::memory_order_relaxed) != sessions.size())
      shared->notify();
  }
  for (auto& p : sessions)
    if (!p->done)
      end(*p, std::nullopt, "the gateway is stopping", clock::now());
  sessions.clear();
  pre_auth = 0;
}

int agent_listener::impl::wait_ms(clock::time_point now) const {
  auto until = next_housekeeping;
  for (auto& p : sessions)
    until = std::min(until, p->deadline);
  if (!accepting)
    until = std::min(until, accept_resume);
  auto left = std::chrono::ceil<std::chrono::milliseconds>(until - now).count();
  return static_cast<int>(std::clamp<std::int64_t>(left, 0, 1000));
}

void agent_listener::impl::accept_all(clock::time_point now) {
  for (int i = 0; i < accepts_per_pass; ++i) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: the pending connection would wake us at once, again and again.
        log().warn("agent listener: cannot accept ({}); pausing for {} ms", std::strerror(errno),
                   accept_pause.count());
        set_accepting(false);
        accept_resume = now + accept_pause;
        return;
      }
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      return; // EAGAIN: none left
    }
    shared->count(shared->connections);
    auto [address, port] = peer_of(addr);
    if (auto refusal = gate.admit(source_key(address), now)) {
      ::close(fd);
      shared->refuse(*refusal,
                     "connection from " + address + ":" + std::to_string(port) + " closed at once");
      continue;
    }
    start_session(fd, address, port, now);
  }
}

void agent_listener::impl::start_session(int fd, const std::string& address, std::uint16_t port,
                                         clock::time_point now) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto p = std::make_unique<pending>();
  p->id = next_session_id();
  p->fd = fd;
  p->source = source_key(address);
  p->deadline = now + shared->options().login_grace;
  p->agent = std::make_shared<agent_session>(shared, address, port);
  p->s = ssh_new();
  if (p->s == nullptr || ssh_bind_accept_fd(bind, p->s, fd) != SSH_OK) {
    // libssh owns the descriptor once its socket holds it; ssh_free closes it then.
    if (p->s == nullptr || ssh_get_fd(p->s) != fd)
      ::close(fd);
    if (p->s != nullptr)
      ssh_free(p->s);
    gate.finish(p->source, {}, now);
    log().error("agent listener: cannot set up a session for {}:{}: {}", address, port,
                ssh_get_error(bind));
    return;
  }
  // Trap 15: the policy's callbacks first (packets after the key exchange are dispatched
  // within it); the first call sends our banner and gives the session its poll context,
  // which ssh_event_add_session needs; the key exchange goes on as the peer's packets
  // arrive.
  p->agent->attach(p->s);
  ssh_set_blocking(p->s, 0);
  int rc = ssh_handle_key_exchange(p->s);
  p->event = ssh_event_new();
  epoll_event ev{};
  ev.events = p->interest;
  ev.data.u64 = p->id;
  auto& ref = *p;
  sessions.push_back(std::move(p));
  if (rc == SSH_ERROR || ref.event == nullptr ||
      ssh_event_add_session(ref.event, ref.s) != SSH_OK ||
      ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    end(ref, agent_refusal::handshake_failed, {}, now);
    return;
  }
  settle(ref, now);
}

void agent_listener::impl::drive(pending& p, clock::time_point now) {
  if (!p.kexed) {
    int rc = ssh_handle_key_exchange(p.s);
    if (rc == SSH_ERROR) {
      end(p, agent_refusal::handshake_failed, {}, now);
      return;
    }
    // Packets that followed the key exchange in the same read were dispatched already.
    p.kexed = rc == SSH_OK;
  } else {
    ssh_event_dopoll(p.event, 0); // the policy's callback answers what arrived
  }
  settle(p, now);
}

void agent_listener::impl::settle(pending& p, clock::time_point now) {
  auto& agent = *p.agent;
  if (agent.ended() != std::nullopt) {
    end(p, agent.ended(), agent.end_message(), now);
  } else if (!alive(p.s)) {
    end(p,
        !p.kexed                 ? agent_refusal::handshake_failed
        : !agent.authenticated() ? agent_refusal::left_unauthenticated
                                 : agent_refusal::no_forward,
        {}, now);
  } else if (!agent.forwards().empty()) {
    hand_off(p, now);
  } else {
    // libssh keeps what the socket did not take; it needs EPOLLOUT to send it.
    std::uint32_t want = EPOLLIN;
    if ((ssh_get_poll_flags(p.s) & SSH_WRITE_PENDING) != 0)
      want |= EPOLLOUT;
    if (want != p.interest && holds_fd(p)) {
      epoll_event ev{};
      ev.events = want;
      ev.data.u64 = p.id;
      ::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, p.fd, &ev);
      p.interest = want;
    }
  }
}

void agent_listener::impl::end(pending& p, std::optional<agent_refusal> why,
                               const std::string& message, clock::time_point now) {
  auto& agent = *p.agent;
  if (why)
    shared->refuse(*why, agent.describe() + " (session #" + std::to_string(p.id) + ")" +
                             (message.empty() ? std::string{} : ": " + message));
  auto& pen = shared->options().penalties;
  // An authenticated user's source is never penalized (other agents may share its address).
  auto penalty = !why || agent.authenticated()       ? std::chrono::milliseconds{}
                 : why == agent_refusal::login_grace ? pen.grace_exceeded
                 : agent.auth_failures() > 0         ? pen.auth_failed
                                                     : pen.no_auth;
  auto s = p.s;
  release(p, penalty, now);
  disconnect(s, message);
}

void agent_listener::impl::release(pending& p, std::chrono::milliseconds penalty,
                                   clock::time_point now) {
  if (holds_fd(p))
    ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, p.fd, nullptr);
  if (p.event != nullptr) {
    ssh_event_remove_session(p.event, p.s);
    ssh_event_free(p.event);
    p.event = nullptr;
  }
  gate.finish(p.source, penalty, now);
  if (penalty.count() > 0)
    housekeeping(now); // the gauge of penalized sources may have grown
  p.s = nullptr;
  p.done = true;
}

void agent_listener::impl::hand_off(pending& p, clock::time_point now) {
  auto st = std::make_unique<agent_handle::state>();
  st->session = p.s;
  st->agent = p.agent;
  st->id = p.id;
  release(p, {}, now);
  shared->count(shared->agents);
  log().debug("agent {} handed on as session #{}", st->agent->describe(), st->id);
  try {
    on_agent(agent_handle{std::move(st)});
  } catch (const std::exception& e) {
    log().error("agent listener: on_agent threw: {}", e.what());
  } catch (...) {
    log().error("agent listener: on_agent threw");
  }
}

void agent_listener::impl::set_accepting(bool on) {
  accepting = on;
  epoll_event ev{};
  ev.events = on ? std::uint32_t{EPOLLIN} : 0;
  ev.data.u64 = listen_tag;
  ::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, listen_fd, &ev);
}

void agent_listener::impl::housekeeping(clock::time_point now) {
  auto n = gate.penalized(now);
  if (penalized.exchange(n, std::memory_order_relaxed) != n)
    shared->notify();
}

// -- agent_listener -------------------------------------------------------------------------

expected<std::unique_ptr<agent_listener>>
agent_listener::start(agent_listener_options opts, lookup_fn lookup, agent_fn on_agent) {
  if (opts.host_key_file.empty() || opts.max_startups == 0 || opts.max_startups_per_source == 0 ||
      opts.max_auth_tries == 0 || opts.login_grace.count() <= 0 || !lookup || !on_agent)
    return error{errc::invalid_argument,
                 "agent listener: host_key_file, lookup and on_agent are required; "
                 "login_grace, max_startups, max_startups_per_source and max_auth_tries must "
                 "be positive"};
  auto key = load_or_create_host_key(opts.host_key_file);
  if (!key)
    return key.error();
  auto fd = listen_on(opts.listen);
  if (!fd)
    return fd.error();
  auto listen = opts.listen;
  auto host_key_file = opts.host_key_file;
  auto self = std::make_unique<impl>(
      std::make_shared<agent_shared>(std::move(opts), std::move(lookup)), std::move(on_agent));
  self->listen_fd = *fd;
  self->port = local_port(*fd);
  self->fingerprint = key_fingerprint(key->get());
  self->public_key = public_key_line(key->get());
  self->bind = ssh_bind_new();
  bool process_config = false;
  int quiet = SSH_LOG_NOLOG;
  if (self->bind == nullptr ||
      ssh_bind_options_set(self->bind, SSH_BIND_OPTIONS_PROCESS_CONFIG, &process_config) !=
          SSH_OK ||
      ssh_bind_options_set(self->bind, SSH_BIND_OPTIONS_LOG_VERBOSITY, &quiet) != SSH_OK ||
      ssh_bind_options_set(self->bind, SSH_BIND_OPTIONS_IMPORT_KEY, key->get()) != SSH_OK)
    return error{errc::internal, "agent listener: cannot set up libssh's ssh_bind"};
  key->release(); // the ssh_bind owns it now
  self->epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  self->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = listen_tag;
  epoll_event wake{};
  wake.events = EPOLLIN;
  wake.data.u64 = wake_tag;
  if (self->epoll_fd < 0 || self->wake_fd < 0 ||
      ::epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, self->listen_fd, &ev) != 0 ||
      ::epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, self->wake_fd, &wake) != 0)
    return error{errc::internal, std::string{"agent listener: epoll: "} + std::strerror(errno)};
  auto* raw = self.get();
  self->thread = std::thread{[raw] { raw->run(); }};
  log().info("agent listener on {} (port {}), host key {} ('{}')", listen, self->port,
             self->fingerprint, host_key_file);
  return std::unique_ptr<agent_listener>{new agent_listener{std::move(self)}};
}

agent_listener::agent_listener(std::unique_ptr<impl> impl) : impl_(std::move(impl)) {}

agent_listener::~agent_listener() {
  stop();
}

void agent_listener::stop() {
  if (!impl_->thread.joinable())
    return;
  impl_->stopping = true;
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(impl_->wake_fd, &one, sizeof one);
  impl_->thread.join();
  ::close(impl_->listen_fd);
  impl_->listen_fd = -1;
}

std::uint16_t agent_listener::port() const noexcept {
  return impl_->port;
}

const std::string& agent_listener::fingerprint() const noexcept {
  return impl_->fingerprint;
}

const std::string& agent_listener::public_key() const noexcept {
  return impl_->public_key;
}

bool agent_listener::wait_for(const std::function<bool(const agent_listener_stats&)>& pred,
                              std::chrono::milliseconds timeout) const {
  return impl_->shared->wait_for([&] { return pred(stats()); }, timeout);
}

agent_listener_stats agent_listener::stats() const {
  agent_listener_stats out;
  auto& sh = *impl_->shared;
  out.connections = sh.connections.load(std::memory_order_relaxed);
  out.authenticated = sh.authenticated.load(std::memory_order_relaxed);
  out.agents = sh.agents.load(std::memory_order_relaxed);
  out.pre_auth = impl_->pre_auth.load(std::memory_order_relaxed);
  out.penalized_sources = impl_->penalized.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < agent_refusal_count; ++i)
    out.refused[i] = sh.refused[i].load(std::memory_order_relaxed);
  return out;
}

} // namespace sshpool::ssh
