// The gateway's implementation (private to gateway/): the state of every exchange and the
// handler of the front end's events. Its parts:
//   gateway.cpp   construction and shutdown, routing (user, path, errors), the exchanges'
//                 state machine between the front end and the bridge actor;
//   headers.cpp   header hygiene (hop-by-hop fields, request ids);
//   auth_gate.cpp client authentication (the credential decides the user);
//   ops.cpp       /healthz, /readyz, /metrics, /stats and the stats thread, and the admin
//                 listener that serves them alone when `admin_listen` is set;
//   reload.cpp    SIGHUP's reload thread and what a new configuration changes.
//
// Thread-safety: the loop thread runs the handler and upstream events and owns the
// exchanges; the stats thread reads the engine and posts back; `wait` runs on the owner's
// thread (the drain's report is guarded by `report_mutex_`); the reload thread applies a
// new configuration to the engine and posts the new user sets to the loop.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "gateway/auth.hpp"
#include "gateway/gateway.hpp"
#include "gateway/gateway_metrics.hpp"
#include "gateway/http_server.hpp"
#include "gateway/upstream.hpp"
#include "sshpool/engine.hpp"

namespace sshpool::gateway {

using steady = std::chrono::steady_clock;

class gateway::impl final : public http_handler {
public:
  /// See gateway::gateway.
  explicit impl(gateway_config cfg);
  ~impl() override;

  std::uint16_t port() const { return server_->port(); }
  std::optional<std::uint16_t> admin_port() const {
    return admin_server_ ? std::optional<std::uint16_t>{admin_server_->port()} : std::nullopt;
  }
  std::optional<agent_listener_status> agent_listener() const { return engine_->agent_listener(); }
  void handle_signals() { engine_->handle_signals(); }
  shutdown_report wait();

  // -- reload (reload.cpp; the reload thread, or the owner's) ---------------------------------
  void handle_reload(config_source load);
  void reload(const gateway_config& next);

  // -- http_handler (loop thread) -------------------------------------------------------------
  bool admit_head(const net::request& head, const std::string& peer,
                  std::string& principal) override;
  void on_request(http_request req) override;
  void on_bad_request(http_request req, int status, std::string why) override;
  void on_body_sent(std::uint64_t id, std::size_t bytes) override;
  void on_done(std::uint64_t id, bool complete, std::uint64_t bytes_sent) override;

  // -- upstream events (loop thread, posted by the bridge) ------------------------------------
  void upstream_head(std::uint64_t id, response res);
  void upstream_chunk(std::uint64_t id, std::string data);
  void upstream_end(std::uint64_t id, error result);
  /// The whole response at once (it was complete before its head came).
  void upstream_response(std::uint64_t id, response whole);

private:
  /// A /metrics (json = false) or /stats request waiting for the pool figures.
  struct stats_waiter {
    std::uint64_t exchange;
    bool json;
    /// From the admin listener (answered there; not in `exchanges_`), with its request id.
    bool admin = false;
    std::string request_id;
  };

  /// One exchange as the gateway tracks it.
  struct exchange {
    std::string request_id;
    std::string user;
    std::string method;
    std::string path;
    steady::time_point started;
    int status = 0;
    std::string code = "ok";
    bool head_request = false;
    /// Counted in sshpool_gateway_requests_total (operational endpoints are not).
    bool counted = true;
    std::unique_ptr<upstream_call> call;
    /// The request is with the bridge (acks and cancellation go to it).
    bool forwarding = false;
    bool head_sent = false;
    /// An exchange of the admin listener: answered there, not tracked in `exchanges_`.
    bool admin = false;
  };

  /// The admin listener's handler, on its loop thread: requests go to the front end's loop
  /// (which owns the figures and the exchanges' state) and the answers come back posted.
  class admin_handler final : public http_handler {
  public:
    explicit admin_handler(impl* gw) : gw_(gw) {}
    void on_request(http_request req) override;
    void on_bad_request(http_request req, int status, std::string why) override;
    void on_body_sent(std::uint64_t, std::size_t) override {}
    void on_done(std::uint64_t, bool, std::uint64_t) override {}

  private:
    impl* gw_;
  };

  /// Posts the bridge's events of one exchange to the loop thread.
  class exchange_listener final : public upstream_listener {
  public:
    exchange_listener(std::shared_ptr<loop_queue> queue, impl* gw, std::uint64_t id)
        : queue_(std::move(queue)), gw_(gw), id_(id) {}

    void on_head(response head) override {
      queue_->post([gw = gw_, id = id_, head = std::move(head)]() mutable {
        gw->upstream_head(id, std::move(head));
      });
    }

    void on_chunk(std::string data) override {
      queue_->post([gw = gw_, id = id_, data = std::move(data)]() mutable {
        gw->upstream_chunk(id, std::move(data));
      });
    }

    void on_end(error result) override {
      queue_->post([gw = gw_, id = id_, result = std::move(result)]() mutable {
        gw->upstream_end(id, std::move(result));
      });
    }

