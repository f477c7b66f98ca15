// The CAF side of the data, as a service sees it: the atoms and typed actor interfaces a
// client may send (the supervisor, a leased connection, a stream's sink), the lease, the
// type-ID blocks and the errc error category. The engine's internal messages (transport
// events, permits, timers) and the full interfaces of its actors are not here: they extend
// these in actors/src/internal_messages.hpp, with a type-ID block of their own.
// Include this only where CAF is used (never from ssh/).
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/type_id.hpp>
#include <caf/typed_actor.hpp>

#include "sshpool/config.hpp"
#include "sshpool/error.hpp"
#include "sshpool/types.hpp"

CAF_ERROR_CODE_ENUM(sshpool::errc, "sshpool")

// Atoms are at most 10 characters and equal text means the same atom: all ours start "sp_",
// and each has one meaning wherever it is used.
CAF_BEGIN_TYPE_ID_BLOCK(sshpool_atoms, caf::first_custom_type_id)
CAF_ADD_ATOM(sshpool_atoms, sshpool, acquire_atom, "sp_acquire")
CAF_ADD_ATOM(sshpool_atoms, sshpool, release_atom, "sp_release")
CAF_ADD_ATOM(sshpool_atoms, sshpool, close_atom, "sp_close")
CAF_ADD_ATOM(sshpool_atoms, sshpool, stats_atom, "sp_stats")
CAF_ADD_ATOM(sshpool_atoms, sshpool, endpoint_atom, "sp_endpnt")
CAF_ADD_ATOM(sshpool_atoms, sshpool, forward_atom, "sp_forward")
CAF_ADD_ATOM(sshpool_atoms, sshpool, health_atom, "sp_health")
CAF_ADD_ATOM(sshpool_atoms, sshpool, stop_atom, "sp_stop")
CAF_ADD_ATOM(sshpool_atoms, sshpool, evict_atom, "sp_evict")
CAF_ADD_ATOM(sshpool_atoms, sshpool, drain_atom, "sp_drain")
CAF_ADD_ATOM(sshpool_atoms, sshpool, force_atom, "sp_force")
CAF_ADD_ATOM(sshpool_atoms, sshpool, stream_atom, "sp_stream")
CAF_ADD_ATOM(sshpool_atoms, sshpool, head_atom, "sp_head")
CAF_ADD_ATOM(sshpool_atoms, sshpool, chunk_atom, "sp_chunk")
CAF_ADD_ATOM(sshpool_atoms, sshpool, end_atom, "sp_end")
CAF_ADD_ATOM(sshpool_atoms, sshpool, ack_atom, "sp_ack")
CAF_ADD_ATOM(sshpool_atoms, sshpool, cancel_atom, "sp_cancel")
CAF_ADD_ATOM(sshpool_atoms, sshpool, remove_atom, "sp_remove")
CAF_ADD_ATOM(sshpool_atoms, sshpool, whole_atom, "sp_whole")
CAF_END_TYPE_ID_BLOCK(sshpool_atoms)

