// The reactor loop: commands, requests on channels, streams and probes. See reactor.hpp for
// the model and the channel phases; sessions are in reactor_sessions.cpp, channel opens in
// reactor_open.cpp, channel progress and the libssh callbacks in reactor_channels.cpp. The numbered
// traps below are those of docs/libssh.md, each answered where it bites.
#include "reactor.hpp"

#include <algorithm>
#include <cerrno>
#include <utility>

#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <libssh/server.h> // ssh_send_keepalive: exported, and works for a client

#include "disconnect.hpp"

#include "sshpool/ssh/log.hpp"

namespace sshpool::ssh {

namespace {

using clock = std::chrono::steady_clock;

constexpr auto idle_check_period = std::chrono::seconds(1);

/// What libssh 0.10 reads from a session's socket per poll (its MAX_BUF_SIZE): a read that
/// got this much may have left more in the socket (trap 19).
constexpr std::uint64_t libssh_read_size = 4096;

/// Polls of one ready session in a row at most (trap 19): 64 KiB of reads, so that a bulk
/// transfer lets the other sessions of the reactor have their turn, and a stream's piece
/// stays well below its window (a piece of a whole window would leave nothing in flight
/// while the consumer acknowledges it).
constexpr int max_polls_in_a_row = 16;

} // namespace

reactor::reactor() {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0)
    throw std::system_error{errno, std::generic_category(), "eventfd"};
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr; // the wake-up fd; sessions carry their session_state
  if (epoll_fd_ < 0 || epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    auto err = errno;
    ::close(wake_fd_);
    if (epoll_fd_ >= 0)
      ::close(epoll_fd_);
    throw std::system_error{err, std::generic_category(), "epoll"};
  }
  next_idle_check_ = clock::now() + idle_check_period;
  thread_ = std::thread{[this] { run(); }};
}

reactor::~reactor() {
  stop();
  ::close(epoll_fd_);
  ::close(wake_fd_);
}

void reactor::stop() {
  if (!thread_.joinable())
    return;
  stopping_ = true;
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof(one));
  thread_.join();
  // The thread is gone: its sessions are ours now.
  std::lock_guard<std::mutex> guard{mx_};
  for (auto& cmd : inbox_)
    if (cmd.what == command::kind::adopt) {
      disconnect(cmd.cs.session);
      cmd.cs = {};
    } else if (cmd.what == command::kind::close) {
      // A close the thread had no turn for keeps its reason (an agent's ssh prints it).
      if (auto ss = sessions_.find(cmd.session_id); ss != sessions_.end() && !ss->second->dead)
        close_session(*ss->second, cmd.reason);
    }
  inbox_.clear();
  for (auto& [id, ss] : sessions_)
    if (!ss->dead)
      close_session(*ss, "sshpool is stopping");
  sessions_.clear();
  touched_.clear();
  probing_.clear();
  waiting_.clear();
  session_count_ = 0;
  channel_count_ = 0;
}

// -- commands from other threads ------------------------------------------------------------

void reactor::adopt(std::shared_ptr<session_control> ctl, connected_session cs) {
  command cmd{command::kind::adopt};
  cmd.session_id = ctl->id;
  cmd.ctl = std::move(ctl);
  cmd.cs = cs;
  post(std::move(cmd));
}

void reactor::forward(std::uint64_t session_id, std::uint64_t tag, outbound_request req) {
  command cmd{command::kind::forward};
  cmd.session_id = session_id;
  cmd.tag = tag;
  cmd.req = std::move(req);
  post(std::move(cmd));
}

void reactor::cancel(std::uint64_t session_id, std::uint64_t tag) {
  command cmd{command::kind::cancel};
  cmd.session_id = session_id;
  cmd.tag = tag;
  post(std::move(cmd));
}

void reactor::probe(std::uint64_t session_id) {
  command cmd{command::kind::probe};
  cmd.session_id = session_id;
  post(std::move(cmd));
}

void reactor::ack(std::uint64_t session_id, std::uint64_t tag, std::uint64_t bytes) {
  command cmd{command::kind::ack};
  cmd.session_id = session_id;
  cmd.tag = tag;
  cmd.bytes = bytes;
  post(std::move(cmd));
}

