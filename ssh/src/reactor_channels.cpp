// Channel progress (writing requests as the window allows, delivering what came, completing
// and failing them) and the libssh channel callbacks, which only record state (trap 1 of
// docs/libssh.md). See reactor.hpp for the model and the channel phases; the loop and the
// commands are in reactor.cpp.
#include "reactor.hpp"

#include <algorithm>

#include "sshpool/ssh/log.hpp"

namespace sshpool::ssh {

namespace {

using clock = std::chrono::steady_clock;

} // namespace

// -- channel progress -----------------------------------------------------------------------

bool reactor::service() {
  bool progressed = !dirty_.empty();
  // Callbacks may push to dirty_ while we work (trap 1): work on a snapshot.
  scratch_.swap(dirty_);
  for (auto* c : scratch_) {
    c->in_dirty = false;
    service_dirty(*c);
  }
  scratch_.clear();
  if (!opening_.empty()) {
    scratch_.swap(opening_);
    for (auto* c : scratch_)
      if (c->state == channel_state::phase::opening)
        service_opening(*c);
    progressed = progressed || opening_.size() != scratch_.size();
    scratch_.clear();
  }
  if (!writing_.empty()) {
    scratch_.swap(writing_);
    for (auto* c : scratch_) {
      c->in_writing = false;
      if (c->state == channel_state::phase::busy) {
        auto before = c->out_off;
        write_some(*c);
        progressed = progressed || c->out_off != before;
      }
    }
    scratch_.clear();
  }
  if (!orphans_.empty())
    service_orphans();
  if (!probing_.empty())
    check_probes();
  if (!waiting_.empty())
    progressed = start_waiting() || progressed;
  return progressed;
}

void reactor::write_some(channel_state& c) {
  // Trap 4: non-blocking writes are short (0 on a zero window) and nothing signals a
  // growing window, so write at most the window and look again after each poll.
  touch(*c.session);
  while (c.out_off < c.out.size()) {
    auto window = ssh_channel_window_size(c.ch);
    if (window == 0)
      break;
    auto n = std::min<std::size_t>(c.out.size() - c.out_off, window);
    auto rc = ssh_channel_write(c.ch, c.out.data() + c.out_off, static_cast<std::uint32_t>(n));
    if (rc == SSH_ERROR) {
      if (!alive(*c.session)) {
        lose_session(*c.session, session_error(*c.session));
        return;
      }
      // The service closed the channel under us: handled like its EOF (trap 7's retry).
      c.remote_closed = true;
      mark_dirty(c);
      return;
    }
    if (rc == 0)
      break;
    c.out_off += static_cast<std::size_t>(rc);
  }
  if (c.out_off < c.out.size() && !c.in_writing) {
    c.in_writing = true;
    writing_.push_back(&c);
  }
}

void reactor::service_dirty(channel_state& c) {
  using phase = channel_state::phase;
  if (c.state == phase::idle) {
    if (c.eof || c.remote_closed || c.stray_data)
      kill_channel(c);
    return;
  }
  if (c.state != phase::busy)
    return;
  if (c.stream) {
    // A response complete before its head went out is reported whole, in one event.
    if (!c.head_sent && c.parser.complete()) {
      complete(c);
      return;
    }
    emit_stream(c);
    // Paused, libssh may still hold data before the EOF: act on the EOF once resumed.
    if (c.paused && !c.parser.complete() && !c.parser.failed())
      return;
  }
  if (c.parser.complete()) {
    complete(c);
  } else if (c.parser.failed()) {
    fail(c, c.parser.failure());
  } else if (c.eof || c.remote_closed) {
    // Trap 7: a reused channel closed before any response byte is most likely the
    // backend's idle close racing with our request; retry idempotent requests once.
    if (!c.parser.received_any() && c.reused && c.info.idempotent && !c.retried) {
      auto& ss = *c.session;
      auto tag = c.tag;
      outbound_request req{std::move(c.out), c.info};
      kill_channel(c);
      log().debug("session #{}: request {} retried on a fresh channel", ss.ctl->id, tag);
      do_forward(ss, tag, std::move(req), true);
      return;
    }
    c.parser.finish();
    if (c.parser.complete())
      complete(c);
    else
      fail(c, c.parser.failure());
  }
}

void reactor::complete(channel_state& c) {
  // A stream paused as it completed may have left bytes inside libssh that nobody asked
  // for (trap 5): they would reach the next request's parser, so its channel is not reused.
  bool reuse = c.parser.keep_alive() && !c.info.close && !c.eof && !c.remote_closed &&
               !c.stray_data && !c.paused && c.out_off == c.out.size();
  auto& ss = *c.session;
  auto tag = c.tag;
  auto res = std::move(c.parser.result());
  if (c.stream && !c.head_sent)
    res.body = std::exchange(c.pending, {}); // whole: the body set aside for the stream
  if (reuse) {
    c.state = channel_state::phase::idle;
    c.reused = true;
    c.tag = 0;
    c.out.clear();
    if (c.out.capacity() > (std::size_t{64} << 10))
      std::string{}.swap(c.out);
    c.out_off = 0;
    c.idle_since = clock::now();
  } else {
    kill_channel(c);
  }
  ss.ctl->sink->on_response(tag, std::move(res), info_of(c));
}

void reactor::fail(channel_state& c, error err) {
  auto info = info_of(c);
  auto tag = c.tag;
  auto& ss = *c.session;
  kill_channel(c);
  info.open_channels = ss.live_channels;
  ss.ctl->sink->on_failure(tag, std::move(err), info);
}

void reactor::kill_channel(channel_state& c) {
  using phase = channel_state::phase;
  if (c.state == phase::dead)
    return;
  auto& ss = *c.session;
  touch(ss);
  // Trap 6: callbacks would still fire after free while the peer has not closed.
  ssh_remove_channel_callbacks(c.ch, &c.callbacks);
  if (c.state == phase::opening && !ss.dead) {
    orphans_.push_back({&ss, c.ch, ss.packets.in_packets});
    ++ss.orphan_channels;
  } else if (!ss.dead) {
    ssh_channel_free(c.ch);
  }
  c.ch = nullptr;
  c.state = phase::dead;
  --ss.live_channels;
  dead_channels_.push_back(&c);
}

transfer_info reactor::info_of(const channel_state& c) const {
  return {c.bytes_in, c.bytes_out, c.session->live_channels};
}

// -- libssh callbacks: record state only (trap 1) -------------------------------------------

void reactor::mark_dirty(channel_state& c) {
  if (!c.in_dirty) {
    c.in_dirty = true;
    dirty_.push_back(&c);
  }
}

int reactor::on_data(ssh_session, ssh_channel, void* data, std::uint32_t len, int is_stderr,
                     void* userdata) {
  auto& c = *static_cast<channel_state*>(userdata);
  if (is_stderr != 0)
    return static_cast<int>(len);
  // Trap 5 says consume everything: except for a paused stream, whose data libssh keeps
  // (offering it again with the next packet) until do_ack reads it; meanwhile the channel
  // window is not grown, so the server stops sending after at most one window.
  if (c.stream && c.paused)
    return 0;
  c.owner->take(c, static_cast<const char*>(data), len);
  return static_cast<int>(len);
}

void reactor::take(channel_state& c, const char* data, std::size_t len) {
  c.bytes_in += len;
  if (c.state != channel_state::phase::busy || c.parser.complete() || c.parser.failed()) {
    c.stray_data = true;
  } else {
    // Nothing may unwind through libssh's frames: a failure to grow the body (bad_alloc)
    // leaves the parser failed, and the loop reports it.
    try {
      if (c.parser.feed(data, len) < len)
        c.stray_data = true;
    } catch (...) {
      c.stray_data = true;
    }
  }
  if (c.stream && c.pending.size() + c.unacked >= c.session->ctl->opts.stream_window)
    c.paused = true;
  bool stream_news = c.stream && (!c.pending.empty() || (!c.head_sent && c.parser.head_complete()));
  if (c.stray_data || c.parser.complete() || c.parser.failed() || stream_news)
    mark_dirty(c);
}

void reactor::on_eof(ssh_session, ssh_channel, void* userdata) {
  auto& c = *static_cast<channel_state*>(userdata);
  c.eof = true;
  c.owner->mark_dirty(c);
}

void reactor::on_close(ssh_session, ssh_channel, void* userdata) {
  auto& c = *static_cast<channel_state*>(userdata);
  c.remote_closed = true;
  c.owner->mark_dirty(c);
}

} // namespace sshpool::ssh
