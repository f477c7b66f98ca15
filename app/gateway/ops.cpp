// The gateway's operational endpoints, answered by the gateway itself and not counted as
// requests: /healthz (alive), /readyz (503 while draining), /metrics (Prometheus text) and
// /stats (JSON). The last two need the pool and cleanup figures, which only the engine's
// blocking facade gives, and the agent listener's: the stats thread reads them (never the loop,
// where it would stall every client, nor a CAF thread) and posts the answers back; scrapes that
// arrive meanwhile share one reading.
//
// Thread-safety: `stats_loop` runs on the stats thread and touches only the waiters (under
// `stats_mutex_`) and the engine; everything else runs on the loop thread.
#include "gateway/gateway_impl.hpp"
#include "gateway/headers.hpp"

namespace sshpool::gateway {

bool gateway::impl::serve_operational(std::uint64_t id, const http_request& req, exchange& ex) {
  auto path = path_only(req.target);
  if (path != "/healthz" && path != "/readyz" && path != "/metrics" && path != "/stats")
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
  if (path == "/metrics" || path == "/stats") {
    // Answered once the stats thread has read the pool figures (see stats_loop).
    exchanges_.insert_or_assign(id, std::move(ex));
    {
      std::lock_guard<std::mutex> guard{stats_mutex_};
      stats_waiters_.push_back({id, path == "/stats"});
    }
    stats_cv_.notify_one();
    return true;
  }
  response_head head = ops_head(ex, "application/json");
  ex.status = 200;
  exchanges_.insert_or_assign(id, std::move(ex));
  server_->respond(id, std::move(head),
                   path == "/healthz" ? "{\"status\":\"alive\"}\n" : "{\"status\":\"ready\"}\n");
  return true;
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
      metrics_, engine_->metrics(), snap, front_figures(), engine_->is_shutting_down(),
      {},       agent_users_,       fair};
  {
    std::lock_guard<std::mutex> guard{report_mutex_};
    view.last_shutdown = last_report_;
  }
  for (auto& w : waiters) {
    auto it = exchanges_.find(w.exchange);
    if (it == exchanges_.end())
      continue; // the client left
    it->second.status = 200;
    if (w.json)
      server_->respond(w.exchange, ops_head(it->second, "application/json"), render_json(view));
    else
      server_->respond(w.exchange, ops_head(it->second, "text/plain; version=0.0.4; charset=utf-8"),
                       render_prometheus(view));
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