    void on_response(response whole) override {
      queue_->post([gw = gw_, id = id_, whole = std::move(whole)]() mutable {
        gw->upstream_response(id, std::move(whole));
      });
    }

  private:
    std::shared_ptr<loop_queue> queue_;
    impl* gw_;
    std::uint64_t id_;
  };

  // -- routing (gateway.cpp) ------------------------------------------------------------------
  void end_forwarding(exchange& ex);
  /// The exchange `id` has its upstream's last word: forwarding ended; nullptr if it is gone.
  exchange* upstream_done(std::uint64_t id);
  /// The client's head for upstream response `res` (its headers taken), marked sent.
  response_head forwarded_head(exchange& ex, response& res);
  std::string new_request_id();
  response_head error_head(const exchange& ex, int status);
  /// Answers with an error body (and `extra` headers); the exchange is kept until on_done.
  void fail(std::uint64_t id, exchange ex, int status, const std::string& code,
            const std::string& message, header_list extra = {});
  /// Answers a request the front end (or the admin listener) refused (400, 408, 413, 431,
  /// 503 no slot).
  void refuse(http_request req, int status, std::string why, bool admin);
  /// Sends a complete answer: on the front end (the exchange kept until on_done) or, for an
  /// admin exchange, posted to the admin listener.
  void send_answer(std::uint64_t id, exchange ex, response_head head, std::string body);

  // -- client authentication (auth_gate.cpp) --------------------------------------------------
  /// With authentication configured: the credential's user becomes `user` (which holds the
  /// user the request names, or is empty); false if the request was answered (429, 401, 403).
  bool authenticate(std::uint64_t id, exchange& ex, const http_request& req, std::string& user);
  /// Drops the client's Authorization header unless `user`'s entry forwards it (with
  /// authentication configured; without, it is the upstream's business and travels).
  void strip_credentials(const std::string& user, header_list& headers) const;

  /// Fair share under max_in_flight_total: whether `user` may start one more forward.
  bool within_fair_share(const std::string& user) const;

  // -- operational endpoints and the stats thread (ops.cpp) ----------------------------------
  /// /healthz, /readyz, /metrics, /stats; false if the path is none of them.
  bool serve_operational(std::uint64_t id, const http_request& req, exchange& ex);
  /// A new exchange for `req`, started now.
  static exchange exchange_for(const http_request& req);
  /// A request of the admin listener (posted to the loop thread): an operational endpoint,
  /// or 404; never forwarded to a user.
  void serve_admin(http_request req);
  response_head ops_head(const exchange& ex, const char* type);
  /// Answers the /metrics and /stats requests that waited for `snap`.
  void answer_stats(const pool_snapshot& snap, const std::vector<stats_waiter>& waiters);
  front_end_figures front_figures() const;
  /// Reads the pool and cleanup figures (blocking engine calls, each with a deadline) when
  /// /metrics or /stats asks, and posts the answers to the loop. Requests that arrive
  /// meanwhile share the next reading, so scrapes never queue up behind each other.
  void stats_loop();
  void stop_stats();

  /// Ends the reload thread (after the reload it may be running).
  void stop_reload();

  gateway_config cfg_;
  std::unique_ptr<engine> engine_;
  std::unique_ptr<upstream_bridge> bridge_;
  std::unordered_set<std::string> known_users_;
  /// The users in agent mode, in the config's order.
  std::vector<std::string> agent_users_;
  /// Client authentication; the limiter is the loop thread's.
  authenticator auth_;
  auth_rate_limiter auth_limiter_;

  // Loop thread only.
  std::unordered_map<std::uint64_t, exchange> exchanges_;
  gateway_metrics metrics_;
  std::uint64_t forwards_in_flight_ = 0;
  /// Forwards in flight per user, for the users with any (fair share).
  std::unordered_map<std::string, std::size_t> user_in_flight_;
  std::uint64_t fair_share_refusals_ = 0;
  /// Generated request ids: 16 random hex digits and '-', then the counter.
  std::string id_prefix_;
  std::uint64_t id_counter_ = 0;

  /// The drain's report (set by `wait`, read by the loop thread).
  std::mutex report_mutex_;
  std::optional<shutdown_report> last_report_;

  /// /metrics and /stats requests waiting for the stats thread.
  std::mutex stats_mutex_;
  std::condition_variable stats_cv_;
  std::vector<stats_waiter> stats_waiters_;
  bool stats_stop_ = false;
  std::thread stats_thread_;

  /// One reload at a time; guards cfg_.users (the users applied last).
  std::mutex reload_mutex_;
  /// Client authentication was configured at start, or by a reload: from then on it stays
  /// on until a restart (guarded by reload_mutex_).
  bool auth_required_ = false;
  std::atomic<bool> reload_stop_{false};
  std::thread reload_thread_;

  std::unique_ptr<http_server> server_; // its thread calls into everything above
  admin_handler admin_handler_{this};
  /// The admin listener (nullptr: none); last, its thread posts to `server_`'s loop.
  std::unique_ptr<http_server> admin_server_;
};

} // namespace sshpool::gateway
