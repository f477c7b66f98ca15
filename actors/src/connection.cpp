// The connection actor: one SSH connection (one transport) of one user: dialed, or an
// agent that dialed in (reverse mode: its transport is adopted, its open succeeds at once,
// and it is told why the gateway ends it: transport::disconnect with the reason).
//
//            connect_atom            opened_atom(ok)
//   created ─────────────► connecting ─────────────► ready ◄──┐ forward, stream / result
//      │                       │                       │  └───┘ (channel slots, FIFO)
//      │ disconnect_atom       │ opened_atom(error)    │ drain_atom
//      │                       │                       ▼
//      │                       │                   draining ── nothing in flight ──┐
//      │                       │                       │ force_atom (cut the rest)  │
//      ▼                       ▼                       ▼                            ▼
//   closed ◄───────────────────┴── lost_atom / disconnect_atom / probe_atom ── closed
//                                  (deadline) / pool down / evicted
//                                  (in flight: connection_lost)
//
// One request:
//            a channel slot               result_atom (a stream: after head_atom and
//   queued ─────────────────► on the wire ──────────► ended   chunk_atoms to its sink, and
//     │                           │                          ack_atoms back): the reply, or
//     └─────────────┬─────────────┘                          end_atom to the sink (complete
//                   │                                        before its head: one whole_atom)
//                   │ request_timeout_atom: the reply or end_atom is request_timeout,
//                   │ its channel closed
//                   │ cancel_atom, or the sink down (streams only): its channel closed,
//                   ▼ nothing more to the sink
//                dropped
//
// The public messages are connection_actor's (sshpool/messages.hpp); those of the pool, the
// transport and the timers are connection_impl's (internal_messages.hpp).
// Requests take a channel slot (at most max_channels_per_connection on the wire); the rest
// wait in FIFO order. Every request has a deadline counted from its arrival; one timer at
// the earliest deadline serves them all. On expiry only that request's channel is closed.
// Health: every keepalive_interval the transport sends a probe; if no packet at all comes
// back within keepalive_timeout the peer is hung (half-open): the connection is unhealthy,
// closes, and its pool learns it at once (conn_down), as for every other state change.
// Its pool spawned it (with a permit from the supervisor) and monitors it; it reports to
// that pool alone and does not outlive it.
#include "connection.hpp"

#include <deque>
#include <unordered_map>

#include <caf/all.hpp>

#include "actor_sink.hpp"
#include "deadline_timer.hpp"
#include "handlers.hpp"
#include "sink_monitors.hpp"
#include "sshpool/ssh/log.hpp"

namespace sshpool {

namespace {

using time_point = caf::actor_clock::time_point;

enum class phase { created, connecting, ready, draining, closed };

struct pending_request {
  caf::typed_response_promise<response> rp;
  std::string request_id;
  ssh::outbound_request req;
  time_point arrived;
  time_point deadline;
  bool on_wire = false;
  /// Streams: the consumer, and the idle timeout that moves the deadline on each chunk
  /// and acknowledgement. While the consumer holds a full window (`unacked`), the upstream
  /// is not idle but held back: the deadline is suspended, and the consumer's own timeout
  /// (or its going away) ends the stream.
  stream_sink_actor sink;
  caf::timespan timeout{0};
  std::uint64_t unacked = 0;
  /// The sink has the head: the stream ends with end_atom (else it gets one whole_atom).
  bool head_sent = false;
};

/// The requests of a connection by their tags (which are also their stream ids).
using request_map = std::unordered_map<std::uint64_t, pending_request>;

struct connection_actor_state {
  static inline const char* name = "sshpool.connection";

