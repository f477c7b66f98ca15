// The CAF side of the data: atoms, the lease, the typed actor interfaces of the supervisor,
// the user pools and the connections, the type-ID block, and the errc error category.
// Include this only where CAF is used (never from ssh/).
#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/type_id.hpp>
#include <caf/typed_actor.hpp>

#include "sshpool/config.hpp"
#include "sshpool/error.hpp"
#include "sshpool/types.hpp"

CAF_ERROR_CODE_ENUM(sshpool::errc, "sshpool")

// Atoms are at most 10 characters and equal text means the same atom: all ours start "sp_".
CAF_BEGIN_TYPE_ID_BLOCK(sshpool_atoms, caf::first_custom_type_id)
CAF_ADD_ATOM(sshpool_atoms, sshpool, acquire_atom, "sp_acquire")
CAF_ADD_ATOM(sshpool_atoms, sshpool, release_atom, "sp_release")
CAF_ADD_ATOM(sshpool_atoms, sshpool, close_atom, "sp_close")
CAF_ADD_ATOM(sshpool_atoms, sshpool, stats_atom, "sp_stats")
CAF_ADD_ATOM(sshpool_atoms, sshpool, endpoint_atom, "sp_endpnt")
CAF_ADD_ATOM(sshpool_atoms, sshpool, permit_atom, "sp_permit")
CAF_ADD_ATOM(sshpool_atoms, sshpool, withdraw_atom, "sp_withdr")
CAF_ADD_ATOM(sshpool_atoms, sshpool, return_atom, "sp_return")
CAF_ADD_ATOM(sshpool_atoms, sshpool, connect_atom, "sp_connect")
CAF_ADD_ATOM(sshpool_atoms, sshpool, forward_atom, "sp_forward")
CAF_ADD_ATOM(sshpool_atoms, sshpool, health_atom, "sp_health")
CAF_ADD_ATOM(sshpool_atoms, sshpool, conn_up_atom, "sp_connup")
CAF_ADD_ATOM(sshpool_atoms, sshpool, conn_down_atom, "sp_conndn")
CAF_ADD_ATOM(sshpool_atoms, sshpool, opened_atom, "sp_opened")
CAF_ADD_ATOM(sshpool_atoms, sshpool, result_atom, "sp_result")
CAF_ADD_ATOM(sshpool_atoms, sshpool, lost_atom, "sp_lost")
CAF_ADD_ATOM(sshpool_atoms, sshpool, timeout_atom, "sp_timeout")
CAF_ADD_ATOM(sshpool_atoms, sshpool, stop_atom, "sp_stop")
CAF_ADD_ATOM(sshpool_atoms, sshpool, keepalive_atom, "sp_keepal")
CAF_ADD_ATOM(sshpool_atoms, sshpool, probe_atom, "sp_probe")
CAF_ADD_ATOM(sshpool_atoms, sshpool, alive_atom, "sp_alive")
CAF_ADD_ATOM(sshpool_atoms, sshpool, validate_atom, "sp_valid")
CAF_ADD_ATOM(sshpool_atoms, sshpool, evict_atom, "sp_evict")
CAF_ADD_ATOM(sshpool_atoms, sshpool, drain_atom, "sp_drain")
CAF_ADD_ATOM(sshpool_atoms, sshpool, force_atom, "sp_force")
CAF_ADD_ATOM(sshpool_atoms, sshpool, idle_atom, "sp_idle")
CAF_ADD_ATOM(sshpool_atoms, sshpool, retire_atom, "sp_retire")
CAF_ADD_ATOM(sshpool_atoms, sshpool, retry_atom, "sp_retry")
CAF_ADD_ATOM(sshpool_atoms, sshpool, tick_atom, "sp_tick")
CAF_ADD_ATOM(sshpool_atoms, sshpool, start_atom, "sp_start")
CAF_ADD_ATOM(sshpool_atoms, sshpool, trigger_atom, "sp_trigger")
CAF_ADD_ATOM(sshpool_atoms, sshpool, config_atom, "sp_config")
CAF_ADD_ATOM(sshpool_atoms, sshpool, stream_atom, "sp_stream")
CAF_ADD_ATOM(sshpool_atoms, sshpool, head_atom, "sp_head")
CAF_ADD_ATOM(sshpool_atoms, sshpool, chunk_atom, "sp_chunk")
CAF_ADD_ATOM(sshpool_atoms, sshpool, end_atom, "sp_end")
CAF_ADD_ATOM(sshpool_atoms, sshpool, ack_atom, "sp_ack")
CAF_END_TYPE_ID_BLOCK(sshpool_atoms)

