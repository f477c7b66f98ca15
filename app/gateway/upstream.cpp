// The bridge actor: every request the gateway forwards goes through this one event-based
// actor (no actor per request), which never blocks.
//
// A request (a `call`):
//
//            a kept lease of its user,                stream_atom
//            or one the pool granted                  → stream id
//   queued ───────────────────────────────► opening ─────────────► streaming ── end_atom ──► done
//     │ acquire_atom fails (refused at        │ refused               │ head_atom, chunk_atom: to
//     │ once: the newest queued call)         │                       │ the listener; acks from the
//     ▼                                       ▼                       │ front end: ack_atom
//   done: on_end(error)                     done: on_end(error),      │ connection down: on_end
//                                           lease back to the pool    │ (connection_lost; none once
//                                                                     │ the whole response is here)
//   cancel (the client left): queued: forgotten; opening: cancelled   │ cancel: cancel_atom, the
//   once its stream id arrives; streaming: cancel_atom at once        ▼ lease to the next call
//                                                                   done
// A response complete before its head came arrives as one whole_atom instead of head, chunks
// and end: the call is done at once, its listener hears on_response.
//
// Retried on another lease (back to queued; at most `max_attempts` tries in all) instead of
// done with an error, when its connection fails it before any response byte: a stream
// refused where provably unsent (a draining connection, or a connection actor already gone:
// any method), or a connection lost (the request may have been sent, and a relay's refusal
// may come after the remote connection sent it: idempotent methods only, as a reverse proxy
// retries). Only a request whose body is at most `max_resend_body` is kept for it, until its
// head comes; never after a timeout, nor after the client left.
//
// The leases (kept, freed, acquired, returned) are upstream_leases.cpp's.
//
// A response whose end the client can tell by itself (a body of Content-Length bytes, or
// none: HEAD, 204, 304) frees its lease when the bridge has it all, not at end_atom: the
// client's next request would otherwise find no lease free and ask the pool for another.
//
// The connection monitors this actor as the sink of its streams, and the bridge monitors
// each connection it streams from, so a connection actor that dies without ending its
// streams still ends them here. Work from the front end (new requests, acknowledgements,
// cancellations) comes through `intake`, a queue that wakes the bridge once per batch.
#include "gateway/upstream.hpp"

#include <algorithm>
#include <mutex>

#include "gateway/upstream_state.hpp"
#include "net/text.hpp"
#include "sshpool/engine.hpp"
#include "sshpool/ssh/http.hpp"
#include "sshpool/ssh/http_framing.hpp"