  std::string user;
  endpoint ep;
  user_pool_actor pool;
  std::shared_ptr<const actor_context> ctx;
  std::string host_header;
  std::unique_ptr<ssh::transport> transport;
  /// An agent's session: closed with a reason its ssh prints.
  bool agent = false;
  phase state = phase::created;
  phase state_before_close = phase::created;
  request_map requests;
  sink_monitors sinks;
  std::deque<std::uint64_t> queue;
  std::size_t on_wire = 0;
  std::uint64_t next_tag = 0;
  /// When the last request arrived or ended (eviction measures idleness from here).
  time_point last_activity;
  /// One timer at the earliest request deadline.
  deadline_timer deadlines;
  /// Health: the keepalive tick's generation, the outstanding probe (0: none), and the
  /// callers of validate_atom waiting for its answer.
  std::uint64_t keepalive_generation = 0;
  std::uint64_t probe_seq = 0;
  bool probing = false;
  std::vector<caf::typed_response_promise<bool>> validators;
  /// Drain: who waits for its report (a user drain and an engine drain may overlap), and
  /// its counts.
  std::vector<caf::typed_response_promise<shutdown_report>> drain_rps;
  shutdown_report drain;
  connection_stats stats;
};

using self_ptr = connection_impl::stateful_pointer<connection_actor_state>;

/// Counts a finished request in the engine's metrics.
void count(self_ptr self, const pending_request& p, errc result) {
  auto& counters = *self->state.ctx->counters;
  counters.count_request(result);
  counters.request_seconds.observe(self->clock().now() - p.arrived);
}

/// Ends request `p` with `err` (none: success): its promise, or its stream's sink (sent by
/// this actor, so the end follows the stream's chunks in order).
void end_request(self_ptr self, pending_request& p, std::uint64_t tag, const caf::error& err) {
  count(self, p, err ? from_caf_error(err, errc::internal).code() : errc::none);
  if (p.sink)
    self->send(p.sink, end_atom_v, tag, err);
  else
    p.rp.deliver(err);
}

std::chrono::system_clock::time_point wall_now() {
  return std::chrono::system_clock::now();
}

long long elapsed_us(self_ptr self, const pending_request& p) {
  return std::chrono::duration_cast<std::chrono::microseconds>(self->clock().now() - p.arrived)
      .count();
}

std::string describe_ms(std::chrono::milliseconds d) {
  return std::to_string(d.count()) + " ms";
}

void arm_timer(self_ptr self, time_point deadline) {
  self->state.deadlines.arm(self, deadline, request_timeout_atom_v);
}

/// A stream made progress: its idle deadline restarts, or is suspended while the consumer
/// holds a full window.
void move_stream_deadline(self_ptr self, pending_request& p) {
  if (p.unacked >= self->state.ctx->pool.stream_window_bytes) {
    p.deadline = time_point::max();
    return;
  }
  p.deadline = self->clock().now() + p.timeout;
  arm_timer(self, p.deadline);
}

void dispatch(self_ptr self) {
  auto& st = self->state;
  while (!st.queue.empty() && st.on_wire < st.ctx->pool.max_channels_per_connection) {
    auto tag = st.queue.front();
    st.queue.pop_front();
    auto i = st.requests.find(tag);
    if (i == st.requests.end())
      continue;
    i->second.on_wire = true;
    ++st.on_wire;
    st.transport->forward(tag, std::move(i->second.req));
  }
}

/// Fails every request with `err`; returns how many.
std::size_t fail_all(self_ptr self, const error& err) {
  auto& st = self->state;
  auto n = st.requests.size();
  for (auto& [tag, p] : st.requests)
    end_request(self, p, tag, make_caf_error(err));
  st.stats.failed_requests += n;
  st.requests.clear();
  st.queue.clear();
  st.on_wire = 0;
  return n;
}

/// Takes request `i` off the wire (its channel closed; the transport reports nothing more
/// of it) and out of the book, counted as failed: a deadline passed, or its consumer
/// abandoned the stream. Returns the next request.
request_map::iterator drop(self_ptr self, request_map::iterator i) {
  auto& st = self->state;
  if (i->second.on_wire) {
    st.transport->cancel(i->first);
    --st.on_wire;
  }
  ++st.stats.failed_requests;
  st.sinks.remove(self, i->second.sink);
  return st.requests.erase(i);
}

void shut_down(self_ptr self, const error& reason, bool tell_pool) {
  auto& st = self->state;
  if (st.state == phase::closed)
    return;
  st.state_before_close = st.state;
  if (st.state == phase::ready || st.state == phase::draining)
    st.ctx->counters->connections_closed.fetch_add(1, std::memory_order_relaxed);
  st.state = phase::closed;
  st.stats.state = connection_state::closed;
  st.stats.healthy = false;
  if (st.transport && st.agent)
    st.transport->disconnect(reason.code() == errc::shutting_down ? agent_goodbye
                                                                  : reason.message());
  else if (st.transport)
    st.transport->close();
  auto cut = fail_all(self, error{errc::connection_lost, reason.message()});
  for (auto& v : st.validators)
    v.deliver(make_caf_error(errc::connection_lost, reason.message()));
  st.validators.clear();
  if (st.state_before_close == phase::draining) {
    st.drain.cut += cut;
    for (auto& rp : st.drain_rps)
      rp.deliver(st.drain);
    st.drain_rps.clear();
  }
  if (tell_pool)
    self->send(st.pool, conn_down_atom_v, self->id(), make_caf_error(reason));
  self->quit();
}

/// Ends a drain once nothing is in flight any more: disconnect and report.
void maybe_finish_drain(self_ptr self) {
  auto& st = self->state;
  if (st.state == phase::draining && st.requests.empty())
    shut_down(self, error{errc::shutting_down, "drained"}, false);
}

void finish(self_ptr self, request_map::iterator i, const transfer_info& info) {
  auto& st = self->state;
  st.stats.bytes_in += info.bytes_in;
  st.stats.bytes_out += info.bytes_out;
  st.ctx->counters->bytes_in.fetch_add(info.bytes_in, std::memory_order_relaxed);
  st.ctx->counters->bytes_out.fetch_add(info.bytes_out, std::memory_order_relaxed);
  st.stats.channel_count = info.open_channels;
  st.stats.last_used = wall_now();
  st.last_activity = self->clock().now();
  --st.on_wire;
  st.sinks.remove(self, i->second.sink);
  st.requests.erase(i);
  if (st.state == phase::draining)
    ++st.drain.completed_during_drain;
  dispatch(self);
  maybe_finish_drain(self);
}

/// Validates and serialises a request into `p`; an error if the connection cannot take it.
caf::error prepare(self_ptr self, request& req, caf::timespan timeout, pending_request& p) {
  auto& st = self->state;
  if (st.state == phase::draining)
    return make_caf_error(errc::shutting_down, "the connection is draining");
  if (st.state != phase::ready)
    return make_caf_error(errc::connection_lost,
                          "connection #" + std::to_string(self->id()) + " is not ready");
  std::string wire;
  auto info = ssh::serialize_request(req, st.host_header, wire);
  if (!info) {
    ++st.stats.failed_requests;
    return make_caf_error(info.error());
  }
  auto now = self->clock().now();
  p.request_id = std::move(req.id);
  p.req = ssh::outbound_request{std::move(wire), *info, false};
  p.arrived = now;
  p.deadline = now + timeout;
  return {};
}

/// Queues a prepared request for a channel slot; returns its tag.
std::uint64_t enqueue(self_ptr self, pending_request p) {
  auto& st = self->state;
  auto tag = ++st.next_tag;
  auto deadline = p.deadline;
  p.req.stream = static_cast<bool>(p.sink);
  st.requests.emplace(tag, std::move(p));
  st.queue.push_back(tag);
  st.stats.last_used = wall_now();
  st.last_activity = self->clock().now();
  arm_timer(self, deadline);
  dispatch(self);
  return tag;
}

void start_probe(self_ptr self) {
  auto& st = self->state;
  if (st.probing)
    return;
  st.probing = true;
  st.transport->probe();
  self->delayed_send(self, st.ctx->pool.keepalive_timeout, probe_atom_v, ++st.probe_seq);
}

void schedule_keepalive(self_ptr self) {
  self->delayed_send(self, self->state.ctx->pool.keepalive_interval, keepalive_atom_v,
                     ++self->state.keepalive_generation);
}

connection_impl::behavior_type connection_behavior(self_ptr self, std::string user, endpoint ep,
                                                   user_pool_actor pool,
                                                   std::shared_ptr<const actor_context> ctx,
                                                   agent_offer agent) {
  auto& st = self->state;
  st.user = std::move(user);
  st.ep = std::move(ep);
  st.pool = std::move(pool);
  st.ctx = std::move(ctx);
  st.host_header = st.ep.target_host + ":" + std::to_string(st.ep.target_port);
  st.stats.id = self->id();
  st.stats.user = st.user;
  st.stats.created = st.stats.last_used = wall_now();
  st.last_activity = self->clock().now();
  ssh::transport_options opts;
  opts.connect_timeout = st.ctx->pool.connect_timeout;
  opts.queue_timeout = st.ctx->pool.acquire_timeout;
  opts.channel_idle_timeout = st.ctx->pool.channel_idle_timeout;
  opts.max_channels = st.ctx->pool.max_channels_per_connection;
  opts.limits.max_body_bytes = st.ep.max_response_bytes != 0
                                   ? static_cast<std::size_t>(st.ep.max_response_bytes)
                                   : st.ctx->pool.max_response_bytes;
  opts.limits.max_header_bytes = st.ctx->pool.max_header_bytes;
  opts.stream_window = st.ctx->pool.stream_window_bytes;
  auto sink = std::make_shared<actor_sink>(caf::actor_cast<connection_impl>(self));
  st.agent = static_cast<bool>(agent);
  st.transport = st.agent ? st.ctx->transports->adopt(agent.take(), opts, std::move(sink))
                          : st.ctx->transports->make(st.ep, opts, std::move(sink));
  // Its pool spawned it and owns it: it does not outlive the pool.
  self->monitor(st.pool);
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source == st.pool.address()) {
      shut_down(self, error{errc::shutting_down, "the user's pool is gone"}, false);
      return;
    }
    // A stream's consumer went away: abandon its streams (their channels close).
    for (auto i = st.requests.begin(); i != st.requests.end();) {
      if (i->second.sink && i->second.sink.address() == dm.source)
        i = drop(self, i);
      else
        ++i;
    }
    dispatch(self);
    maybe_finish_drain(self);
  });
  install_exception_handler(self, [self](const std::string& what) {
    shut_down(self, error{errc::internal, what}, true);
  });
  return {
      [self](forward_atom, request& req, caf::timespan timeout) -> caf::result<response> {
        pending_request p;
        if (auto err = prepare(self, req, timeout, p))
          return err;
        // The promise only once the request is taken: an error is then returned directly.
        p.rp = self->make_response_promise<response>();
        auto rp = p.rp;
        enqueue(self, std::move(p));
        return rp;
      },
      [self](stream_atom, request& req, caf::timespan timeout,
             stream_sink_actor& sink) -> caf::result<std::uint64_t> {
        pending_request p;
        if (auto err = prepare(self, req, timeout, p))
          return err;
        p.sink = sink;
        p.timeout = timeout;
        self->state.sinks.add(self, sink);
        return enqueue(self, std::move(p));
      },
      [self](ack_atom, std::uint64_t tag, std::uint64_t bytes) {
        auto& st = self->state;
        auto i = st.requests.find(tag);
        if (i == st.requests.end() || !i->second.on_wire)
          return;
        auto& p = i->second;
        p.unacked -= std::min(p.unacked, bytes);
        st.transport->ack(tag, bytes);
        move_stream_deadline(self, p);
      },
      [self](head_atom, std::uint64_t tag, response& head) {
        auto& st = self->state;
        auto i = st.requests.find(tag);
        if (i == st.requests.end() || !i->second.sink)
          return;
        head.id = i->second.request_id;
        i->second.head_sent = true;
        move_stream_deadline(self, i->second);
        self->send(i->second.sink, head_atom_v, tag, std::move(head));
      },
      [self](chunk_atom, std::uint64_t tag, std::string& chunk) {
        auto& st = self->state;
        auto i = st.requests.find(tag);
        if (i == st.requests.end() || !i->second.sink)
          return;
        i->second.unacked += chunk.size();
        move_stream_deadline(self, i->second);
        st.last_activity = self->clock().now();
        self->send(i->second.sink, chunk_atom_v, tag, std::move(chunk));
      },
      [self](stats_atom) {
        auto result = self->state.stats;
        result.active_requests = static_cast<std::uint32_t>(self->state.on_wire);
        result.queued_requests =
            static_cast<std::uint32_t>(self->state.requests.size() - self->state.on_wire);
        return result;
      },
      [self](cancel_atom, std::uint64_t tag) {
        auto& st = self->state;
        auto i = st.requests.find(tag);
        if (i == st.requests.end() || !i->second.sink)
          return; // unknown, ended, or not a stream
        log().debug("stream '{}' on #{} of '{}' cancelled by its consumer after {} us",
                    i->second.request_id, self->id(), st.user, elapsed_us(self, i->second));
        drop(self, i);
        dispatch(self);
        maybe_finish_drain(self);
      },
      [self](health_atom) { return self->state.stats.healthy; },
      [self](disconnect_atom, const std::string& reason) {
        shut_down(self, error{errc::connection_lost, reason}, false);
      },
      [self](validate_atom) -> caf::result<bool> {
        auto& st = self->state;
        if (st.state != phase::ready)
          return make_caf_error(errc::connection_lost, "the connection is not ready");
        auto rp = self->make_response_promise<bool>();
        st.validators.push_back(rp);
        start_probe(self);
        return rp;
      },
      [self](evict_atom, caf::timespan max_idle) {
        auto& st = self->state;
        bool idle = st.state == phase::ready && st.requests.empty() &&
                    self->clock().now() - st.last_activity >= max_idle;
        if (idle) {
          log().info("connection #{} of '{}' idle for {} ms: closed", self->id(), st.user,
                     std::chrono::duration_cast<std::chrono::milliseconds>(self->clock().now() -
                                                                           st.last_activity)
                         .count());
          shut_down(self, error{errc::shutting_down, "idle"}, false);
        }
        return idle;
      },
      [self](drain_atom) -> caf::result<shutdown_report> {
        auto& st = self->state;
        if (st.state == phase::closed)
          return shutdown_report{};
        if (st.state != phase::ready && st.state != phase::draining) {
          shut_down(self, error{errc::shutting_down, "drained before it was ready"}, true);
          return shutdown_report{};
        }
        auto rp = self->make_response_promise<shutdown_report>();
        st.drain_rps.push_back(rp);
        if (st.state == phase::ready) {
          // A second drain (an engine drain during a user drain) joins the first.
          st.state = phase::draining;
          st.drain = shutdown_report{};
          st.drain.connections_closed = 1;
          st.drain.in_flight_at_start = st.requests.size();
          maybe_finish_drain(self);
        }
        return rp;
      },
      [self](force_atom) {
        auto& st = self->state;
        if (st.state != phase::draining)
          return;
        st.drain.forced = true;
        shut_down(self, error{errc::shutting_down, "cut at the end of the grace period"}, false);
      },
      [self](connect_atom) {
        auto& st = self->state;
        if (st.state != phase::created)
          return;
        st.state = phase::connecting;
        st.stats.state = connection_state::connecting;
        if (!st.transport) // an agent whose session was gone before its adoption
          return shut_down(self, error{errc::connection_lost, "the agent is gone"}, true);
        st.transport->open();
      },
      [self](opened_atom, const caf::error& err) {
        auto& st = self->state;
        if (st.state != phase::connecting)
          return;
        if (err) {
          shut_down(self, from_caf_error(err, errc::connect_failed), true);
          return;
        }
        st.state = phase::ready;
        st.stats.state = connection_state::ready;
        st.stats.healthy = true;
        st.ctx->counters->connections_opened.fetch_add(1, std::memory_order_relaxed);
        st.last_activity = self->clock().now();
        schedule_keepalive(self);
        self->send(st.pool, conn_up_atom_v, self->id());
      },
      [self](result_atom, std::uint64_t tag, response& res, transfer_info info) {
        auto& st = self->state;
        auto i = st.requests.find(tag);
        if (i == st.requests.end())
          return; // expired or cancelled meanwhile
        ++st.stats.requests;
        log().debug("request '{}' on #{} of '{}': {} in {} us", i->second.request_id, self->id(),
                    st.user, res.status, elapsed_us(self, i->second));
        if (i->second.sink && i->second.head_sent) {
          end_request(self, i->second, tag, caf::error{});
        } else {
          count(self, i->second, errc::none);
          res.id = std::move(i->second.request_id);
          // A stream complete before its head was reported: the whole response at once.
          if (i->second.sink)
            self->send(i->second.sink, whole_atom_v, tag, std::move(res));
          else
            i->second.rp.deliver(std::move(res));
        }
        finish(self, i, info);
      },
      [self](result_atom, std::uint64_t tag, const caf::error& err, transfer_info info) {
        auto& st = self->state;
        auto i = st.requests.find(tag);
        if (i == st.requests.end())
          return;
        ++st.stats.failed_requests;
        auto failure = from_caf_error(err, errc::internal);
        // Over the cap (a runaway stream, or a cap too small for the service) is for the
        // operator to see; other failures are the caller's to report.
        log().log(failure.code() == errc::response_too_large ? spdlog::level::warn
                                                             : spdlog::level::debug,
                  "request '{}' on #{} of '{}' failed after {} us: {}", i->second.request_id,
                  self->id(), st.user, elapsed_us(self, i->second), failure.to_string());
        end_request(self, i->second, tag, err);
        finish(self, i, info);
      },
      [self](lost_atom, const caf::error& reason) {
        shut_down(self, from_caf_error(reason, errc::connection_lost), true);
      },
      [self](alive_atom) {
        auto& st = self->state;
        st.probing = false;
        for (auto& v : st.validators)
          v.deliver(true);
        st.validators.clear();
      },
      [self](keepalive_atom, std::uint64_t generation) {
        auto& st = self->state;
        if (generation != st.keepalive_generation || st.state == phase::closed)
          return;
        start_probe(self);
        schedule_keepalive(self);
      },
      [self](probe_atom, std::uint64_t seq) {
        auto& st = self->state;
        if (!st.probing || seq != st.probe_seq)
          return; // answered in time
        st.ctx->counters->keepalive_failures.fetch_add(1, std::memory_order_relaxed);
        log().warn("connection #{} of '{}': no answer to a keepalive within {} (hung or "
                   "half-open peer)",
                   self->id(), st.user, describe_ms(st.ctx->pool.keepalive_timeout));
        shut_down(self,
                  error{errc::connection_lost, "no answer to a keepalive within " +
                                                   describe_ms(st.ctx->pool.keepalive_timeout)},
                  true);
      },
      [self](request_timeout_atom, std::uint64_t generation) {
        auto& st = self->state;
        if (!st.deadlines.fire(generation))
          return; // a newer timer replaced this one
        auto now = self->clock().now();
        auto next = time_point::max();
        for (auto i = st.requests.begin(); i != st.requests.end();) {
          auto& p = i->second;
          if (p.deadline > now) {
            next = std::min(next, p.deadline);
            ++i;
            continue;
          }
          if (st.state == phase::draining)
            ++st.drain.completed_during_drain; // ended by itself (its own deadline)
          end_request(self, p, i->first,
                      make_caf_error(errc::request_timeout,
                                     "request '" + p.request_id + "' did not complete in time"));
          i = drop(self, i);
        }
        if (next != time_point::max())
          arm_timer(self, next);
        dispatch(self);
        maybe_finish_drain(self);
      },
  };
}

} // namespace

connection_impl spawn_connection(caf::local_actor* parent, std::string user, endpoint ep,
                                 user_pool_actor pool, std::shared_ptr<const actor_context> ctx,
                                 agent_offer agent) {
  return parent->spawn(connection_behavior, std::move(user), std::move(ep), std::move(pool),
                       std::move(ctx), std::move(agent));
}

} // namespace sshpool
