// The connection actor: one SSH connection (one transport) of one user.
//
//            connect_atom            opened_atom(ok)
//   created ─────────────► connecting ─────────────► ready ◄──┐ forward / result
//      │                       │                       │  └───┘ (channel slots, FIFO)
//      │ close_atom            │ opened_atom(error)    │ lost_atom / close_atom /
//      ▼                       ▼                       ▼ pool down
//   closed ◄───────────────────┴───────────────────────┘  (in-flight: connection_lost)
//
// Requests take a channel slot (at most max_channels_per_connection on the wire); the rest
// wait in FIFO order. Every request has a deadline counted from its arrival; one timer at
// the earliest deadline serves them all. On expiry only that request's channel is closed.
// The pool learns of every state change at once (conn_up / conn_down).
#include "connection.hpp"

#include <deque>
#include <unordered_map>

#include <caf/all.hpp>

#include "handlers.hpp"
#include "sshpool/ssh/log.hpp"

namespace sshpool {

namespace {

using clock_type = caf::actor_clock::clock_type;
using time_point = caf::actor_clock::time_point;

enum class phase { created, connecting, ready, closed };

/// Forwards transport events into the actor's mailbox (called on I/O threads).
class actor_sink final : public ssh::transport_sink {
public:
  explicit actor_sink(connection_actor self) : self_(std::move(self)) {}

  void on_open(error result) override {
    caf::anon_send(self_, opened_atom_v,
                   result.code() == errc::none ? caf::error{} : make_caf_error(result));
  }

  void on_response(std::uint64_t tag, response res, transfer_info info) override {
    caf::anon_send(self_, result_atom_v, tag, std::move(res), info);
  }

  void on_failure(std::uint64_t tag, error err, transfer_info info) override {
    caf::anon_send(self_, result_atom_v, tag, make_caf_error(err), info);
  }

  void on_lost(error reason) override {
    caf::anon_send(self_, lost_atom_v, make_caf_error(reason));
  }

private:
  connection_actor self_;
};

struct pending_request {
  caf::typed_response_promise<response> rp;
  std::string request_id;
  ssh::outbound_request req;
  time_point arrived;
  time_point deadline;
  bool on_wire = false;
};

struct connection_actor_state {
  static inline const char* name = "sshpool.connection";

