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
// A lease:
//               acquire_atom                   its call ends, or has its whole body: to the
//   the pool ─────────────────► held by a call ─► user's first queued call (held again),
//      ▲                            ▲             else kept
//      │                            │                  │
//      │                            └── a new call of ─┤
//      │                                the user       │
//      └─ release_atom: kept and unused for keep_idle ─┘ (or, as its call ends, held since
//         its grant for max_hold; or its connection refused a stream or went down)
//
// Leases are kept per user, not per client connection: a lease freed by one request serves
// the user's next one, whichever client sent it, so no acquire and no release per request
// (the pool's FIFO would otherwise see them all), and an idle keep-alive client holds
// nothing. Calls that wait for a lease wait here, in order, and take the first one freed or
// granted; an acquire is asked only for a waiting call that no acquire in flight covers.
// Kept leases go back within keep_idle + keep_tick once the user's requests stop, and every
// lease at least once per max_hold, so that the pool still balances connections, ends them
// at their lifetime and evicts idle ones; the pool's metrics count kept leases as leases.
// When the bridge ends (upstream_bridge's destructor), every lease it holds or keeps goes
// back to the pool.
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
#include <atomic>
#include <deque>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <caf/all.hpp>

#include "gateway/upstream_intake.hpp"
#include "net/text.hpp"
#include "sshpool/actors.hpp"
#include "sshpool/engine.hpp"
#include "sshpool/ssh/http.hpp"
#include "sshpool/ssh/http_framing.hpp"

