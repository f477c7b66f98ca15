// Opening channels: direct-tcpip to the service for dialed sessions, forwarded-tcpip to the
// agent's bound forward for agent sessions (RFC 4254, 7.2); everything after the open is the
// same for both. No callback reports the server's answer (trap 3 of docs/libssh.md): it is
// polled for after each pass, and channels given up while opening wait for it as orphans.
#include "reactor.hpp"

#include <libssh/server.h> // ssh_channel_open_reverse_forward

#include "open_failure.hpp"

namespace sshpool::ssh {

namespace {

using clock = std::chrono::steady_clock;

} // namespace

int reactor::open_channel(ssh_channel ch, const session_control& ctl) {
  // Agents: the peer looks the forward up by the address and port it bound; the originator
  // is the gateway itself (nothing listens on it: the forward is virtual).
  auto& ep = ctl.ep;
  if (ctl.agent != nullptr)
    return ssh_channel_open_reverse_forward(ch, ep.target_host.c_str(), ep.target_port, "127.0.0.1",
                                            0);
  return ssh_channel_open_forward(ch, ep.target_host.c_str(), ep.target_port, "127.0.0.1", 0);
}

void reactor::advance_open(channel_state& c, int rc) {
  if (rc == SSH_OK || ssh_channel_is_open(c.ch)) {
    c.session->ctl->counters->channel_open_seconds.observe(clock::now() - c.open_started);
    c.state = channel_state::phase::busy;
    write_some(c);
  } else if (rc == SSH_AGAIN) {
    opening_.push_back(&c);
  } else {
    // The server answered (refused): no open is pending, so the channel is freed directly.
    c.state = channel_state::phase::busy;
    open_refused(c);
  }
}

void reactor::service_opening(channel_state& c) {
  // Trap 3: no "channel opened" callback. Check the state after each poll; re-call the
  // open (to learn about a refusal) only when packets arrived since the last check.
  if (ssh_channel_is_open(c.ch)) {
    advance_open(c, SSH_OK);
    return;
  }
  auto seen = c.session->packets.in_packets;
  if (seen == c.open_seen_packets) {
    opening_.push_back(&c);
    return;
  }
  c.open_seen_packets = seen;
  touch(*c.session);
  advance_open(c, open_channel(c.ch, *c.session->ctl));
}

void reactor::service_orphans() {
  for (std::size_t i = 0; i < orphans_.size();) {
    auto& o = orphans_[i];
    bool done = false;
    if (ssh_channel_is_open(o.ch)) {
      touch(*o.session);
      ssh_channel_free(o.ch); // sends CLOSE
      done = true;
    } else if (o.session->packets.in_packets != o.seen_packets) {
      touch(*o.session);
      o.seen_packets = o.session->packets.in_packets;
      if (open_channel(o.ch, *o.session->ctl) != SSH_AGAIN) {
        ssh_channel_free(o.ch);
        done = true;
      }
    }
    if (done) {
      --o.session->orphan_channels;
      orphans_[i] = orphans_.back();
      orphans_.pop_back();
    } else {
      ++i;
    }
  }
}

void reactor::open_refused(channel_state& c) {
  auto& ss = *c.session;
  if (!alive(ss)) {
    lose_session(ss, session_error(ss));
    return;
  }
  fail(c, open_failure_error(ssh_get_error(ss.s), ss.ctl->ep.target_host + ":" +
                                                      std::to_string(ss.ctl->ep.target_port)));
}

} // namespace sshpool::ssh