void reactor::close(std::uint64_t session_id, std::string reason) {
  command cmd{command::kind::close};
  cmd.session_id = session_id;
  cmd.reason = std::move(reason);
  post(std::move(cmd));
}

void reactor::post(command cmd) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> guard{mx_};
    if (stopping_) {
      if (cmd.what == command::kind::adopt)
        disconnect(cmd.cs.session);
      return;
    }
    inbox_.push_back(std::move(cmd));
    wake = !wake_pending_;
    wake_pending_ = true;
  }
  if (wake) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof(one));
  }
}

// -- the loop -------------------------------------------------------------------------------

void reactor::run() {
  pthread_setname_np(pthread_self(), "sshpool.reactor");
  while (!stopping_.load(std::memory_order_relaxed)) {
    drain_commands();
    bool busy = service();
    auto now = clock::now();
    if (now >= next_idle_check_) {
      expire_idle_channels();
      reap_nudges();
      check_sessions();
      next_idle_check_ = now + idle_check_period;
    }
    update_interest();
    sweep();
    // Callbacks that fired inside our own calls (trap 1) left dirty channels: poll without
    // sleeping so they are handled at once.
    int timeout = 0;
    if (!busy && dirty_.empty()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next_idle_check_ - now);
      timeout = static_cast<int>(std::max<std::int64_t>(left.count(), 1));
    }
    poll_sessions(timeout);
  }
}

void reactor::poll_sessions(int timeout) {
  // Each session has its own ssh_event, so the polls that libssh runs inside our calls on a
  // session (trap 1) only ever touch that session: a dying session cannot put another
  // session's state into error, and the wake-up fd is only read here.
  epoll_event events[64];
  auto n = epoll_wait(epoll_fd_, events, 64, timeout);
  for (int i = 0; i < n; ++i) {
    auto* ss = static_cast<session_state*>(events[i].data.ptr);
    if (ss == nullptr) {
      std::uint64_t value = 0;
      [[maybe_unused]] auto r = ::read(wake_fd_, &value, sizeof(value));
      continue;
    }
    if (ss->dead)
      continue;
    touch(*ss);
    read_session(*ss);
  }
}

void reactor::read_session(session_state& ss) {
  // Trap 19: libssh reads 4 KiB per poll. A read that got all of it may have left more in
  // the socket: poll the session again at once (its poll() answers at once) instead of
  // going round the loop and through epoll_wait for every 4 KiB.
  for (int polls = 0; polls < max_polls_in_a_row; ++polls) {
    auto before = ss.bytes.in_bytes;
    if (!poll_session(ss) || ss.bytes.in_bytes - before < libssh_read_size)
      return;
  }
}

bool reactor::poll_session(session_state& ss) {
  if (ssh_event_dopoll(ss.event, 0) != SSH_ERROR && alive(ss))
    return true;
  lose_session(ss, session_error(ss)); // trap 8: session death fires no channel callback
  return false;
}

void reactor::drain_commands() {
  {
    std::lock_guard<std::mutex> guard{mx_};
    batch_.swap(inbox_);
    wake_pending_ = false;
  }
  // Trap 19: a session that this batch names more than once is corked before its first
  // command, so that what the batch writes to it leaves together. Acknowledgements only
  // grow windows, which libssh sends at the end of the pass anyway.
  ++pass_;
  if (batch_.size() > 1) {
    for (auto& cmd : batch_) {
      if (cmd.what == command::kind::adopt || cmd.what == command::kind::ack)
        continue;
      if (auto* ss = find(cmd.session_id)) {
        if (ss->named_in_pass == pass_)
          cork(*ss);
        ss->named_in_pass = pass_;
      }
    }
  }
  for (auto& cmd : batch_) {
    if (cmd.what == command::kind::adopt) {
      do_adopt(std::move(cmd.ctl), cmd.cs);
      continue;
    }
    auto* ss = find(cmd.session_id);
    if (ss == nullptr)
      continue; // closed or lost: the owner already knows (on_lost) or asked for it
    switch (cmd.what) {
    case command::kind::forward:
      do_forward(*ss, cmd.tag, std::move(cmd.req), false);
      break;
    case command::kind::cancel:
      do_cancel(*ss, cmd.tag);
      break;
    case command::kind::close:
      close_session(*ss, cmd.reason);
      break;
    case command::kind::probe:
      do_probe(*ss);
      break;
    case command::kind::ack:
      do_ack(*ss, cmd.tag, cmd.bytes);
      break;
    case command::kind::adopt:
      break;
    }
  }
  batch_.clear();
}