namespace sshpool::gateway {

namespace upstream_detail {

/// The Content-Length of `head`, if it has one plain decimal value.
std::optional<std::uint64_t> content_length(const response& head) {
  const auto* value = head.header("content-length");
  return value == nullptr ? std::nullopt : net::parse_unsigned(*value);
}

/// Forgets call `id` and frees its lease; its listener, unless the client left.
std::shared_ptr<upstream_listener> forget_call(self_ptr self, std::uint64_t id) {
  auto& st = self->state;
  auto it = st.calls.find(id);
  if (it == st.calls.end())
    return nullptr;
  call c = std::move(it->second);
  st.calls.erase(it);
  if (c.tag != 0)
    st.streams.erase(stream_key{c.connection.id(), c.tag});
  if (c.held)
    free_lease(self, std::move(*c.held));
  return c.cancelled ? nullptr : std::move(c.listener);
}

void end_call(self_ptr self, std::uint64_t id, error result) {
  if (auto listener = forget_call(self, id))
    listener->on_end(std::move(result));
}

/// The call's whole body is here: its lease serves the next call.
void body_complete(self_ptr self, call& c) {
  c.whole = true;
  if (!c.held)
    return;
  auto held = std::move(*c.held);
  c.held.reset();
  free_lease(self, std::move(held));
}

void route(self_ptr self, std::uint64_t id);

/// Call `c`'s connection refused its stream or is going down: its lease goes back to the
/// pool, with the other kept leases of that connection.
void give_back_dead(self_ptr self, call& c) {
  if (!c.held)
    return;
  release(self, c.held->granted);
  drop_kept(self, c.connection.id());
  c.held.reset();
}

/// Call `id`, which its connection failed before any response byte (its lease already gone),
/// goes back to its user's queue with the copy of its request; false if it cannot.
bool retry(self_ptr self, std::uint64_t id, const error& why, bool sent) {
  auto& st = self->state;
  auto& c = st.calls.at(id);
  bool may = why.code() == errc::connection_lost || why.code() == errc::shutting_down;
  if (!c.resend || c.cancelled || c.answered || !may || (sent && !c.idempotent) ||
      c.attempt + 1 >= max_attempts)
    return false;
  c.req = *c.resend;
  if (c.tag != 0)
    st.streams.erase(stream_key{c.connection.id(), c.tag});
  c.tag = 0;
  c.connection = nullptr;
  ++c.attempt;
  ++*st.retries;
  route(self, id);
  return true;
}

/// The call's stream was refused (the connection is draining, closing or gone): its lease
/// goes back to the pool, with the other kept leases of that connection; the call is retried
/// on another lease.
void stream_refused(self_ptr self, std::uint64_t id, std::uint32_t attempt, const caf::error& err) {
  auto& st = self->state;
  auto it = st.calls.find(id);
  if (it == st.calls.end() || it->second.attempt != attempt)
    return; // ended, or retried already as its connection went down
  give_back_dead(self, it->second);
  auto failure = from_caf_error(err, errc::connection_lost);
  // Provably unsent: refused by a draining connection, or its actor was gone. A relay's
  // connection_lost may come after the remote connection sent the request.
  bool unsent = failure.code() == errc::shutting_down || err == caf::sec::request_receiver_down;
  if (!retry(self, id, failure, !unsent))
    end_call(self, id, std::move(failure));
}

void stream_opened(self_ptr self, std::uint64_t id, std::uint32_t attempt,
                   const connection_actor& connection, std::uint64_t tag) {
  auto& st = self->state;
  auto it = st.calls.find(id);
  if (it == st.calls.end() || it->second.attempt != attempt) {
    // Ended, or retried meanwhile: a stream nobody takes is closed.
    self->send(connection, cancel_atom_v, tag);
    return;
  }
  auto& c = it->second;
  c.tag = tag;
  st.streams.emplace(stream_key{c.connection.id(), tag}, id);
  if (c.cancelled) {
    self->send(c.connection, cancel_atom_v, tag); // its channel closes now
    end_call(self, id, error{});
  }
}

void open_stream(self_ptr self, std::uint64_t id, held_lease held) {
  auto& st = self->state;
  auto& c = st.calls.at(id);
  c.connection = held.granted.connection;
  c.held = std::move(held);
  if (st.monitored.insert(c.connection.id()).second)
    self->monitor(c.connection);
  self->request(c.connection, caf::infinite, stream_atom_v, std::move(c.req), st.idle_timeout,
                caf::actor_cast<stream_sink_actor>(self))
      .then([self, id, attempt = c.attempt, connection = c.connection](
                std::uint64_t tag) { stream_opened(self, id, attempt, connection, tag); },
            [self, id, attempt = c.attempt](caf::error& err) {
              stream_refused(self, id, attempt, err);
            });
}

/// A new call: a kept lease of its user (the most recently used), else in the queue.
void route(self_ptr self, std::uint64_t id) {
  const auto& user = self->state.calls.at(id).user;
  auto& u = self->state.users[user];
  if (!u.kept.empty()) {
    auto held = std::move(u.kept.back().held);
    u.kept.pop_back();
    open_stream(self, id, std::move(held));
    return;
  }
  u.queued.push_back(queued_call{id, self->clock().now()});
  if (u.asked < u.queued.size())
    acquire(self, user);
}

void take(self_ptr self, work& w) {
  auto& st = self->state;
  auto it = st.calls.find(w.call);
  switch (w.what) {
  case work::kind::start: {
    call c;
    c.user = std::move(w.user);
    c.head_request = w.req.method == "HEAD";
    c.idempotent = ssh::idempotent_method(w.req.method);
    if (w.req.body.size() <= max_resend_body)
      c.resend = w.req;
    c.req = std::move(w.req);
    c.listener = std::move(w.listener);
    st.calls.emplace(w.call, std::move(c));
    route(self, w.call);
    break;
  }
  case work::kind::ack:
    // Nothing to acknowledge once the whole body is here: the stream ends by itself.
    if (it != st.calls.end() && it->second.tag != 0 && it->second.body_left != 0u)
      self->send(it->second.connection, ack_atom_v, it->second.tag, w.bytes);
    break;
  case work::kind::cancel:
    if (it == st.calls.end())
      break;
    it->second.cancelled = true;
    if (!it->second.held && it->second.tag == 0)
      st.calls.erase(it); // queued: skipped when its turn comes
    else if (it->second.tag != 0) {
      self->send(it->second.connection, cancel_atom_v, it->second.tag);
      end_call(self, w.call, error{});
    }
    break;
  }
}

/// The id of the call whose stream sent the current message (0: none, it ended).
std::uint64_t current_call(self_ptr self, std::uint64_t tag) {
  auto& sender = self->current_sender();
  auto it =
      sender ? self->state.streams.find(stream_key{sender->id(), tag}) : self->state.streams.end();
  return it == self->state.streams.end() ? 0 : it->second;
}

/// Ends every call with `result` and returns every lease (the bridge fails).
void fail_all(self_ptr self, const error& result) {
  for (auto& [id, c] : self->state.calls)
    if (!c.cancelled)
      c.listener->on_end(result);
  release_all(self);
}

bridge_actor::behavior_type bridge(self_ptr self, supervisor_actor sup, caf::timespan idle_timeout,
                                   caf::timespan acquire_timeout, std::shared_ptr<intake> in,
                                   std::shared_ptr<std::atomic<std::uint64_t>> retries) {
  auto& st = self->state;
  st.retries = std::move(retries);
  st.supervisor = std::move(sup);
  st.idle_timeout = idle_timeout;
  st.acquire_timeout = acquire_timeout;
  st.in = std::move(in);
  self->attach_functor([in = st.in] {
    std::lock_guard<std::mutex> guard{in->mutex};
    in->closed = true;
    in->items.clear();
  });
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& st = self->state;
    auto cid = dm.source.id();
    st.monitored.erase(cid);
    drop_kept(self, cid);
    std::vector<std::uint64_t> lost;
    for (auto& [id, c] : st.calls)
      if (c.connection && c.connection.id() == cid)
        lost.push_back(id);
    for (auto id : lost) {
      auto& c = st.calls.at(id);
      if (c.held) {
        release(self, c.held->granted);
        c.held.reset();
      }
      // A connection lost after the whole response came changes nothing for the client.
      if (c.whole) {
        end_call(self, id, error{});
        continue;
      }
      error lost_it{errc::connection_lost, "the SSH connection ended during the stream"};
      // It may have been sent: an opening stream's request may be on the wire already.
      if (!retry(self, id, lost_it, true))
        end_call(self, id, std::move(lost_it));
    }
  });
  // upstream_bridge's destructor: the streams are abandoned, every lease goes back.
  self->set_exit_handler([self](const caf::exit_msg& msg) {
    release_all(self);
    self->quit(msg.reason);
  });
  self->set_exception_handler([self](std::exception_ptr& eptr) -> caf::error {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(eptr);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    fail_all(self, error{errc::internal, "the gateway's bridge failed: " + what});
    return caf::exit_reason::unhandled_exception;
  });
  return {
      [self](intake_atom) {
        auto& st = self->state;
        {
          std::lock_guard<std::mutex> guard{st.in->mutex};
          st.batch.swap(st.in->items);
        }
        for (auto& w : st.batch)
          take(self, w);
        st.batch.clear();
      },
      [self](keep_tick_atom) { look_at_kept(self); },
      [self](head_atom, std::uint64_t tag, response& head) {
        auto id = current_call(self, tag);
        if (id == 0)
          return;
        auto& c = self->state.calls.at(id);
        c.answered = true;
        c.resend.reset();
        c.body_left = content_length(head);
        bool whole = has_no_body(c.head_request, head.status) || c.body_left == 0u;
        c.listener->on_head(std::move(head));
        if (whole)
          body_complete(self, c); // the head is the whole response
      },
      [self](chunk_atom, std::uint64_t tag, std::string& data) {
        auto id = current_call(self, tag);
        if (id == 0)
          return;
        auto& c = self->state.calls.at(id);
        if (c.body_left)
          *c.body_left -= std::min<std::uint64_t>(*c.body_left, data.size());
        c.listener->on_chunk(std::move(data));
        if (c.body_left == 0u)
          body_complete(self, c); // the client has the whole body with this chunk
      },
      [self](end_atom, std::uint64_t tag, caf::error& err) {
        auto id = current_call(self, tag);
        if (id == 0)
          return;
        auto& c = self->state.calls.at(id);
        if (!err || c.whole) {
          end_call(self, id, error{});
          return;
        }
        auto failure = from_caf_error(err, errc::connection_lost);
        if (failure.code() == errc::connection_lost) {
          // Its connection is going down: another lease takes the retry.
          give_back_dead(self, c);
          if (retry(self, id, failure, true))
            return;
        }
        end_call(self, id, std::move(failure));
      },
      [self](whole_atom, std::uint64_t tag, response& whole) {
        auto id = current_call(self, tag);
        if (id == 0)
          return;
        // The lease is freed before the listener hears of it, as at an end.
        if (auto listener = forget_call(self, id))
          listener->on_response(std::move(whole));
      },
  };
}

} // namespace upstream_detail