namespace sshpool {

/// The consumer of a streamed response (see connection_actor's stream_atom): the head,
/// then body chunks as they arrive, then the end (no error: complete). It acknowledges the
/// bytes of each chunk it has taken with ack_atom to the connection; unacknowledged bytes
/// are bounded (stream_window), which propagates a slow consumer's pace to the server.
/// A response that is complete by the time its head arrives (a small one, usually) comes
/// instead as one whole_atom: head and body, and the end; nothing else follows for that
/// stream and nothing is acknowledged.
using stream_sink_actor = caf::typed_actor<caf::reacts_to<head_atom, std::uint64_t, response>,
                                           caf::reacts_to<chunk_atom, std::uint64_t, std::string>,
                                           caf::reacts_to<end_atom, std::uint64_t, caf::error>,
                                           caf::reacts_to<whole_atom, std::uint64_t, response>>;

/// One SSH connection, as its lessee uses it.
using connection_actor = caf::typed_actor<
    // Forwards a request within the deadline; replies the whole response.
    caf::replies_to<forward_atom, request, caf::timespan>::with<response>,
    // Forwards a request and streams the response to the sink; replies the stream id that
    // tags the sink's messages. The deadline bounds the wait for the head and every gap
    // between chunks.
    caf::replies_to<stream_atom, request, caf::timespan, stream_sink_actor>::with<std::uint64_t>,
    // The sink took that many more bytes of stream N.
    caf::reacts_to<ack_atom, std::uint64_t, std::uint64_t>,
    // The consumer abandons stream N: its channel is closed and its slot freed; the sink gets
    // nothing more from the connection (no end either; what was sent before the cancel may
    // still be in its mailbox). An unknown or finished stream id is ignored.
    caf::reacts_to<cancel_atom, std::uint64_t>, caf::replies_to<stats_atom>::with<connection_stats>,
    // True while the SSH session is up.
    caf::replies_to<health_atom>::with<bool>>;

/// A lease of a connection by a user; released with `release_atom`.
struct lease {
  std::string user;
  std::uint64_t id = 0;
  /// The connection's id (its actor id).
  std::uint64_t connection_id = 0;
  connection_actor connection;
};

/// The root of an engine's actors, the service's entry point: leases per user (each user's
/// pool is the supervisor's own business), statistics, endpoints, eviction, drains, stop.
using supervisor_actor = caf::typed_actor<
    caf::replies_to<acquire_atom, std::string>::with<lease>,
    // Ends a lease: `not_leased` for a double release, `wrong_user` for another user's lease.
    caf::replies_to<release_atom, std::string, lease>::with<void>,
    // Closes every connection of the user (requests in flight fail with connection_lost);
    // replies how many.
    caf::replies_to<close_atom, std::string>::with<std::uint64_t>,
    caf::replies_to<stats_atom>::with<pool_stats>,
    caf::replies_to<endpoint_atom, std::string, endpoint>::with<void>,
    // Forgets the user's endpoint: its calls get unknown_user from now on, while its pool
    // drains (in flight finishes, cut at the shutdown grace period) and then stops; replies
    // the drain's report once done (unknown_user if the user had no endpoint).
    caf::replies_to<remove_atom, std::string>::with<shutdown_report>,
    // Stops admitting, closes every connection and replies once all are gone.
    caf::replies_to<stop_atom>::with<void>,
    // Closes idle connections (no lease, nothing in flight) older than the given idle time.
    caf::replies_to<evict_atom, caf::timespan>::with<std::uint64_t>,
    // Drains the whole engine (force_atom cuts what remains), or one user.
    caf::replies_to<drain_atom>::with<shutdown_report>, caf::reacts_to<force_atom>,
    caf::replies_to<drain_atom, std::string>::with<shutdown_report>>;

namespace detail {
/// Registers the type-ID block below and the errc error category. Services call
/// `sshpool::add_message_types` (sshpool/engine.hpp), which adds the engine's internal
/// messages.
void add_public_message_types(caf::actor_system_config& cfg);
} // namespace detail

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
  return f(caf::meta::type_name("sshpool.endpoint"), x.mode, x.host, x.port, x.username,
           x.identity_file, x.known_hosts_file, x.host_keys, x.authorized_keys_file, x.target_host,
           x.target_port, x.server_nodelay, x.ciphers, x.max_response_bytes);
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
           x.leases, x.waiters, x.handshakes, x.handshake_failures, x.acquire_timeouts, x.agents,
           x.agents_refused);
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

/// An `error` crosses the wire as its code and message. (A reply's error travels as a
/// `caf::error` of the "sshpool" category: `make_caf_error`, `from_caf_error`.)
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, error& x) {
  auto code = x.code();
  auto message = x.message();
  auto load = caf::meta::load_callback([&]() -> caf::error {
    x = error{code, std::move(message)};
    return caf::none;
  });
  return f(caf::meta::type_name("sshpool.error"), code, message, load);
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
CAF_ADD_TYPE_ID(sshpool, (sshpool::supervisor_actor))
CAF_ADD_TYPE_ID(sshpool, (sshpool::error))
CAF_END_TYPE_ID_BLOCK(sshpool)
