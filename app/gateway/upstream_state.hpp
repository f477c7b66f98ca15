// The state of the gateway's bridge actor, shared by the two files that make it and
// included by them only: upstream.cpp (the calls and the actor's behaviour) and
// upstream_leases.cpp (the leases: kept, freed, acquired, returned). A call's states are
// drawn atop upstream.cpp, a lease's atop upstream_leases.cpp.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <caf/all.hpp>

#include "gateway/upstream_intake.hpp"
#include "sshpool/actors.hpp"

namespace sshpool::gateway::upstream_detail {

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

// -- upstream_leases.cpp ---------------------------------------------------------------------

/// Gives lease `l` back to the pool.
void release(self_ptr self, const lease& l);

/// A lease no call uses any more: back to the pool once held for max_hold (an acquire then
/// covers each queued call), else to the user's first queued call, else kept.
void free_lease(self_ptr self, held_lease held);

/// Returns the kept leases of connection `cid` to the pool (it refused a stream or is gone).
void drop_kept(self_ptr self, caf::actor_id cid);

/// Asks the pool for one more lease of `user`; it goes to the first queued call then.
void acquire(self_ptr self, const std::string& user);

/// Returns every kept lease unused for keep_idle or held for max_hold; ticks on while some
/// are kept.
void look_at_kept(self_ptr self);

/// Returns every lease, held by a call or kept, to the pool and forgets the calls (the
/// bridge ends; the connections cancel its streams as their sink goes down).
void release_all(self_ptr self);

// -- upstream.cpp ----------------------------------------------------------------------------

/// Sends call `id`'s request on the leased connection.
void open_stream(self_ptr self, std::uint64_t id, held_lease held);

/// Ends call `id`: its lease is freed first, then its listener hears the end (unless the
/// client left).
void end_call(self_ptr self, std::uint64_t id, error result);

} // namespace sshpool::gateway::upstream_detail
