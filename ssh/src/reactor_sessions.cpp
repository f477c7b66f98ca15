// The reactor's sessions: adoption (trap 2 of docs/libssh.md), liveness (trap 8), write
// interest, the once-a-second housekeeping, loss and closing, and the sweep that frees dead
// sessions and channels at the end of each pass. See reactor.hpp for the model.
#include "reactor.hpp"

#include <algorithm>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "disconnect.hpp"
#include "sshpool/ssh/log.hpp"

namespace sshpool::ssh {

namespace {

using clock = std::chrono::steady_clock;

template <class T>
void erase_value(std::vector<T*>& xs, T* x) {
  xs.erase(std::remove(xs.begin(), xs.end(), x), xs.end());
}

} // namespace

bool reactor::alive(const session_state& ss) {
  // An agent session also ends when its policy says so (it cancelled the forward in use).
  return ssh_is_connected(ss.s) != 0 &&
         (ssh_get_status(ss.s) & (SSH_CLOSED | SSH_CLOSED_ERROR)) == 0 &&
         (ss.ctl->agent == nullptr || ss.ctl->agent->ended() == std::nullopt);
}

std::string reactor::peer(const session_state& ss) {
  auto& ep = ss.ctl->ep;
  auto where = ep.host + ":" + std::to_string(ep.port);
  return ss.ctl->agent != nullptr ? "agent session of " + ss.ctl->agent->describe()
                                  : "SSH session to " + where;
}

error reactor::session_error(const session_state& ss) {
  std::string text = ssh_get_error(ss.s);
  // Trap 10: the refused keepalive leaves this stale text behind; it says nothing here.
  if (text.find("keepalive@openssh.com") != std::string::npos)
    text.clear();
  if (ss.ctl->agent != nullptr && ss.ctl->agent->ended() != std::nullopt)
    text = ss.ctl->agent->end_message();
  return error{errc::connection_lost,
               peer(ss) + " lost" + (text.empty() ? std::string{} : ": " + text)};
}

void reactor::touch(session_state& ss) {
  if (!ss.touched) {
    ss.touched = true;
    touched_.push_back(&ss);
  }
}

void reactor::cork(session_state& ss) {
  if (ss.corked)
    return;
  int one = 1;
  ss.corked = ::setsockopt(ss.fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one) == 0;
  if (ss.corked)
    ss.ctl->counters->batched_writes.fetch_add(1, std::memory_order_relaxed);
  touch(ss);
}

void reactor::update_interest() {
  // Trap 19: libssh sends only after a poll saw POLLOUT, and every send (the window adjusts
  // inside reads included) takes that back until the next poll. What this pass queued is
  // flushed now: ssh_blocking_flush with a zero timeout polls the session once if libssh
  // holds output and makes no call at all if it holds none (the write went out at once).
  // The next poll (a read, or this flush in a later pass) finds the socket writable again;
  // until then writes queue and leave together with this flush. What is
  // still queued after the flush (a full socket buffer) waits for EPOLLOUT. Polls may read
  // and run callbacks (trap 1): a session lost here is swept at the end of the pass, and
  // dirty channels make the loop poll again at once. Every call into a session touches it,
  // so no output is left queued in a session this does not look at.
  scratch_sessions_.swap(touched_);
  for (auto* ss : scratch_sessions_) {
    ss->touched = false;
    if (ss->dead)
      continue;
    auto rc = ssh_blocking_flush(ss->s, 0);
    if (rc == SSH_ERROR || !alive(*ss)) {
      lose_session(*ss, session_error(*ss));
      continue;
    }
    if (ss->corked) {
      int zero = 0;
      ::setsockopt(ss->fd, IPPROTO_TCP, TCP_CORK, &zero, sizeof zero);
      ss->corked = false;
    }
    std::uint32_t want = EPOLLIN;
    if (rc == SSH_AGAIN)
      want |= EPOLLOUT;
    if (want != ss->interest) {
      epoll_event ev{};
      ev.events = want;
      ev.data.ptr = ss;
      epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, ss->fd, &ev);
      ss->interest = want;
    }
  }
  scratch_sessions_.clear();
}

