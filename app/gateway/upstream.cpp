// The forwarder actor: one per forwarded request, event-based, never blocking.
//
//            acquire_atom → lease        stream_atom → tag
//   leasing ─────────────────────► opening ─────────────────► streaming ── end_atom ──► done
//      │ error                        │ error                    │  head_atom, chunk_atom:
//      │                              │                          │  to the listener;
//      ▼                              ▼                          │  ack_atom (from the front
//    done: on_end(error)           done: on_end(error),          │  end): to the connection
//                                  release                       │ cancel_atom / connection down
//                                                                ▼
//                                                    done: release (a cancelled stream is
//                                                    cancelled at the connection: cancel_atom)
//
// `done` always releases a held lease (release_atom to the supervisor) and quits. A
// cancel_atom (the client went away) that arrives while leasing is remembered: the lease is
// released as soon as it arrives (quitting earlier would lose it); one that arrives before
// the stream's id is known leaves the stream to the connection, which abandons it once this
// actor is gone. The actor monitors its connection, so a connection actor that dies without
// ending the stream still ends it here.
//
// A response whose end the client can tell by itself (a body of Content-Length bytes, or
// none: HEAD, 204, 304) has its lease released before its last bytes go to the listener,
// not at end_atom: a client that sends its next request as soon as it has the response
// would otherwise find the lease still held and the pool would open another connection.
// The stream itself still ends with end_atom.
#include "gateway/upstream.hpp"

#include <algorithm>
#include <mutex>
#include <optional>
#include <unordered_map>

#include <caf/all.hpp>

#include "net/text.hpp"
#include "sshpool/actors.hpp"
#include "sshpool/engine.hpp"
#include "sshpool/ssh/http_framing.hpp"

namespace sshpool::gateway {

namespace {

/// The forwarder: a stream sink, plus the front end's acknowledgements and cancellation.
using forwarder_actor =
    stream_sink_actor::extend<caf::reacts_to<ack_atom, std::uint64_t>, caf::reacts_to<cancel_atom>>;

/// Where forwarders register while they run (so the bridge can stop them).
struct registry {
  std::mutex mutex;
  std::unordered_map<caf::actor_id, caf::actor> live;
};

struct forwarder_state {
  static inline const char* name = "sshpool.gateway.forwarder";
  supervisor_actor supervisor;
  std::string user;
  std::shared_ptr<upstream_listener> listener;
  std::optional<lease> held;
  /// The leased connection (kept after an early release, for acks and its down_msg).
  connection_actor connection;
  bool head_request = false;
  /// Body bytes still to come when the head gave a Content-Length.
  std::optional<std::uint64_t> body_left;
  /// The stream's tag (from the stream_atom reply or its first event).
  std::uint64_t tag = 0;
  bool ended = false;
  bool cancelled = false;
};

using self_ptr = forwarder_actor::stateful_pointer<forwarder_state>;

void release(self_ptr self) {
  auto& st = self->state;
  if (st.held) {
    caf::anon_send(st.supervisor, release_atom_v, st.user, *st.held);
    st.held.reset();
  }
}

void release_and_quit(self_ptr self) {
  release(self);
  self->quit();
}

/// The Content-Length of `head`, if it has one plain decimal value.
std::optional<std::uint64_t> content_length(const response& head) {
  const auto* value = head.header("content-length");
  return value == nullptr ? std::nullopt : net::parse_unsigned(*value);
}

/// Releases, reports the end (unless cancelled: nobody listens then), quits. The release
/// goes first: the supervisor's mailbox is FIFO, so a request that the client sends once it
/// has seen the end finds the lease back in the pool (instead of opening a new connection).
void finish(self_ptr self, error result) {
  auto& st = self->state;
  release(self);
  if (!st.ended && !st.cancelled)
    st.listener->on_end(std::move(result));
  st.ended = true;
  self->quit();
}

forwarder_actor::behavior_type forwarder(self_ptr self, supervisor_actor sup, std::string user,
                                         request req, caf::timespan idle_timeout,
                                         std::shared_ptr<upstream_listener> listener,
                                         std::shared_ptr<registry> reg) {
  auto& st = self->state;
  st.supervisor = sup;
  st.user = user;
  st.listener = std::move(listener);
  st.head_request = req.method == "HEAD";
  {
    std::lock_guard<std::mutex> guard{reg->mutex};
    reg->live.emplace(self->id(), caf::actor_cast<caf::actor>(self));
  }
  self->attach_functor([reg, id = self->id()] {
    std::lock_guard<std::mutex> guard{reg->mutex};
    reg->live.erase(id);
  });
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& st = self->state;
    if (st.connection && dm.source == st.connection.address())
      finish(self, error{errc::connection_lost, "the SSH connection ended during the stream"});
  });
  self->set_exception_handler([self](std::exception_ptr& eptr) -> caf::error {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(eptr);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    auto& st = self->state;
    if (!st.ended && !st.cancelled)
      st.listener->on_end(error{errc::internal, "forwarder failed: " + what});
    st.ended = true;
    if (st.held)
      caf::anon_send(st.supervisor, release_atom_v, st.user, *st.held);
    st.held.reset();
    return caf::exit_reason::unhandled_exception;
  });
  // No CAF timeouts (each would wake CAF's clock thread): the pool answers an acquire within
  // acquire_timeout + connect_timeout, the connection answers the stream request at once and
  // ends the stream by its idle deadline, and a connection that dies is seen as a down_msg.
  self->request(sup, caf::infinite, acquire_atom_v, user)
      .then(
          [self, req = std::move(req), idle_timeout](lease& l) mutable {
            auto& st = self->state;
            st.held = l;
            st.connection = l.connection;
            if (st.cancelled) {
              release_and_quit(self);
              return;
            }
            self->monitor(l.connection);
            self->request(l.connection, caf::infinite, stream_atom_v, std::move(req), idle_timeout,
                          caf::actor_cast<stream_sink_actor>(self))
                .then(
                    [self](std::uint64_t tag) {
                      if (self->state.tag == 0)
                        self->state.tag = tag;
                    },
                    [self](caf::error& err) {
                      finish(self, from_caf_error(err, errc::connection_lost));
                    });
          },
          [self](caf::error& err) { finish(self, from_caf_error(err, errc::shutting_down)); });
  return {
      [self](head_atom, std::uint64_t tag, response& head) {
        auto& st = self->state;
        st.tag = tag;
        st.body_left = content_length(head);
        if (has_no_body(st.head_request, head.status) || st.body_left == 0u)
          release(self); // the head is the whole response
        if (!st.ended && !st.cancelled)
          st.listener->on_head(std::move(head));
      },
      [self](chunk_atom, std::uint64_t tag, std::string& data) {
        auto& st = self->state;
        st.tag = tag;
        if (st.body_left) {
          *st.body_left -= std::min<std::uint64_t>(*st.body_left, data.size());
          if (*st.body_left == 0)
            release(self); // the client has the whole body with this chunk
        }
        if (!st.ended && !st.cancelled)
          st.listener->on_chunk(std::move(data));
      },
      [self](end_atom, std::uint64_t, caf::error& err) {
        finish(self, err ? from_caf_error(err, errc::connection_lost) : error{});
      },
      [self](ack_atom, std::uint64_t bytes) {
        auto& st = self->state;
        if (st.connection && st.tag != 0 && !st.ended)
          caf::anon_send(st.connection, ack_atom_v, st.tag, bytes);
      },
      [self](cancel_atom) {
        auto& st = self->state;
        st.cancelled = true;
        if (!st.connection)
          return; // released when the lease arrives
        if (st.tag != 0 && !st.ended)
          self->send(st.connection, cancel_atom_v, st.tag); // its channel closes now
        release_and_quit(self);
      },
  };
}

