// The relay: a connection actor on this node standing for a connection of another cluster
// node, the owner of a lease's user. The supervisor spawns one per remote lease and hands it
// out in the lease, so a lessee uses a remote connection as a local one. Each call is one
// request to the remote connection (no actor per request); streams come back through the
// relay, which is the remote connection's sink: head, chunks and end (or the whole response)
// go on to the real sink, acks from the real sink go back, so the window of unacknowledged
// bytes (and with it the slow consumer's backpressure) holds end to end.
//
//            forward / stream / stats / health: relayed       retire_atom (released)
//   relaying ─────────────────────────────────────► relaying ─────────────► retiring
//      │  remote connection down (monitor: also when the connection to its     │ nothing
//      │  node is lost), lost_atom (the engine stops)                          │ pending,
//      ▼                                                                       ▼ no stream
//   broken: what is pending fails with connection_lost at once,      ──────────► quit
//   streams get end_atom with it; then it quits, as a lost local connection does (its
//   lessee sees it go down; later calls fail at once: the receiver is gone)
//
// A real sink that goes down cancels its streams at the remote connection, as a local
// connection does. Per-call deadlines are the remote connection's; the relay's own request
// waits that long plus a slack, so that even a stalled peer never leaves a call hanging.
#include "relay.hpp"

#include <functional>
#include <unordered_map>

#include <caf/all.hpp>

#include "handlers.hpp"
#include "sink_monitors.hpp"
#include "sshpool/ssh/log.hpp"

namespace sshpool {

namespace {

/// Beyond a call's own deadline, how long the relay waits for the remote answer.
constexpr auto relay_slack = std::chrono::seconds(5);

struct relay_state {
  static inline const char* name = "sshpool.relay";