  std::string user;
  endpoint ep;
  user_pool_actor pool;
  std::shared_ptr<const actor_context> ctx;
  std::string host_header;
  std::unique_ptr<ssh::transport> transport;
  phase state = phase::created;
  std::unordered_map<std::uint64_t, pending_request> requests;
  std::deque<std::uint64_t> queue;
  std::size_t on_wire = 0;
  std::uint64_t next_tag = 0;
  /// Deadline timer: generation of the armed tick and its time (none armed if max()).
  std::uint64_t timer_generation = 0;
  time_point timer_at = time_point::max();
  connection_stats stats;
};

using self_ptr = connection_actor::stateful_pointer<connection_actor_state>;

std::chrono::system_clock::time_point wall_now() {
  return std::chrono::system_clock::now();
}

long long elapsed_us(self_ptr self, const pending_request& p) {
  return std::chrono::duration_cast<std::chrono::microseconds>(self->clock().now() - p.arrived)
      .count();
}

void arm_timer(self_ptr self, time_point deadline) {
  auto& st = self->state;
  if (deadline >= st.timer_at)
    return;
  st.timer_at = deadline;
  auto delay = deadline - self->clock().now();
  self->delayed_send(self, std::max(delay, decltype(delay){0}), timeout_atom_v,
                     ++st.timer_generation);
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

/// Fails every request with `err` (the connection is going away).
void fail_all(self_ptr self, const error& err) {
  auto& st = self->state;
  for (auto& [tag, p] : st.requests)
    p.rp.deliver(make_caf_error(err));
  st.stats.failed_requests += st.requests.size();
  st.requests.clear();
  st.queue.clear();
  st.on_wire = 0;
}

void shut_down(self_ptr self, const error& reason, bool tell_pool) {
  auto& st = self->state;
  if (st.state == phase::closed)
    return;
  st.state = phase::closed;
  st.stats.state = connection_state::closed;
  st.stats.healthy = false;
  if (st.transport)
    st.transport->close();
  fail_all(self, error{errc::connection_lost, reason.message()});
  if (tell_pool)
    self->send(st.pool, conn_down_atom_v, self->id(), make_caf_error(reason));
  self->quit();
}

void finish(self_ptr self, std::uint64_t tag, const transfer_info& info) {
  auto& st = self->state;
  st.stats.bytes_in += info.bytes_in;
  st.stats.bytes_out += info.bytes_out;
  st.stats.channel_count = info.open_channels;
  st.stats.last_used = wall_now();
  --st.on_wire;
  st.requests.erase(tag);
  dispatch(self);
}

connection_actor::behavior_type connection_impl(self_ptr self, std::string user, endpoint ep,
                                                user_pool_actor pool,
                                                std::shared_ptr<const actor_context> ctx) {
  auto& st = self->state;
  st.user = std::move(user);
  st.ep = std::move(ep);
  st.pool = std::move(pool);
  st.ctx = std::move(ctx);
  st.host_header = st.ep.target_host + ":" + std::to_string(st.ep.target_port);
  st.stats.id = self->id();
  st.stats.user = st.user;
  st.stats.created = st.stats.last_used = wall_now();
  ssh::transport_options opts;
  opts.connect_timeout = st.ctx->pool.connect_timeout;
  opts.channel_idle_timeout = st.ctx->pool.channel_idle_timeout;
  opts.max_channels = st.ctx->pool.max_channels_per_connection;
  opts.limits.max_body_bytes = st.ctx->pool.max_response_bytes;
  opts.limits.max_header_bytes = st.ctx->pool.max_header_bytes;
  st.transport = st.ctx->transports->make(
      st.ep, opts, std::make_shared<actor_sink>(caf::actor_cast<connection_actor>(self)));
  self->monitor(st.pool);
  self->set_down_handler([self](const caf::down_msg& dm) {
    if (dm.source == self->state.pool.address())
      shut_down(self, error{errc::shutting_down, "the user's pool is gone"}, false);
  });
  install_exception_handler(self, [self](const std::string& what) {
    shut_down(self, error{errc::internal, what}, true);
  });
  return {
      [self](forward_atom, request& req, caf::timespan timeout) -> caf::result<response> {
        auto& st = self->state;
        if (st.state != phase::ready)
          return make_caf_error(errc::connection_lost,
                                "connection #" + std::to_string(self->id()) + " is not ready");
        std::string wire;
        auto info = ssh::serialize_request(req, st.host_header, wire);
        if (!info) {
          ++st.stats.failed_requests;
          return make_caf_error(info.error());
        }
        auto tag = ++st.next_tag;
        auto now = self->clock().now();
        auto rp = self->make_response_promise<response>();
        st.requests.emplace(tag, pending_request{rp, std::move(req.id),
                                                 ssh::outbound_request{std::move(wire), *info}, now,
                                                 now + timeout});
        st.queue.push_back(tag);
        st.stats.last_used = wall_now();
        arm_timer(self, now + timeout);
        dispatch(self);
        return rp;
      },
      [self](stats_atom) {
        auto result = self->state.stats;
        result.active_requests = static_cast<std::uint32_t>(self->state.on_wire);
        result.queued_requests =
            static_cast<std::uint32_t>(self->state.requests.size() - self->state.on_wire);
        return result;
      },
      [self](health_atom) { return self->state.state == phase::ready; },
      [self](close_atom) {
        shut_down(self, error{errc::connection_lost, "closed"}, false);
      },
      [self](connect_atom) {
        auto& st = self->state;
        if (st.state != phase::created)
          return;
        st.state = phase::connecting;
        st.stats.state = connection_state::connecting;
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
        res.id = std::move(i->second.request_id);
        i->second.rp.deliver(std::move(res));
        finish(self, tag, info);
      },
      [self](result_atom, std::uint64_t tag, const caf::error& err, transfer_info info) {
        auto& st = self->state;
        auto i = st.requests.find(tag);
        if (i == st.requests.end())
          return;
        ++st.stats.failed_requests;
        log().debug("request '{}' on #{} of '{}' failed after {} us: {}", i->second.request_id,
                    self->id(), st.user, elapsed_us(self, i->second),
                    from_caf_error(err, errc::internal).to_string());
        i->second.rp.deliver(err);
        finish(self, tag, info);
      },
      [self](lost_atom, const caf::error& reason) {
        shut_down(self, from_caf_error(reason, errc::connection_lost), true);
      },
      [self](timeout_atom, std::uint64_t generation) {
        auto& st = self->state;
        if (generation != st.timer_generation)
          return; // a newer timer replaced this one
        st.timer_at = time_point::max();
        auto now = self->clock().now();
        auto next = time_point::max();
        for (auto i = st.requests.begin(); i != st.requests.end();) {
          auto& p = i->second;
          if (p.deadline > now) {
            next = std::min(next, p.deadline);
            ++i;
            continue;
          }
          if (p.on_wire) {
            st.transport->cancel(i->first);
            --st.on_wire;
          }
          ++st.stats.failed_requests;
          p.rp.deliver(make_caf_error(errc::request_timeout,
                                      "request '" + p.request_id + "' did not complete in time"));
          i = st.requests.erase(i);
        }
        if (next != time_point::max())
          arm_timer(self, next);
        dispatch(self);
      },
  };
}

} // namespace

connection_actor spawn_connection(caf::local_actor* parent, std::string user, endpoint ep,
                                  user_pool_actor pool, std::shared_ptr<const actor_context> ctx) {
  return parent->spawn(connection_impl, std::move(user), std::move(ep), std::move(pool),
                       std::move(ctx));
}

} // namespace sshpool