namespace sshpool {

/// The consumer of a streamed response (see connection_actor's stream_atom): the head,
/// then body chunks as they arrive, then the end (no error: complete). It acknowledges the
/// bytes of each chunk it has taken with ack_atom to the connection; unacknowledged bytes
/// are bounded (stream_window), which propagates a slow consumer's pace to the server.
using stream_sink_actor = caf::typed_actor<caf::reacts_to<head_atom, std::uint64_t, response>,
                                           caf::reacts_to<chunk_atom, std::uint64_t, std::string>,
                                           caf::reacts_to<end_atom, std::uint64_t, caf::error>>;

/// One SSH connection (internal events are marked; services use the first ones).
using connection_actor = caf::typed_actor<
    // Forwards a request within the deadline; replies the whole response.
    caf::replies_to<forward_atom, request, caf::timespan>::with<response>,
    // Forwards a request and streams the response to the sink; replies the stream id that
    // tags the sink's messages. The deadline bounds the wait for the head and every gap
    // between chunks. ack_atom: the sink took that many more bytes of stream N.
    caf::replies_to<stream_atom, request, caf::timespan, stream_sink_actor>::with<std::uint64_t>,
    caf::reacts_to<ack_atom, std::uint64_t, std::uint64_t>,
    caf::replies_to<stats_atom>::with<connection_stats>, caf::replies_to<health_atom>::with<bool>,
    // Closes the SSH connection (in-flight requests fail with connection_lost).
    caf::reacts_to<close_atom>,
    // Probes the server now; true once it answered, an error (and the connection closes)
    // if it did not within keepalive_timeout.
    caf::replies_to<validate_atom>::with<bool>,
    // Closes the connection if nothing was in flight for at least the given time.
    caf::replies_to<evict_atom, caf::timespan>::with<bool>,
    // Stops taking requests, lets those in flight finish, then disconnects; replies what
    // happened (connections_closed = 1). force_atom cuts what is still in flight.
    caf::replies_to<drain_atom>::with<shutdown_report>, caf::reacts_to<force_atom>,
    // internal: the pool starts the handshake.
    caf::reacts_to<connect_atom>,
    // internal: transport events (handshake done, request done/failed, session lost, proof
    // of life), request deadlines, keepalive ticks and probe deadlines.
    caf::reacts_to<opened_atom, caf::error>,
    caf::reacts_to<result_atom, std::uint64_t, response, transfer_info>,
    caf::reacts_to<result_atom, std::uint64_t, caf::error, transfer_info>,
    caf::reacts_to<head_atom, std::uint64_t, response>,
    caf::reacts_to<chunk_atom, std::uint64_t, std::string>, caf::reacts_to<lost_atom, caf::error>,
    caf::reacts_to<alive_atom>, caf::reacts_to<timeout_atom, std::uint64_t>,
    caf::reacts_to<keepalive_atom, std::uint64_t>, caf::reacts_to<probe_atom, std::uint64_t>>;

/// A lease of a connection by a user; released with `release_atom`.
struct lease {
  std::string user;
  std::uint64_t id = 0;
  /// The connection's id (its actor id).
  std::uint64_t connection_id = 0;
  connection_actor connection;
};

/// The pool of one user.
using user_pool_actor = caf::typed_actor<
    caf::replies_to<acquire_atom, std::string>::with<lease>,
    // Ends a lease: `not_leased` for a double release, `wrong_user` for another user's lease.
    caf::replies_to<release_atom, std::string, lease>::with<void>,
    // Closes every connection of the user; replies how many.
    caf::replies_to<close_atom, std::string>::with<std::uint64_t>,
    caf::replies_to<stats_atom>::with<user_stats>, caf::reacts_to<endpoint_atom, endpoint>,
    // Fails waiters with shutting_down, withdraws its permits asked, closes every
    // connection and quits once their actors are down.
    caf::reacts_to<stop_atom>,
    // Closes idle connections older than the given idle time; replies how many.
    caf::replies_to<evict_atom, caf::timespan>::with<std::uint64_t>,
    // Stops admitting the user, lets its requests finish, closes; replies what happened.
    caf::replies_to<drain_atom>::with<shutdown_report>, caf::reacts_to<force_atom>,
    // internal: the supervisor retires an empty pool (true: it quits).
    caf::replies_to<retire_atom>::with<bool>,
    // internal: connection events, waiter deadlines, the end of a reconnect backoff.
    caf::reacts_to<conn_up_atom, std::uint64_t>,
    caf::reacts_to<conn_down_atom, std::uint64_t, caf::error>,
    caf::reacts_to<timeout_atom, std::uint64_t>, caf::reacts_to<retry_atom, std::uint64_t>>;

/// The root of the hierarchy: routes per user, spawns and monitors the pools, and hands out
/// the permits for new connections (each pool spawns and monitors its own).
using supervisor_actor = caf::typed_actor<
    caf::replies_to<acquire_atom, std::string>::with<lease>,
    caf::replies_to<release_atom, std::string, lease>::with<void>,
    caf::replies_to<close_atom, std::string>::with<std::uint64_t>,
    caf::replies_to<stats_atom>::with<pool_stats>,
    caf::replies_to<endpoint_atom, std::string, endpoint>::with<void>,
    // Stops admitting, closes every connection and replies once all are gone.
    caf::replies_to<stop_atom>::with<void>,
    // Closes idle connections (no lease, nothing in flight) older than the given idle time.
    caf::replies_to<evict_atom, caf::timespan>::with<std::uint64_t>,
    // Drains the whole engine (force_atom cuts what remains), or one user.
    caf::replies_to<drain_atom>::with<shutdown_report>, caf::reacts_to<force_atom>,
    caf::replies_to<drain_atom, std::string>::with<shutdown_report>,
    // internal: a pool asks for a permit to create one connection (answered, in FIFO order,
    // as the handshake rate allows; refused at the global cap), withdraws the permits it
    // asked for and no longer needs, and gives one back once that connection's actor is
    // down; an empty pool offers to retire; handshake-rate ticks.
    caf::replies_to<permit_atom>::with<void>, caf::reacts_to<withdraw_atom>,
    caf::reacts_to<return_atom>, caf::reacts_to<idle_atom, std::string>, caf::reacts_to<tick_atom>>;

/// The cleanup actor: periodic idle eviction. Ticks carry a generation and stale ones are
/// ignored, so update_config reschedules at once.
using cleanup_actor =
    caf::typed_actor<caf::reacts_to<start_atom>, caf::reacts_to<stop_atom>,
                     // Runs a cleanup now; replies how many connections it closed.
                     caf::replies_to<trigger_atom>::with<std::uint64_t>,
                     caf::replies_to<config_atom, cleanup_config>::with<void>,
                     caf::replies_to<stats_atom>::with<cleanup_stats>,
                     // internal: the periodic tick.
                     caf::reacts_to<tick_atom, std::uint64_t>>;

/// The shutdown actor: one drain of the whole engine at a time.
using shutdown_actor = caf::typed_actor<
    // Drains within the grace period; every caller gets the same report.
    caf::replies_to<drain_atom, caf::timespan>::with<shutdown_report>,
    // Cuts what remains now (a second signal).
    caf::reacts_to<force_atom>,
    // internal: the end of the grace period of drain number N.
    caf::reacts_to<timeout_atom, std::uint64_t>>;

/// Registers sshpool's message types and error category in a CAF configuration. Call it on
/// the configuration of an actor system that you hand to `sshpool::engine`.
void add_message_types(caf::actor_system_config& cfg);

/// A CAF error of the sshpool category.
caf::error make_caf_error(errc code, std::string message);
caf::error make_caf_error(const error& err);

/// Converts a CAF error; CAF's own errors map to `timeout` (request timeouts) or to
/// `fallback` (e.g. the receiver is gone).
error from_caf_error(const caf::error& err, errc fallback);

// -- inspection (serialization and to_string); the passphrase is never inspected ----------

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, request& x) {
  return f(caf::meta::type_name("sshpool.request"), x.id, x.method, x.path, x.headers, x.body);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, response& x) {
  return f(caf::meta::type_name("sshpool.response"), x.id, x.status, x.reason, x.headers, x.body);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, endpoint& x) {
  return f(caf::meta::type_name("sshpool.endpoint"), x.host, x.port, x.username, x.identity_file,
           x.known_hosts_file, x.host_keys, x.target_host, x.target_port, x.server_nodelay,
           x.ciphers, x.max_response_bytes);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, transfer_info& x) {
  return f(caf::meta::type_name("sshpool.transfer_info"), x.bytes_in, x.bytes_out, x.open_channels);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, connection_stats& x) {
  return f(caf::meta::type_name("sshpool.connection_stats"), x.id, x.user, x.state, x.created,
           x.last_used, x.channel_count, x.active_requests, x.queued_requests, x.requests,
           x.failed_requests, x.bytes_in, x.bytes_out, x.healthy);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, user_stats& x) {
  return f(caf::meta::type_name("sshpool.user_stats"), x.user, x.connections, x.connecting, x.idle,
           x.leases, x.waiters, x.handshakes, x.handshake_failures, x.acquire_timeouts);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pool_stats& x) {
  return f(caf::meta::type_name("sshpool.pool_stats"), x.total_connections, x.user_count,
           x.connecting, x.idle, x.leases, x.waiters, x.users);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cleanup_config& x) {
  return f(caf::meta::type_name("sshpool.cleanup_config"), x.cleanup_interval, x.max_idle_time);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cleanup_stats& x) {
  return f(caf::meta::type_name("sshpool.cleanup_stats"), x.is_running, x.runs, x.cleanup_count,
           x.last_cleanup_time, x.config);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, shutdown_report& x) {
  return f(caf::meta::type_name("sshpool.shutdown_report"), x.duration, x.connections_closed,
           x.in_flight_at_start, x.completed_during_drain, x.cut, x.forced);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lease& x) {
  return f(caf::meta::type_name("sshpool.lease"), x.user, x.id, x.connection_id, x.connection);
}

} // namespace sshpool

