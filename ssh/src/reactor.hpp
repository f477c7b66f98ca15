// A reactor: one thread driving many non-blocking SSH sessions: an epoll set over their
// sockets and an eventfd for its command queue, and for each ready session
// ssh_event_dopoll on that session's own ssh_event. It opens channels (direct-tcpip for
// dialed sessions, forwarded-tcpip for agents that dialed in: reactor_open.cpp), writes
// requests as the remote window allows, feeds channel data into HTTP response parsers, keeps
// finished channels for reuse (HTTP keep-alive), and reports results to each session's sink.
// An agent session's own requests are answered by its policy (agent_session.hpp) from
// within the reactor's libssh calls, for as long as the session lives.
//
// Every libssh object of a session belongs to this thread. libssh runs callbacks inside
// ordinary calls (a write can deliver another channel's data), so callbacks only record
// state and mark channels dirty; the loop acts on dirty channels and polls again at once.
//
// A channel's phases (channel_state::phase):
//
//   opening ──confirmed──► busy ──response complete, reusable──► idle ──next request──► busy
//      │                    │                                     │
//      │ refused            │ failed, cancelled, not reusable     │ idle timeout, closed by
//      ▼                    ▼                                     ▼ the peer, room needed
//    dead ◄─────────────────┴─────────────────────────────────── dead
//      (given up while opening: parked as an orphan until the server answers, then freed)
//
// A session lives from `adopt` until it is closed (command), lost (trap 8), or the reactor
// stops; then its channels are dead and it is swept at the end of the pass.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include <sys/epoll.h>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>

#include "session_control.hpp"
#include "sshpool/ssh/http.hpp"

namespace sshpool::ssh {

/// One thread, many sessions. Public member functions are thread-safe and non-blocking.
class reactor {
public:
  reactor();
  /// Stops (see `stop`) and frees what is left.
  ~reactor();

  /// Stops the thread and disconnects every session without events. Idempotent. Commands
  /// posted afterwards are kept unprocessed until destruction.
  void stop();

  reactor(const reactor&) = delete;
  reactor& operator=(const reactor&) = delete;

  /// Takes over a connected, authenticated session (from a connector thread).
  void adopt(std::shared_ptr<session_control> ctl, connected_session cs);
  void forward(std::uint64_t session_id, std::uint64_t tag, outbound_request req);
  void cancel(std::uint64_t session_id, std::uint64_t tag);
  void probe(std::uint64_t session_id);
  void ack(std::uint64_t session_id, std::uint64_t tag, std::uint64_t bytes);
  /// Disconnects with `reason` as the SSH disconnect message (empty: libssh's default).
  void close(std::uint64_t session_id, std::string reason);

  std::size_t session_count() const noexcept { return session_count_.load(); }
  std::size_t channel_count() const noexcept { return channel_count_.load(); }

private:
  struct session_state;

  struct channel_state {
    enum class phase { opening, busy, idle, dead };
    reactor* owner = nullptr;
    session_state* session = nullptr;
    ssh_channel ch = nullptr;
    ssh_channel_callbacks_struct callbacks;
    phase state = phase::opening;
    /// Carried a request before (a failure before any response byte may be the backend's
    /// idle close racing with our request: idempotent requests are retried once).
    bool reused = false;
    bool retried = false;
    bool in_dirty = false;
    bool in_writing = false;
    bool eof = false;
    bool remote_closed = false;
    /// Bytes arrived that no request asked for: the channel cannot be reused.
    bool stray_data = false;
    /// Streaming: head delivered; body bytes decoded and not yet delivered; delivered and
    /// not yet acknowledged; paused (data left in libssh, whose window then fills).
    bool stream = false;
    bool head_sent = false;
    bool paused = false;
    std::string pending;
    std::uint64_t unacked = 0;
    std::uint64_t tag = 0;
    std::string out;
    std::size_t out_off = 0;
    request_info info;
    response_parser parser;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::uint64_t open_seen_packets = 0;
    std::chrono::steady_clock::time_point open_started;
    std::chrono::steady_clock::time_point idle_since;

    explicit channel_state(const response_limits& limits) : parser(limits) {}
  };

  /// A request waiting for a channel: the session has `max_channels` of them.
  struct waiting_request {
    std::uint64_t tag;
    outbound_request req;
    bool fresh;
  };

  struct session_state {
    std::shared_ptr<session_control> ctl;
    ssh_session s = nullptr;
    /// The nudge's session channel until its command ended.
    ssh_channel nudge = nullptr;
    /// The session's own event: polls nested in libssh calls stay within this session.
    ssh_event event = nullptr;
    int fd = -1;
    std::uint32_t interest = EPOLLIN;
    bool touched = false;
    /// TCP_CORK is set for this pass (trap 19): `update_interest` clears it.
    bool corked = false;
    /// The last command batch (`pass_`) that named this session.
    std::uint64_t named_in_pass = 0;
    /// A probe is out: the inbound packet count when it was sent.
    bool probing = false;
    std::uint64_t probe_packets = 0;
    ssh_counter_struct bytes{};
    ssh_counter_struct packets{};
    std::vector<std::unique_ptr<channel_state>> channels;
    std::uint32_t live_channels = 0;
    /// Channels abandoned while opening (in `orphans_`): they exist on the wire until the
    /// server answers and we close them, so they count against `max_channels`.
    std::uint32_t orphan_channels = 0;
    /// Requests waiting for a channel, in arrival order.
    std::deque<waiting_request> waiting;
    bool dead = false;
  };