using namespace upstream_detail;

struct upstream_bridge::impl {
  std::shared_ptr<intake> in = std::make_shared<intake>();
  std::atomic<std::uint64_t> next_call{0};
  std::shared_ptr<std::atomic<std::uint64_t>> retries =
      std::make_shared<std::atomic<std::uint64_t>>(0);
};

upstream_bridge::upstream_bridge(engine& eng) : impl_(std::make_shared<impl>()) {
  impl_->in->bridge = eng.system().spawn(
      bridge, supervisor_of(eng), caf::timespan{eng.config().pool.request_timeout},
      caf::timespan{eng.config().pool.acquire_timeout}, impl_->in, impl_->retries);
}

upstream_bridge::~upstream_bridge() {
  caf::anon_send_exit(impl_->in->bridge, caf::exit_reason::user_shutdown);
}

std::uint64_t upstream_bridge::retries() const {
  return impl_->retries->load();
}

std::unique_ptr<upstream_call> upstream_bridge::start(std::string user, request req,
                                                      std::shared_ptr<upstream_listener> listener) {
  auto id = impl_->next_call.fetch_add(1, std::memory_order_relaxed) + 1;
  work w;
  w.what = work::kind::start;
  w.call = id;
  w.user = std::move(user);
  w.req = std::move(req);
  w.listener = listener;
  if (!impl_->in->post(std::move(w)))
    listener->on_end(error{errc::internal, "the gateway's bridge to the engine is gone"});
  return std::make_unique<bridge_call>(impl_->in, id);
}

} // namespace sshpool::gateway