  connection_actor remote;
  std::string user;
  std::string node;
  /// Calls waiting for the remote answer, by sequence number: how each fails.
  std::unordered_map<std::uint64_t, std::function<void(const caf::error&)>> pending;
  std::uint64_t next = 0;
  /// Open streams by the remote connection's stream id (the id the lessee sees too).
  std::unordered_map<std::uint64_t, stream_sink_actor> streams;
  sink_monitors sinks;
  bool retiring = false;
};

using self_ptr = relay_actor::stateful_pointer<relay_state>;

void maybe_quit(self_ptr self) {
  auto& st = self->state;
  if (st.retiring && st.pending.empty() && st.streams.empty())
    self->quit();
}

/// Fails everything pending with `err`, then quits with it.
void break_relay(self_ptr self, caf::error err) {
  auto& st = self->state;
  log().warn("relay of '{}' to node {}: {}", st.user, st.node, caf::to_string(err));
  auto pending = std::move(st.pending);
  st.pending.clear();
  for (auto& [seq, fail] : pending)
    fail(err);
  auto streams = std::move(st.streams);
  st.streams.clear();
  for (auto& [id, sink] : streams) {
    self->send(sink, end_atom_v, id, err);
    st.sinks.remove(self, sink);
  }
  self->quit(err);
}

/// Sends one call to the remote connection; `on_value` runs on its answer (if still
/// pending: not failed by a break meanwhile) and delivers it.
template <class T, class OnValue, class... Ts>
caf::result<T> relay_call(self_ptr self, caf::timespan wait, OnValue on_value, Ts... xs) {
  auto& st = self->state;
  auto rp = self->make_response_promise<T>();
  auto seq = ++st.next;
  st.pending.emplace(seq, [rp](const caf::error& err) mutable { rp.deliver(err); });
  self->request(st.remote, wait, std::move(xs)...)
      .then(
          [self, seq, rp, on_value](T& value) mutable {
            if (self->state.pending.erase(seq) == 0)
              return;
            on_value(value);
            rp.deliver(std::move(value));
            maybe_quit(self);
          },
          [self, seq, rp](caf::error& err) mutable {
            if (self->state.pending.erase(seq) == 0)
              return;
            rp.deliver(relayed_error(err));
            maybe_quit(self);
          });
  return rp;
}

/// The stream `id` is over (end, cancel): its sink is no longer watched for it.
void end_stream(self_ptr self, std::unordered_map<std::uint64_t, stream_sink_actor>::iterator i) {
  auto& st = self->state;
  auto sink = std::move(i->second);
  st.streams.erase(i);
  st.sinks.remove(self, sink);
  maybe_quit(self);
}

relay_actor::behavior_type relay_behavior(self_ptr self, connection_actor remote, std::string user,
                                          std::string node) {
  auto& st = self->state;
  st.remote = std::move(remote);
  st.user = std::move(user);
  st.node = std::move(node);
  self->monitor(st.remote);
  install_exception_handler(self, [self](const std::string& what) {
    break_relay(self, make_caf_error(errc::internal, what));
  });
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source == st.remote.address()) {
      break_relay(self,
                  make_caf_error(errc::connection_lost, "the connection of user '" + st.user +
                                                            "' on node " + st.node + " is gone (" +
                                                            caf::to_string(dm.reason) + ")"));
      return;
    }
    // A real sink went away: its streams are cancelled, as a local connection does.
    for (auto i = st.streams.begin(); i != st.streams.end();) {
      if (i->second.address() == dm.source) {
        self->send(st.remote, cancel_atom_v, i->first);
        auto sink = std::move(i->second);
        i = st.streams.erase(i);
        st.sinks.remove(self, sink);
      } else {
        ++i;
      }
    }
    maybe_quit(self);
  });
  return {
      [self](forward_atom, request& req, caf::timespan timeout) -> caf::result<response> {
        return relay_call<response>(
            self, timeout + relay_slack, [](response&) {}, forward_atom_v, std::move(req), timeout);
      },
      [self](stream_atom, request& req, caf::timespan timeout,
             stream_sink_actor& sink) -> caf::result<std::uint64_t> {
        auto on_id = [self, sink](std::uint64_t id) {
          // The remote connection answers the id before it sends the stream's head.
          self->state.streams.emplace(id, sink);
          self->state.sinks.add(self, sink);
        };
        auto me = caf::actor_cast<stream_sink_actor>(self);
        return relay_call<std::uint64_t>(self, timeout + relay_slack, on_id, stream_atom_v,
                                         std::move(req), timeout, std::move(me));
      },
      [self](ack_atom, std::uint64_t id, std::uint64_t bytes) {
        auto& st = self->state;
        if (st.streams.count(id) > 0)
          self->send(st.remote, ack_atom_v, id, bytes);
      },
      [self](cancel_atom, std::uint64_t id) {
        auto& st = self->state;
        if (auto i = st.streams.find(id); i != st.streams.end()) {
          self->send(st.remote, cancel_atom_v, id);
          end_stream(self, i);
        }
      },
      [self](stats_atom) -> caf::result<connection_stats> {
        return relay_call<connection_stats>(
            self, relay_slack, [](connection_stats&) {}, stats_atom_v);
      },
      [self](health_atom) -> caf::result<bool> {
        return relay_call<bool>(
            self, relay_slack, [](bool) {}, health_atom_v);
      },
      [self](head_atom, std::uint64_t id, response& head) {
        auto& st = self->state;
        if (auto i = st.streams.find(id); i != st.streams.end())
          self->send(i->second, head_atom_v, id, std::move(head));
      },
      [self](chunk_atom, std::uint64_t id, std::string& chunk) {
        auto& st = self->state;
        if (auto i = st.streams.find(id); i != st.streams.end())
          self->send(i->second, chunk_atom_v, id, std::move(chunk));
      },
      [self](end_atom, std::uint64_t id, caf::error& err) {
        auto& st = self->state;
        if (auto i = st.streams.find(id); i != st.streams.end()) {
          self->send(i->second, end_atom_v, id, std::move(err));
          end_stream(self, i);
        }
      },
      [self](whole_atom, std::uint64_t id, response& res) {
        auto& st = self->state;
        if (auto i = st.streams.find(id); i != st.streams.end()) {
          self->send(i->second, whole_atom_v, id, std::move(res));
          end_stream(self, i);
        }
      },
      [self](lost_atom, caf::error& err) { break_relay(self, std::move(err)); },
      [self](retire_atom) {
        self->state.retiring = true;
        maybe_quit(self);
      },
  };
}

} // namespace

caf::error relayed_error(const caf::error& err) {
  return make_caf_error(from_caf_error(err, errc::connection_lost));
}

relay_actor spawn_relay(caf::local_actor* parent, connection_actor remote, std::string user,
                        std::string node) {
  return parent->spawn(relay_behavior, std::move(remote), std::move(user), std::move(node));
}

} // namespace sshpool
