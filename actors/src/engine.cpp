// The blocking facade: each call is one request to the supervisor or a connection actor,
// bounded by a deadline, whose reply the answering actor hands straight to the calling
// thread (handoff.hpp; engine_impl.hpp's `call`): no scoped_actor, no mailbox of the caller.
// A stream (forward_stream) still takes a scoped_actor: its chunks come to the caller's
// thread one by one. The engine's internals are in engine_impl.hpp, the forwards in
// forward.cpp.
#include <memory>
#include <thread>
#include <utility>

#include <caf/all.hpp>

#include "engine_impl.hpp"
#include "sharing_policy.hpp"
#include "sshpool/ssh/key_check.hpp"

namespace sshpool {

namespace detail {

engine_impl& impl_of(const engine& e) {
  return *e.impl_;
}

} // namespace detail

using detail::call;
using detail::failed;
using detail::stopped_error;

// -- connection -----------------------------------------------------------------------------

expected<response> connection::forward_stream(const request& req,
                                              const stream_handlers& handlers) const {
  if (!lease_)
    return error{errc::invalid_argument, "empty connection handle"};
  return forward_stream(req, handlers, lease_->impl->cfg.pool.request_timeout);
}

expected<response> connection::forward_stream(const request& req, const stream_handlers& handlers,
                                              std::chrono::milliseconds idle_deadline) const {
  if (!lease_)
    return error{errc::invalid_argument, "empty connection handle"};
  if (idle_deadline.count() <= 0)
    return error{errc::invalid_argument, "the deadline must be positive"};
  auto& im = *lease_->impl;
  if (im.stopped.load())
    return stopped_error();
  // A blocking actor is the sink: chunks are handed to the caller's thread one by one and
  // acknowledged after the callback returned (backpressure). A stream given up before its
  // end is cancelled; if a callback throws, the actor goes away and the connection abandons
  // the stream all the same.
  caf::scoped_actor self{*im.sys};
  auto conn = lease_->value.connection;
  auto idle = caf::timespan{idle_deadline};
  std::uint64_t id = 0;
  error failure;
  self->request(conn, idle + detail::reply_slack, stream_atom_v, req, idle,
                caf::actor_cast<stream_sink_actor>(self.ptr()))
      .receive([&](std::uint64_t tag) { id = tag; },
               [&](caf::error& err) { failure = from_caf_error(err, errc::connection_lost); });
  if (failed(failure))
    return failure;
  response head;
  bool ended = false;
  for (bool done = false; !done;) {
    self->receive(
        [&](head_atom, std::uint64_t tag, response& h) {
          if (tag != id)
            return;
          head = std::move(h);
          if (handlers.on_head)
            handlers.on_head(head);
        },
        [&](chunk_atom, std::uint64_t tag, std::string& chunk) {
          if (tag != id)
            return;
          bool keep = !handlers.on_chunk || handlers.on_chunk(chunk);
          self->send(conn, ack_atom_v, tag, static_cast<std::uint64_t>(chunk.size()));
          done = !keep;
        },
        [&](end_atom, std::uint64_t tag, caf::error& err) {
          if (tag != id)
            return;
          done = ended = true;
          if (err)
            failure = from_caf_error(err, errc::connection_lost);
        },
        [&](whole_atom, std::uint64_t tag, response& whole) {
          if (tag != id)
            return;
          done = ended = true;
          head = std::move(whole);
          auto body = std::exchange(head.body, {});
          if (handlers.on_head)
            handlers.on_head(head);
          if (!body.empty() && handlers.on_chunk)
            handlers.on_chunk(body);
        },
        caf::after(idle + detail::reply_slack) >>
            [&] {
              done = true;
              failure = error{errc::request_timeout, "no stream event within the deadline"};
            });
  }
  if (!ended) // on_chunk said stop, or the connection fell silent
    self->send(conn, cancel_atom_v, id);
  if (failed(failure))
    return failure;
  return head;
}

bool connection::is_healthy() const {
  if (!lease_)
    return false;
  bool healthy = false;
  call(
      *lease_->impl, lease_->value.connection, std::chrono::seconds(5), errc::connection_lost,
      [&](bool ok) { healthy = ok; }, health_atom_v);
  return healthy;
}

connection_stats connection::get_stats() const {
  connection_stats result;
  result.id = id();
  result.user = user();
  result.state = connection_state::closed;
  if (lease_)
    call(
        *lease_->impl, lease_->value.connection, std::chrono::seconds(5), errc::connection_lost,
        [&](connection_stats& st) { result = std::move(st); }, stats_atom_v);
  return result;
}

std::uint64_t connection::id() const noexcept {
  return lease_ ? lease_->value.connection_id : 0;
}

const std::string& connection::user() const noexcept {
  static const std::string none;
  return lease_ ? lease_->value.user : none;
}

// -- connection_pool ------------------------------------------------------------------------

expected<connection> connection_pool::get_connection(const std::string& user) {
  auto& p = impl_->cfg.pool;
  auto timeout = caf::timespan{p.acquire_timeout + p.connect_timeout} + detail::reply_slack;
  connection result;
  // A lease granted after this call gave up (its deadline passed while the pool still
  // waited, e.g. for a handshake permit) is nobody's: it goes back to the pool.
  auto supervisor = caf::actor_cast<caf::actor_addr>(impl_->supervisor);
  auto err = detail::call_or_hand_back(
      *impl_, impl_->supervisor, timeout, errc::shutting_down,
      [&](lease& l) {
        result.lease_ = std::make_shared<const detail::lease_handle>(impl_, std::move(l));
      },
      [supervisor](lease& l) {
        if (auto sup = caf::actor_cast<supervisor_actor>(supervisor))
          caf::anon_send(sup, release_atom_v, l.user, l);
      },
      acquire_atom_v, user);
  if (failed(err))
    return err;
  return result;
}

expected<void> connection_pool::release_connection(const std::string& user,
                                                   const connection& conn) {
  if (!conn)
    return error{errc::invalid_argument, "empty connection handle"};
  auto& held = *conn.lease_;
  if (held.impl != impl_)
    return error{errc::not_leased, "the connection belongs to another engine"};
  if (held.value.user != user)
    return error{errc::wrong_user,
                 "the lease belongs to user '" + held.value.user + "', not to '" + user + "'"};
  if (impl_->stopped.load())
    return stopped_error();
  if (held.released.exchange(true))
    return error{errc::not_leased, "the lease was already released"};
  // Everything the pool could refuse was checked above, so the release is sent without
  // waiting for an answer (a pair of get + release costs one round trip, not two). The
  // supervisor's mailbox is FIFO and it routes in order, so any later call from this
  // thread (a get, stats) is handled after this release.
  caf::anon_send(impl_->supervisor, release_atom_v, user, held.value);
  return {};
}

expected<std::size_t> connection_pool::close_connection(const std::string& user) {
  std::size_t closed = 0;
  auto err = call(
      *impl_, impl_->supervisor, std::chrono::seconds(10), errc::shutting_down,
      [&](std::uint64_t n) { closed = static_cast<std::size_t>(n); }, close_atom_v, user);
  if (failed(err))
    return err;
  return closed;
}

expected<shutdown_report> connection_pool::drain_user(const std::string& user) {
  shutdown_report report;
  auto timeout = caf::timespan{impl_->cfg.pool.request_timeout} + detail::reply_slack;
  auto err = call(
      *impl_, impl_->supervisor, timeout, errc::shutting_down,
      [&](shutdown_report& r) { report = r; }, drain_atom_v, user);
  if (failed(err))
    return err;
  return report;
}

pool_stats connection_pool::get_pool_stats() {
  pool_stats result;
  call(
      *impl_, impl_->supervisor, std::chrono::seconds(10), errc::shutting_down,
      [&](pool_stats& st) { result = std::move(st); }, stats_atom_v);
  return result;
}

// -- cleanup_service ------------------------------------------------------------------------

expected<void> cleanup_service::start() {
  if (impl_->stopped.load())
    return stopped_error();
  caf::anon_send(impl_->cleanup, start_atom_v);
  return {};
}

expected<void> cleanup_service::stop() {
  if (impl_->stopped.load())
    return stopped_error();
  caf::anon_send(impl_->cleanup, pause_atom_v);
  return {};
}

expected<std::size_t> cleanup_service::trigger_cleanup() {
  std::size_t closed = 0;
  auto err = call(
      *impl_, impl_->cleanup, std::chrono::seconds(90), errc::shutting_down,
      [&](std::uint64_t n) { closed = static_cast<std::size_t>(n); }, trigger_atom_v);
  if (failed(err))
    return err;
  return closed;
}

expected<void> cleanup_service::update_config(const cleanup_config& cfg) {
  return call(
      *impl_, impl_->cleanup, std::chrono::seconds(10), errc::shutting_down, [] {}, config_atom_v,
      cfg);
}

cleanup_stats cleanup_service::get_stats() {
  cleanup_stats result;
  call(
      *impl_, impl_->cleanup, std::chrono::seconds(10), errc::shutting_down,
      [&](cleanup_stats& st) { result = st; }, stats_atom_v);
  return result;
}

// -- engine ---------------------------------------------------------------------------------

namespace {

/// The state of the engine's own `sharing` scheduler; nullptr if it runs another.
sharing_policy::coordinator_data* sharing_data(detail::engine_impl& im) {
  if (!im.own_sys)
    return nullptr;
  auto* coordinator =
      dynamic_cast<caf::scheduler::coordinator<sharing_policy>*>(&im.own_sys->scheduler());
  return coordinator == nullptr ? nullptr : &coordinator->data();
}

} // namespace

engine::engine(engine_config cfg)
    : impl_(std::make_shared<detail::engine_impl>(std::move(cfg))), pool_(impl_), cleanup_(impl_) {
  auto& im = *impl_;
  im.own_cfg = std::make_unique<caf::actor_system_config>();
  add_message_types(*im.own_cfg);
  if (!im.cfg.cluster.node_id.empty())
    add_cluster_modules(*im.own_cfg, im.cfg.cluster);
  auto threads = im.cfg.scheduler_threads != 0
                     ? im.cfg.scheduler_threads
                     : std::max<std::size_t>(1, std::thread::hardware_concurrency());
  im.own_cfg->set("scheduler.max-threads", threads);
  if (im.cfg.scheduler == scheduler_policy::sharing)
    im.own_cfg->module_factories.push_back(
        [](caf::actor_system& sys) -> caf::actor_system::module* {
          return new caf::scheduler::coordinator<sharing_policy>(sys);
        });
  else
    im.own_cfg->set("scheduler.policy", caf::atom("stealing"));
  im.own_sys = std::make_unique<caf::actor_system>(*im.own_cfg);
  im.start(*im.own_sys);
}

engine::engine(caf::actor_system& sys, engine_config cfg)
    : impl_(std::make_shared<detail::engine_impl>(std::move(cfg))), pool_(impl_), cleanup_(impl_) {
  impl_->start(sys);
}

engine::~engine() {
  // A loop still hosted would not run again once the scheduler threads stop.
  if (auto* q = sharing_data(*impl_); q != nullptr && sharing_policy::unhost(*q))
    log().warn("engine stop: a hosted loop was still hosted (engine::unhost comes first)");
  impl_->shutdown();
}

expected<void> engine::set_endpoint(const std::string& user, endpoint ep) {
  // The key (an agent user's authorized keys) is loaded here, on the caller's thread: a
  // blocking read of a small file (and an encrypted key's key derivation) that must not run
  // in the supervisor's handler.
  if (auto ok = validate(ep); !ok)
    return ok;
  std::shared_ptr<const ssh::agent_policy> policy;
  if (ep.mode == endpoint_mode::agent) {
    auto loaded = agent_intake::load_policy(ep);
    if (!loaded)
      return loaded.error();
    policy = std::move(*loaded);
  } else if (auto ok = ssh::check_private_key(ep.identity_file, ep.passphrase); !ok) {
    return ok;
  } else {
    impl_->agents.set(user, nullptr); // a dial user's agents no longer get in
  }
  auto err = call(
      *impl_, impl_->supervisor, std::chrono::seconds(10), errc::shutting_down, [] {},
      endpoint_atom_v, user, std::move(ep));
  if (failed(err))
    return err;
  if (policy) // once the supervisor knows the user as an agent user
    impl_->agents.set(user, std::move(policy));
  return {};
}

expected<shutdown_report> engine::remove_endpoint(const std::string& user) {
  if (auto ok = validate_user(user); !ok)
    return ok.error();
  shutdown_report report;
  // The drain ends by the grace period (forced) or by the requests' own deadlines.
  auto& p = impl_->cfg.pool;
  auto timeout = caf::timespan{p.shutdown_grace_period + p.request_timeout} + detail::reply_slack;
  auto err = call(
      *impl_, impl_->supervisor, timeout, errc::shutting_down,
      [&](shutdown_report& r) { report = r; }, remove_atom_v, user);
  if (failed(err))
    return err;
  impl_->agents.set(user, nullptr); // an agent user's agents no longer get in
  return report;
}

shutdown_report engine::shutdown(std::chrono::milliseconds grace) {
  if (impl_->stopped.load())
    return {};
  impl_->leave_cluster(); // the other nodes stop sending this one work first
  // The drain starts with this grace before wait_for_shutdown callers wake up (they would
  // start it with the configured one).
  caf::anon_send(impl_->shutdown_coordinator, drain_atom_v, caf::timespan{grace});
  impl_->request_drain();
  shutdown_report report;
  // The drain ends by the grace period (forced) or by the requests' own deadlines.
  auto timeout = caf::timespan{grace + impl_->cfg.pool.request_timeout} + detail::reply_slack;
  auto err = call(
      *impl_, impl_->shutdown_coordinator, timeout, errc::shutting_down,
      [&](shutdown_report& r) { report = r; }, drain_atom_v, caf::timespan{grace});
  if (failed(err))
    log().warn("shutdown: {}", err.to_string());
  return report;
}

shutdown_report engine::shutdown() {
  return shutdown(impl_->cfg.pool.shutdown_grace_period);
}

void engine::handle_signals() {
  if (impl_->signals)
    return;
  auto* im = impl_.get();
  impl_->signals = std::make_unique<signal_watcher>([im](int count) {
    if (count == 1) {
      // Flag first, then log: whoever reads the line (an orchestrator, a test) must find
      // is_shutting_down() already true (/readyz already 503 in the gateway).
      im->request_drain();
      log().info("signal received: draining (a second signal forces)");
      im->leave_cluster();
      caf::anon_send(im->shutdown_coordinator, drain_atom_v,
                     caf::timespan{im->cfg.pool.shutdown_grace_period});
    } else {
      caf::anon_send(im->shutdown_coordinator, force_atom_v);
    }
  });
}

shutdown_report engine::wait_for_shutdown() {
  {
    std::unique_lock<std::mutex> guard{impl_->drain_mx};
    impl_->drain_cv.wait(guard, [this] { return impl_->drain_requested; });
  }
  return shutdown();
}

std::optional<agent_listener_status> engine::agent_listener() const {
  return impl_->agents.status();
}

std::optional<cluster_stats> engine::cluster_status() const {
  auto cluster = impl_->cluster;
  if (!cluster)
    return std::nullopt;
  std::optional<cluster_stats> result;
  call(
      *impl_, cluster, std::chrono::seconds(5), errc::shutting_down,
      [&](cluster_stats& st) { result = std::move(st); }, stats_atom_v);
  // The routed counters are the supervisor's.
  if (result)
    call(
        *impl_, caf::actor_cast<supervisor_impl>(impl_->supervisor), std::chrono::seconds(5),
        errc::shutting_down,
        [&](std::uint64_t asked, std::uint64_t failed, std::uint64_t served, std::uint64_t held) {
          result->remote_acquires = asked;
          result->remote_acquire_failures = failed;
          result->served_acquires = served;
          result->served_leases = held;
        },
        view_atom_v);
  return result;
}

metrics_snapshot engine::metrics() const {
  return impl_->counters->snapshot();
}

bool engine::is_shutting_down() const noexcept {
  std::lock_guard<std::mutex> guard{impl_->drain_mx};
  return impl_->drain_requested;
}

const engine_config& engine::config() const noexcept {
  return impl_->cfg;
}

caf::actor_system& engine::system() noexcept {
  return *impl_->sys;
}

expected<void> engine::host(hosted_loop& loop) {
  auto* q = sharing_data(*impl_);
  if (q == nullptr)
    return error{errc::invalid_argument,
                 "only an engine with its own actor system and the sharing scheduler hosts a loop"};
  if (!sharing_policy::host(*q, loop))
    return error{errc::invalid_argument, "the engine hosts a loop already"};
  return {};
}

void engine::unhost() {
  if (auto* q = sharing_data(*impl_))
    sharing_policy::unhost(*q);
}

supervisor_actor supervisor_of(const engine& e) {
  return detail::impl_of(e).supervisor;
}

} // namespace sshpool