  struct command {
    enum class kind { adopt, forward, cancel, close, probe, ack };
    explicit command(kind k) : what(k) {}
    kind what;
    std::uint64_t session_id = 0;
    std::uint64_t tag = 0;
    std::uint64_t bytes = 0;
    /// close: the disconnect message.
    std::string reason;
    outbound_request req;
    std::shared_ptr<session_control> ctl;
    connected_session cs;
  };

  /// A channel abandoned while its open was pending: closed once the server answers.
  struct orphan_open {
    session_state* session;
    ssh_channel ch;
    std::uint64_t seen_packets;
  };

  void post(command cmd);
  void run();
  void drain_commands();
  void do_adopt(std::shared_ptr<session_control> ctl, connected_session cs);
  void reap_nudges();
  /// Starts a request, or queues it behind the session's waiting ones while the session
  /// has `max_channels` channels (`fresh`: on a new channel, not an idle one).
  void do_forward(session_state& ss, std::uint64_t tag, outbound_request req, bool fresh);
  void start_request(session_state& ss, std::uint64_t tag, outbound_request req, bool fresh);
  /// Whether a request can start now: on an idle channel (reused, or closed to make room)
  /// or a new one below `max_channels`.
  static bool has_room(const session_state& ss);
  /// Starts waiting requests that have room now; true if any started.
  bool start_waiting();
  void do_cancel(session_state& ss, std::uint64_t tag);
  void do_probe(session_state& ss);
  void do_ack(session_state& ss, std::uint64_t tag, std::uint64_t bytes);
  /// Feeds received bytes to the parser (streams: may pause); marks the channel dirty.
  void take(channel_state& c, const char* data, std::size_t len);
  void emit_stream(channel_state& c);
  void check_probes();
  session_state* find(std::uint64_t session_id);

  /// Acts on dirty, opening and writing channels; true if anything changed.
  bool service();
  /// Opens `ch` (again, while pending): direct-tcpip to the endpoint's target, or for an
  /// agent forwarded-tcpip to its bound forward.
  static int open_channel(ssh_channel ch, const session_control& ctl);
  void advance_open(channel_state& c, int rc);
  void service_opening(channel_state& c);
  void service_dirty(channel_state& c);
  void service_orphans();
  void write_some(channel_state& c);
  void complete(channel_state& c);
  void fail(channel_state& c, error err);
  /// Fails a channel whose open the server refused: `forwarding_prohibited` for its policy
  /// (SSH reason 1), else `channel_open_failed`; the message holds the SSH reason.
  void open_refused(channel_state& c);
  void kill_channel(channel_state& c);
  void check_sessions();
  void poll_sessions(int timeout);
  /// Lets libssh read a ready session's socket, for as long as it finds more (trap 19).
  void read_session(session_state& ss);
  /// One poll of `ss` by libssh (it reads, sends and runs callbacks); loses the session if
  /// it failed. Whether the session is still alive.
  bool poll_session(session_state& ss);
  /// Records that libssh was called on `ss` (it may have queued output to flush).
  void touch(session_state& ss);
  /// Holds the session's output in the kernel until the end of this pass, so that a batch
  /// of requests leaves together (trap 19); touches the session, whose flush uncorks it.
  void cork(session_state& ss);
  /// Flushes what libssh queued for the sessions touched in this pass (trap 19), and
  /// watches for EPOLLOUT those whose output is still pending.
  void update_interest();
  static bool alive(const session_state& ss);
  /// "SSH session to HOST:PORT" or "agent session of USER from HOST:PORT".
  static std::string peer(const session_state& ss);
  static error session_error(const session_state& ss);
  void expire_idle_channels();
  void lose_session(session_state& ss, error reason);
  void close_session(session_state& ss, const std::string& reason = {});
  void sweep();
  transfer_info info_of(const channel_state& c) const;

  static int on_data(ssh_session, ssh_channel, void* data, std::uint32_t len, int is_stderr,
                     void* userdata);
  static void on_eof(ssh_session, ssh_channel, void* userdata);
  static void on_close(ssh_session, ssh_channel, void* userdata);
  void mark_dirty(channel_state& c);

  // -- shared with other threads ----------------------------------------------------------
  std::mutex mx_;
  std::vector<command> inbox_;
  bool wake_pending_ = false;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> session_count_{0};
  std::atomic<std::size_t> channel_count_{0};
  int wake_fd_ = -1;

  // -- reactor thread only ----------------------------------------------------------------
  int epoll_fd_ = -1;
  std::vector<session_state*> touched_;
  std::vector<session_state*> probing_;
  std::unordered_map<std::uint64_t, std::unique_ptr<session_state>> sessions_;
  std::vector<channel_state*> dirty_;
  std::vector<channel_state*> opening_;
  std::vector<channel_state*> writing_;
  std::vector<orphan_open> orphans_;
  /// Sessions with waiting requests (dead ones are dropped by `start_waiting` and `sweep`).
  std::vector<session_state*> waiting_;
  std::vector<channel_state*> dead_channels_;
  std::vector<std::uint64_t> dead_sessions_;
  std::vector<command> batch_;
  /// Command batches taken so far (`session_state::named_in_pass`).
  std::uint64_t pass_ = 0;
  std::vector<channel_state*> scratch_;
  std::vector<session_state*> scratch_sessions_;
  std::chrono::steady_clock::time_point next_idle_check_;
  std::thread thread_;
};

} // namespace sshpool::ssh