void reactor::do_adopt(std::shared_ptr<session_control> ctl, connected_session cs) {
  auto s = cs.session;
  if (ctl->closed.load()) {
    disconnect(s);
    return;
  }
  // Trap 2: libssh leaves the socket blocking after connect; a stalled peer would then
  // block send() inside a "non-blocking" session. libssh sends only after POLLOUT.
  int fd = ssh_get_fd(s);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  ssh_set_blocking(s, 0);
  auto ss = std::make_unique<session_state>();
  ss->ctl = ctl;
  ss->s = s;
  ss->nudge = cs.nudge;
  ss->fd = fd;
  ssh_set_counters(s, &ss->bytes, &ss->packets);
  ss->event = ssh_event_new();
  epoll_event ev{};
  ev.events = ss->interest;
  ev.data.ptr = ss.get();
  if (ss->event == nullptr || ssh_event_add_session(ss->event, s) != SSH_OK ||
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    if (ss->event != nullptr) {
      ssh_event_remove_session(ss->event, s);
      ssh_event_free(ss->event);
    }
    disconnect(s);
    ctl->sink->on_open(error{errc::internal, "cannot add the session to the reactor"});
    return;
  }
  auto& adopted = *ss;
  sessions_.emplace(ctl->id, std::move(ss));
  session_count_.fetch_add(1, std::memory_order_relaxed);
  // What the handshake left queued (an agent's replies to its forward requests, sent as it
  // was handed over) leaves in this pass.
  touch(adopted);
  ctl->sink->on_open(error{});
}

// -- housekeeping, loss and closing ---------------------------------------------------------

void reactor::check_sessions() {
  for (auto& [id, ss] : sessions_)
    if (!ss->dead && !alive(*ss))
      lose_session(*ss, session_error(*ss));
}

void reactor::reap_nudges() {
  for (auto& [id, ss] : sessions_)
    if (!ss->dead && ss->nudge != nullptr &&
        (ssh_channel_is_eof(ss->nudge) != 0 || ssh_channel_is_closed(ss->nudge) != 0)) {
      touch(*ss);
      ssh_channel_free(ss->nudge);
      ss->nudge = nullptr;
    }
}

void reactor::expire_idle_channels() {
  auto now = clock::now();
  for (auto& [id, ss] : sessions_) {
    if (ss->dead)
      continue;
    for (auto& c : ss->channels)
      if (c->state == channel_state::phase::idle &&
          now - c->idle_since >= ss->ctl->opts.channel_idle_timeout)
        kill_channel(*c);
  }
}

void reactor::lose_session(session_state& ss, error reason) {
  if (ss.dead)
    return;
  log().info("session #{}: {}", ss.ctl->id, reason.message());
  auto sink = ss.ctl->sink;
  close_session(ss);
  sink->on_lost(std::move(reason));
}

void reactor::close_session(session_state& ss, const std::string& reason) {
  if (ss.dead)
    return;
  ss.dead = true;     // from here on, kill_channel leaves channels to ssh_free
  ss.waiting.clear(); // like requests on channels, they get no event
  orphans_.erase(std::remove_if(orphans_.begin(), orphans_.end(),
                                [&ss](const orphan_open& o) { return o.session == &ss; }),
                 orphans_.end());
  for (auto& c : ss.channels) {
    if (c->state != channel_state::phase::dead)
      kill_channel(*c);
  }
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, ss.fd, nullptr);
  ssh_event_remove_session(ss.event, ss.s);
  ssh_event_free(ss.event);
  ss.event = nullptr;
  disconnect(ss.s, reason);
  ss.s = nullptr;
  dead_sessions_.push_back(ss.ctl->id);
}

void reactor::sweep() {
  for (auto* c : dead_channels_) {
    erase_value(dirty_, c);
    erase_value(opening_, c);
    erase_value(writing_, c);
    auto& chans = c->session->channels;
    chans.erase(
        std::find_if(chans.begin(), chans.end(),
                     [c](const std::unique_ptr<channel_state>& x) { return x.get() == c; }));
    channel_count_.fetch_sub(1, std::memory_order_relaxed);
  }
  dead_channels_.clear();
  if (!dead_sessions_.empty()) {
    // A session lost while its write interest was updated is touched again as it closes.
    touched_.erase(std::remove_if(touched_.begin(), touched_.end(),
                                  [](const session_state* ss) { return ss->dead; }),
                   touched_.end());
    probing_.erase(std::remove_if(probing_.begin(), probing_.end(),
                                  [](const session_state* ss) { return ss->dead; }),
                   probing_.end());
    waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(),
                                  [](const session_state* ss) { return ss->dead; }),
                   waiting_.end());
  }
  for (auto id : dead_sessions_) {
    if (sessions_.erase(id) > 0)
      session_count_.fetch_sub(1, std::memory_order_relaxed);
  }
  dead_sessions_.clear();
}

} // namespace sshpool::ssh