/// The front end's handle: messages to the forwarder.
class actor_call final : public upstream_call {
public:
  explicit actor_call(forwarder_actor handle) : handle_(std::move(handle)) {}

  void ack(std::size_t bytes) override {
    caf::anon_send(handle_, ack_atom_v, static_cast<std::uint64_t>(bytes));
  }

  void cancel() override { caf::anon_send(handle_, cancel_atom_v); }

private:
  forwarder_actor handle_;
};

} // namespace

struct upstream_bridge::impl {
  caf::actor_system& sys;
  supervisor_actor supervisor;
  caf::timespan idle_timeout;
  std::shared_ptr<registry> reg = std::make_shared<registry>();
};

upstream_bridge::upstream_bridge(engine& eng) {
  impl_ = std::make_shared<impl>(
      impl{eng.system(), supervisor_of(eng), caf::timespan{eng.config().pool.request_timeout}});
}

upstream_bridge::~upstream_bridge() {
  std::vector<caf::actor> running;
  {
    std::lock_guard<std::mutex> guard{impl_->reg->mutex};
    for (auto& [id, handle] : impl_->reg->live)
      running.push_back(handle);
  }
  for (auto& handle : running)
    caf::anon_send_exit(handle, caf::exit_reason::user_shutdown);
}

std::unique_ptr<upstream_call> upstream_bridge::start(std::string user, request req,
                                                      std::shared_ptr<upstream_listener> listener) {
  auto handle = impl_->sys.spawn(forwarder, impl_->supervisor, std::move(user), std::move(req),
                                 impl_->idle_timeout, std::move(listener), impl_->reg);
  return std::make_unique<actor_call>(std::move(handle));
}

std::size_t upstream_bridge::running() const {
  std::lock_guard<std::mutex> guard{impl_->reg->mutex};
  return impl_->reg->live.size();
}

} // namespace sshpool::gateway