reactor::session_state* reactor::find(std::uint64_t session_id) {
  auto i = sessions_.find(session_id);
  return i == sessions_.end() || i->second->dead ? nullptr : i->second.get();
}

void reactor::do_forward(session_state& ss, std::uint64_t tag, outbound_request req, bool fresh) {
  // max_channels is a hard cap on the wire: a request beyond it waits (in order) for a
  // channel to finish, to close, or, if abandoned while opening, for the server's answer.
  if (!ss.waiting.empty() || !has_room(ss)) {
    if (ss.waiting.empty())
      waiting_.push_back(&ss);
    ss.waiting.push_back({tag, std::move(req), fresh});
    return;
  }
  start_request(ss, tag, std::move(req), fresh);
}

bool reactor::has_room(const session_state& ss) {
  if (ss.live_channels + ss.orphan_channels < ss.ctl->opts.max_channels)
    return true;
  return std::any_of(ss.channels.begin(), ss.channels.end(),
                     [](const auto& c) { return c->state == channel_state::phase::idle; });
}

bool reactor::start_waiting() {
  bool started = false;
  for (std::size_t i = 0; i < waiting_.size();) {
    auto& ss = *waiting_[i];
    while (!ss.dead && !ss.waiting.empty() && has_room(ss)) {
      auto w = std::move(ss.waiting.front());
      ss.waiting.pop_front();
      start_request(ss, w.tag, std::move(w.req), w.fresh);
      started = true;
    }
    if (ss.dead || ss.waiting.empty()) {
      waiting_[i] = waiting_.back();
      waiting_.pop_back();
    } else {
      ++i;
    }
  }
  return started;
}

void reactor::start_request(session_state& ss, std::uint64_t tag, outbound_request req,
                            bool fresh) {
  touch(ss);
  channel_state* c = nullptr;
  if (!fresh) {
    // Most recently used first: the others are closer to their idle timeout.
    for (auto i = ss.channels.rbegin(); i != ss.channels.rend(); ++i)
      if ((*i)->state == channel_state::phase::idle && !(*i)->eof && !(*i)->remote_closed &&
          !(*i)->stray_data) {
        c = i->get();
        break;
      }
  }
  int rc = SSH_OK;
  if (c == nullptr) {
    // At the cap, has_room found an idle channel we may not reuse: it makes room.
    if (ss.live_channels + ss.orphan_channels >= ss.ctl->opts.max_channels) {
      auto idle = std::find_if(ss.channels.begin(), ss.channels.end(), [](const auto& x) {
        return x->state == channel_state::phase::idle;
      });
      if (idle != ss.channels.end())
        kill_channel(**idle);
    }
    auto ch = ssh_channel_new(ss.s);
    if (ch == nullptr) {
      ss.ctl->sink->on_failure(tag, error{errc::connection_lost, ssh_get_error(ss.s)}, {});
      return;
    }
    auto fresh_channel = std::make_unique<channel_state>(ss.ctl->opts.limits);
    c = fresh_channel.get();
    c->owner = this;
    c->session = &ss;
    c->ch = ch;
    // Trap 6: the struct is not copied and callbacks stack: zero it, init, keep it alive.
    c->callbacks = {};
    c->callbacks.userdata = c;
    c->callbacks.channel_data_function = &reactor::on_data;
    c->callbacks.channel_eof_function = &reactor::on_eof;
    c->callbacks.channel_close_function = &reactor::on_close;
    ssh_callbacks_init(&c->callbacks);
    ssh_set_channel_callbacks(ch, &c->callbacks);
    ss.channels.push_back(std::move(fresh_channel));
    ++ss.live_channels;
    channel_count_.fetch_add(1, std::memory_order_relaxed);
    c->state = channel_state::phase::opening;
    c->open_seen_packets = ss.packets.in_packets;
    c->open_started = clock::now();
    rc = open_channel(ch, *ss.ctl);
  }
  c->retried = fresh;
  c->tag = tag;
  c->bytes_out = req.wire.size();
  c->out = std::move(req.wire);
  c->out_off = 0;
  c->info = req.info;
  c->bytes_in = 0;
  c->stray_data = false;
  c->stream = req.stream;
  c->head_sent = false;
  c->paused = false;
  c->pending.clear();
  c->unacked = 0;
  c->parser.reset(req.info.head);
  // A stream's body is handed on, not accumulated, but max_response_bytes applies all the
  // same: an endless body would otherwise hold the channel and its consumer forever.
  if (c->stream)
    c->parser.set_body_sink([c](std::string_view bytes) { c->pending.append(bytes); });
  else
    c->parser.set_body_sink(nullptr);
  if (c->state == channel_state::phase::idle) {
    c->state = channel_state::phase::busy;
    write_some(*c);
  } else {
    advance_open(*c, rc);
  }
}