namespace sshpool::gateway {

namespace {

using namespace upstream_detail;

using time_point = caf::actor_clock::time_point;

/// A kept lease goes back to the pool once unused for this long,
constexpr caf::timespan keep_idle = std::chrono::milliseconds(100);
/// and, at the latest, at the first end after it was held this long since its grant.
constexpr caf::timespan max_hold = std::chrono::seconds(1);
/// Period of the look at the kept leases, while there are some.
constexpr caf::timespan keep_tick = std::chrono::milliseconds(50);
/// A request with a larger body is not kept for a retry (its copy would cost too much).
constexpr std::size_t max_resend_body = 64 << 10;
/// Tries of one request at most: when all of a user's connections die at once, the first
/// retry may still find another of them not yet known dead.
constexpr std::uint32_t max_attempts = 3;

/// A lease and when the pool granted it.
struct held_lease {
  lease granted;
  time_point since;
};

/// A lease kept for the next request of its user.
struct kept_lease {
  held_lease held;
  time_point unused_since;
};

/// One forwarded request. Queued: no lease and no stream id; opening: a lease, no stream
/// id; streaming: a stream id (its lease freed once the whole body is here).
struct call {
  std::string user;
  /// The request, until sent.
  request req;
  /// A copy of it for the retries (none: not retried, or answered).
  std::optional<request> resend;
  /// GET, HEAD, PUT, DELETE, OPTIONS, TRACE: retried after a connection lost, too.
  bool idempotent = false;
  /// The head (or the whole response) arrived: never retried.
  bool answered = false;
  /// Its tries so far: the answer to an earlier try's stream_atom is ignored.
  std::uint32_t attempt = 0;
  std::shared_ptr<upstream_listener> listener;
  std::optional<held_lease> held;
  connection_actor connection;
  std::uint64_t tag = 0;
  bool head_request = false;
  /// Body bytes still to come when the head gave a Content-Length.
  std::optional<std::uint64_t> body_left;
  /// The client left while the stream was being opened: cancelled as its id arrives.
  bool cancelled = false;
  /// The whole response is here (its lease freed): a stream that breaks now still ends well.
  bool whole = false;
};

/// A call waiting for a lease, and since when.
struct queued_call {
  std::uint64_t id;
  time_point since;
};

/// A user's calls waiting for a lease (in order; cancelled ones are skipped), the acquires
/// in flight, the kept leases.
struct user_leases {
  std::deque<queued_call> queued;
  std::size_t asked = 0;
  std::vector<kept_lease> kept;
};

/// A stream: its connection's actor id and the connection's stream id.
struct stream_key {
  caf::actor_id connection;
  std::uint64_t tag;
  bool operator==(const stream_key& other) const noexcept {
    return connection == other.connection && tag == other.tag;
  }
};

struct stream_key_hash {
  std::size_t operator()(const stream_key& k) const noexcept {
    return std::hash<std::uint64_t>{}(k.connection * 0x9e3779b97f4a7c15ull ^ k.tag);
  }
};

struct bridge_state {
  static inline const char* name = "sshpool.gateway.bridge";
  supervisor_actor supervisor;
  caf::timespan idle_timeout{0};
  caf::timespan acquire_timeout{0};
  std::shared_ptr<intake> in;
  /// The intake's batch being handled (its capacity is reused).
  std::vector<work> batch;
  std::unordered_map<std::uint64_t, call> calls;
  std::unordered_map<stream_key, std::uint64_t, stream_key_hash> streams;
  std::unordered_map<std::string, user_leases> users;
  /// Connections monitored: those that carried a stream.
  std::unordered_set<caf::actor_id> monitored;
  bool tick_armed = false;
  /// Requests retried on another lease (shared with upstream_bridge::retries).
  std::shared_ptr<std::atomic<std::uint64_t>> retries;
};

using self_ptr = bridge_actor::stateful_pointer<bridge_state>;

void open_stream(self_ptr self, std::uint64_t id, held_lease held);
void acquire(self_ptr self, const std::string& user);

void release(self_ptr self, const lease& l) {
  caf::anon_send(self->state.supervisor, release_atom_v, l.user, l);
}

/// The Content-Length of `head`, if it has one plain decimal value.
std::optional<std::uint64_t> content_length(const response& head) {
  const auto* value = head.header("content-length");
  return value == nullptr ? std::nullopt : net::parse_unsigned(*value);
}

void arm_tick(self_ptr self) {
  auto& st = self->state;
  if (st.tick_armed)
    return;
  st.tick_armed = true;
  self->delayed_send(self, keep_tick, keep_tick_atom_v);
}

/// Drops the cancelled calls at the head of `u`'s queue; false if none is left.
bool first_queued(self_ptr self, user_leases& u) {
  while (!u.queued.empty() && self->state.calls.count(u.queued.front().id) == 0)
    u.queued.pop_front();
  return !u.queued.empty();
}

/// Drops the cancelled calls at the tail of `u`'s queue; false if none is left.
bool last_queued(self_ptr self, user_leases& u) {
  while (!u.queued.empty() && self->state.calls.count(u.queued.back().id) == 0)
    u.queued.pop_back();
  return !u.queued.empty();
}

/// A lease no call uses any more: back to the pool once held for max_hold (an acquire then
/// covers each queued call), else to the user's first queued call, else kept.
void free_lease(self_ptr self, held_lease held) {
  auto& u = self->state.users[held.granted.user];
  auto now = self->clock().now();
  if (now - held.since >= max_hold) {
    release(self, held.granted);
    if (first_queued(self, u) && u.asked < u.queued.size())
      acquire(self, held.granted.user);
    return;
  }
  if (first_queued(self, u)) {
    auto id = u.queued.front().id;
    u.queued.pop_front();
    open_stream(self, id, std::move(held));
    return;
  }
  u.kept.push_back(kept_lease{std::move(held), now});
  arm_tick(self);
}

/// Returns to the pool the kept leases of `u` that `stays` does not keep (in their order).
template <class Stays>
void return_kept(self_ptr self, user_leases& u, Stays stays) {
  auto gone = std::stable_partition(u.kept.begin(), u.kept.end(), stays);
  for (auto i = gone; i != u.kept.end(); ++i)
    release(self, i->held.granted);
  u.kept.erase(gone, u.kept.end());
}

/// Returns the kept leases of connection `cid` to the pool (it refused a stream or is gone).
void drop_kept(self_ptr self, caf::actor_id cid) {
  for (auto& [user, u] : self->state.users)
    return_kept(self, u,
                [cid](const kept_lease& k) { return k.held.granted.connection.id() != cid; });
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

/// Ends call `id`: its lease is freed first, then its listener hears the end (unless the
/// client left).
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
  auto& c = it->second;
  if (c.held) {
    release(self, c.held->granted);
    drop_kept(self, c.connection.id());
    c.held.reset();
  }
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

/// Sends call `id`'s request on the leased connection.
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

/// An acquire failed. The pool refused it at once (pool_exhausted before acquire_timeout:
/// its waiters are full): the newest queued call, whose arrival asked for it, fails.
/// Otherwise the first queued call fails with its error, unless the acquire timed out
/// (pool_exhausted after acquire_timeout) while that call has waited for less: the acquire
/// was asked for an earlier call, which a freed lease served meanwhile; one is asked again
/// for this call.
void acquire_failed(self_ptr self, const std::string& user, const caf::error& err,
                    time_point asked_at) {
  auto& st = self->state;
  auto& u = st.users[user];
  --u.asked;
  if (!first_queued(self, u))
    return;
  auto failure = from_caf_error(err, errc::shutting_down);
  auto now = self->clock().now();
  if (failure.code() == errc::pool_exhausted && now - asked_at < st.acquire_timeout &&
      last_queued(self, u)) {
    auto id = u.queued.back().id;
    u.queued.pop_back();
    end_call(self, id, std::move(failure));
    return;
  }
  if (failure.code() == errc::pool_exhausted && now - u.queued.front().since < st.acquire_timeout) {
    acquire(self, user);
    return;
  }
  auto id = u.queued.front().id;
  u.queued.pop_front();
  end_call(self, id, std::move(failure));
}

/// Asks the pool for one more lease of `user`; it goes to the first queued call then.
void acquire(self_ptr self, const std::string& user) {
  ++self->state.users[user].asked;
  // No CAF timeout (each would wake CAF's clock thread): the pool answers an acquire within
  // acquire_timeout + connect_timeout.
  self->request(self->state.supervisor, caf::infinite, acquire_atom_v, user)
      .then(
          [self, user](lease& l) {
            --self->state.users[user].asked;
            free_lease(self, held_lease{std::move(l), self->clock().now()});
          },
          [self, user, asked_at = self->clock().now()](caf::error& err) {
            acquire_failed(self, user, err, asked_at);
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

/// Returns every kept lease unused for keep_idle or held for max_hold; ticks on while some
/// are kept.
void look_at_kept(self_ptr self) {
  auto& st = self->state;
  st.tick_armed = false;
  auto now = self->clock().now();
  bool any = false;
  for (auto& [user, u] : st.users) {
    return_kept(self, u, [now](const kept_lease& k) {
      return now - k.unused_since < keep_idle && now - k.held.since < max_hold;
    });
    any = any || !u.kept.empty();
  }
  if (any)
    arm_tick(self);
}

/// Returns every lease, held by a call or kept, to the pool and forgets the calls (the
/// bridge ends; the connections cancel its streams as their sink goes down).
void release_all(self_ptr self) {
  auto& st = self->state;
  for (auto& [id, c] : st.calls)
    if (c.held)
      release(self, c.held->granted);
  st.calls.clear();
  st.streams.clear();
  for (auto& [user, u] : st.users)
    for (auto& k : u.kept)
      release(self, k.held.granted);
  st.users.clear();
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
        if (c.held && failure.code() == errc::connection_lost) {
          // Its connection is going down: the lease goes back, another one takes the retry.
          release(self, c.held->granted);
          drop_kept(self, c.connection.id());
          c.held.reset();
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

} // namespace

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
