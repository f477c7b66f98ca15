// The gateway's operational endpoints, answered by the gateway itself and not counted as
// requests: /healthz (alive), /readyz (503 while draining), /metrics (Prometheus text) and
// /stats (JSON). The last two need the pool and cleanup figures, which only the engine's
// blocking facade gives, and the agent listener's: the stats thread reads them (never the loop,
// where it would stall every client, nor a CAF thread) and posts the answers back; scrapes that
// arrive meanwhile share one reading.
//
// With `admin_listen` set, a second http_server (plain HTTP, its own loop thread) serves these
// endpoints alone: its handler posts each request to the front end's loop, which answers it
// as above and posts the answer back; any other path there is 404, nothing is forwarded to a
// user. The front end then treats these paths like any other (see gateway.cpp). Without it,
// a `listen` address that is not loopback shows /metrics and /stats (which name every user)
// to loopback clients only (403 forbidden for others); /healthz and /readyz stay open.
//
// Thread-safety: `stats_loop` runs on the stats thread and touches only the waiters (under
// `stats_mutex_`) and the engine; `admin_handler` runs on the admin listener's loop thread
// and only posts; everything else runs on the front end's loop thread.
#include "gateway/auth_settings.hpp"
#include "gateway/gateway_impl.hpp"
#include "gateway/headers.hpp"
#include "gateway/logging.hpp"

namespace sshpool::gateway {

bool gateway::impl::serve_operational(std::uint64_t id, const http_request& req, exchange& ex) {
  auto path = path_only(req.target);
  if (!is_operational_path(path))
    return false;
  ex.counted = false;
  if (req.method != "GET" && req.method != "HEAD") {
    fail(id, std::move(ex), 405, "invalid_request", path + " answers GET and HEAD only");
    return true;
  }
  bool draining = engine_->is_shutting_down();
  if (path == "/readyz" && draining) {
    fail(id, std::move(ex), 503, "shutting_down", "the gateway is draining");
    return true;
  }
  if ((path == "/metrics" || path == "/stats") && !ex.admin && !is_loopback(cfg_.listen_host) &&
      !is_loopback(req.peer.substr(0, req.peer.rfind(':')))) {
    // The figures name every user: on a listener that faces the network (and no admin
    // listener) they are for local clients only. /healthz and /readyz stay open.
    fail(id, std::move(ex), 403, "forbidden",
         path + " is served to loopback clients only on this listener (see admin_listen)");
    return true;
  }
  if (path == "/metrics" || path == "/stats") {
    // Answered once the stats thread has read the pool figures (see stats_loop).
    stats_waiter waiter{id, path == "/stats", ex.admin, ex.request_id};
    if (!ex.admin)
      exchanges_.insert_or_assign(id, std::move(ex));
    {
      std::lock_guard<std::mutex> guard{stats_mutex_};
      stats_waiters_.push_back(std::move(waiter));
    }
    stats_cv_.notify_one();
    return true;
  }
  response_head head = ops_head(ex, "application/json");
  ex.status = 200;
  send_answer(id, std::move(ex), std::move(head),
              path == "/healthz" ? "{\"status\":\"alive\"}\n" : "{\"status\":\"ready\"}\n");
  return true;
}

void gateway::impl::serve_admin(http_request req) {
  auto ex = exchange_for(req);
  ex.request_id = new_request_id();
  ex.admin = true;
  if (!serve_operational(req.exchange, req, ex))
    fail(req.exchange, std::move(ex), 404, "not_found",
         "the admin listener serves /metrics, /stats, /healthz and /readyz only");
}

void gateway::impl::send_answer(std::uint64_t id, exchange ex, response_head head,
                                std::string body) {
  if (!ex.admin) {
    exchanges_.insert_or_assign(id, std::move(ex));
    server_->respond(id, std::move(head), std::move(body));
    return;
  }
  admin_server_->queue()->post(
      [admin = admin_server_.get(), id, head = std::move(head), body = std::move(body)]() mutable {
        admin->respond(id, std::move(head), std::move(body));
      });
}

void gateway::impl::admin_handler::on_request(http_request req) {
  gw_->server_->queue()->post(
      [gw = gw_, req = std::move(req)]() mutable { gw->serve_admin(std::move(req)); });
}

void gateway::impl::admin_handler::on_bad_request(http_request req, int status, std::string why) {
  gw_->server_->queue()->post(
      [gw = gw_, req = std::move(req), status, why = std::move(why)]() mutable {
        gw->refuse(std::move(req), status, std::move(why), true);
      });
}

response_head gateway::impl::ops_head(const exchange& ex, const char* type) {
  response_head head;
  head.headers = {
      {"Content-Type", type}, {"X-Request-Id", ex.request_id}, {"Cache-Control", "no-store"}};
  head.close = engine_->is_shutting_down();
  return head;
}

void gateway::impl::answer_stats(const pool_snapshot& snap,
                                 const std::vector<stats_waiter>& waiters) {
  fair_share_figures fair{cfg_.max_in_flight_total, user_in_flight_.size(), fair_share_refusals_};
  metrics_view view{
      metrics_, engine_->metrics(), snap, front_figures(),     engine_->is_shutting_down(),
      {},       agent_users_,       fair, log_lines_dropped(), bridge_ ? bridge_->retries() : 0};
  {
    std::lock_guard<std::mutex> guard{report_mutex_};
    view.last_shutdown = last_report_;
  }
  for (auto& w : waiters) {
    exchange admin_ex;
    exchange* ex = &admin_ex;
    if (w.admin) {
      admin_ex.admin = true;
      admin_ex.request_id = w.request_id;
    } else {
      auto it = exchanges_.find(w.exchange);
      if (it == exchanges_.end())
        continue; // the client left
      ex = &it->second;
    }
    ex->status = 200;
    auto head =
        ops_head(*ex, w.json ? "application/json" : "text/plain; version=0.0.4; charset=utf-8");
    send_answer(w.exchange, std::move(*ex), std::move(head),
                w.json ? render_json(view) : render_prometheus(view));
  }
}

front_end_figures gateway::impl::front_figures() const {
  return {server_->counters(), forwards_in_flight_};
}

void gateway::impl::stats_loop() {
  std::unique_lock<std::mutex> guard{stats_mutex_};
  for (;;) {
    stats_cv_.wait(guard, [this] { return stats_stop_ || !stats_waiters_.empty(); });
    if (stats_stop_)
      return;
    std::vector<stats_waiter> waiters;
    waiters.swap(stats_waiters_);
    guard.unlock();
    pool_snapshot snap;
    snap.pool = engine_->pool().get_pool_stats();
    snap.cleanup = engine_->cleanup().get_stats();
    snap.agents = engine_->agent_listener();
    snap.cluster = engine_->cluster_status();
    server_->queue()->post([this, snap = std::move(snap), waiters = std::move(waiters)] {
      answer_stats(snap, waiters);
    });
    guard.lock();
  }
}

void gateway::impl::stop_stats() {
  {
    std::lock_guard<std::mutex> guard{stats_mutex_};
    stats_stop_ = true;
  }
  stats_cv_.notify_all();
  if (stats_thread_.joinable())
    stats_thread_.join();
}

} // namespace sshpool::gateway