void reactor::do_ack(session_state& ss, std::uint64_t tag, std::uint64_t bytes) {
  for (auto& cp : ss.channels) {
    auto& c = *cp;
    if (c.tag != tag || !c.stream || c.state != channel_state::phase::busy)
      continue;
    c.unacked -= std::min(c.unacked, bytes);
    if (!c.paused || c.unacked + c.pending.size() >= ss.ctl->opts.stream_window)
      return;
    // Resume: take what libssh kept for us while paused; its window grows as we read.
    touch(ss);
    c.paused = false;
    char buf[16384];
    while (!c.paused && c.state == channel_state::phase::busy && !c.parser.complete() &&
           !c.parser.failed()) {
      auto n = ssh_channel_read_nonblocking(c.ch, buf, sizeof(buf), 0);
      if (n == SSH_EOF) {
        c.eof = true;
        break;
      }
      if (n <= 0)
        break;
      take(c, buf, static_cast<std::size_t>(n));
    }
    mark_dirty(c);
    return;
  }
}

void reactor::emit_stream(channel_state& c) {
  auto& sink = *c.session->ctl->sink;
  if (!c.head_sent && c.parser.head_complete()) {
    c.head_sent = true;
    sink.on_stream_head(c.tag, c.parser.result());
  }
  if (!c.pending.empty()) {
    c.unacked += c.pending.size();
    sink.on_stream_chunk(c.tag, std::move(c.pending));
    c.pending.clear();
  }
}

void reactor::do_probe(session_state& ss) {
  touch(ss);
  if (!ss.probing) {
    ss.probing = true;
    ss.probe_packets = ss.packets.in_packets;
    probing_.push_back(&ss);
  }
  // Trap 10: OpenSSH answers REQUEST_FAILURE, which libssh stores; the next call then only
  // consumes that stored reply and sends nothing. The second call sends in that case; with
  // a request still unanswered neither call sends again. Liveness is judged by inbound
  // packets (any packet counts, the reply included), never by these return codes.
  ssh_send_keepalive(ss.s);
  ssh_send_keepalive(ss.s);
  if (!alive(ss))
    lose_session(ss, session_error(ss));
}

void reactor::check_probes() {
  for (std::size_t i = 0; i < probing_.size();) {
    auto& ss = *probing_[i];
    if (!ss.dead && ss.packets.in_packets == ss.probe_packets) {
      ++i;
      continue;
    }
    if (!ss.dead) {
      ss.probing = false;
      ss.ctl->sink->on_alive();
    }
    probing_[i] = probing_.back();
    probing_.pop_back();
  }
}

void reactor::do_cancel(session_state& ss, std::uint64_t tag) {
  auto w = std::find_if(ss.waiting.begin(), ss.waiting.end(),
                        [tag](const waiting_request& x) { return x.tag == tag; });
  if (w != ss.waiting.end()) {
    ss.waiting.erase(w);
    return;
  }
  for (auto& c : ss.channels)
    if (c->tag == tag &&
        (c->state == channel_state::phase::busy || c->state == channel_state::phase::opening)) {
      kill_channel(*c);
      return;
    }
}

} // namespace sshpool::ssh