CAF_BEGIN_TYPE_ID_BLOCK(sshpool, caf::first_custom_type_id + 100)
CAF_ADD_TYPE_ID(sshpool, (sshpool::request))
CAF_ADD_TYPE_ID(sshpool, (sshpool::response))
CAF_ADD_TYPE_ID(sshpool, (sshpool::endpoint))
CAF_ADD_TYPE_ID(sshpool, (sshpool::transfer_info))
CAF_ADD_TYPE_ID(sshpool, (sshpool::connection_stats))
CAF_ADD_TYPE_ID(sshpool, (sshpool::user_stats))
CAF_ADD_TYPE_ID(sshpool, (sshpool::pool_stats))
CAF_ADD_TYPE_ID(sshpool, (sshpool::lease))
CAF_ADD_TYPE_ID(sshpool, (sshpool::cleanup_config))
CAF_ADD_TYPE_ID(sshpool, (sshpool::cleanup_stats))
CAF_ADD_TYPE_ID(sshpool, (sshpool::shutdown_report))
CAF_ADD_TYPE_ID(sshpool, (sshpool::connection_actor))
CAF_ADD_TYPE_ID(sshpool, (sshpool::stream_sink_actor))
CAF_ADD_TYPE_ID(sshpool, (sshpool::user_pool_actor))
CAF_ADD_TYPE_ID(sshpool, (sshpool::supervisor_actor))
CAF_ADD_TYPE_ID(sshpool, (sshpool::cleanup_actor))
CAF_ADD_TYPE_ID(sshpool, (sshpool::shutdown_actor))
CAF_END_TYPE_ID_BLOCK(sshpool)
