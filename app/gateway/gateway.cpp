// The gateway: routing, error mapping, header hygiene and the per-exchange state machine
// between the front end and the forwarder actors (see gateway.hpp).
//
// An exchange, on the loop thread:
//
//   on_request ── ops path ──────────────────────────► respond ─┐
//       │ ── bad / unknown user / draining ───────────► respond ─┤
//       ▼ bridge.start                                           │
//   forwarding ── upstream_head ──► streaming ── upstream_end ──►│ finish
//       │ upstream_end(error) before the head: error response ──┤
//       │                          on_body_sent ──► call->ack    ▼
//       └── on_done(incomplete) : call->cancel ─────────────► on_done: count, log, forget
#include "gateway/gateway.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "gateway/gateway_metrics.hpp"
#include "gateway/http_server.hpp"
#include "gateway/logging.hpp"
#include "gateway/upstream.hpp"
#include "sshpool/engine.hpp"

namespace sshpool::gateway {

namespace {

using steady = std::chrono::steady_clock;
using spdlog::level::level_enum;

/// Seconds a client is asked to wait after pool_exhausted.
constexpr const char* retry_after_seconds = "1";
/// Longest accepted X-Request-Id.
constexpr std::size_t max_request_id = 128;
/// Upper bound of the front end's final flush after the drain.
constexpr std::chrono::milliseconds max_final_flush{5000};

std::string lower(std::string_view s) {
  std::string out{s};
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

/// Hop-by-hop headers (RFC 9110 7.6.1) plus those named in `Connection`, lower-case.
std::unordered_set<std::string> hop_by_hop(const header_list& headers) {
  std::unordered_set<std::string> names = {"connection", "keep-alive", "transfer-encoding",
                                           "te",         "trailer",    "upgrade"};
  for (auto& [name, value] : headers) {
    if (lower(name) != "connection")
      continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      auto token = trim(rest.substr(0, comma));
      if (!token.empty())
        names.insert(lower(token));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
  }
  return names;
}

bool is_hop_by_hop(const std::unordered_set<std::string>& set, const std::string& lower_name) {
  return set.count(lower_name) != 0 || lower_name.rfind("proxy-", 0) == 0;
}

/// The path of a target without its query string (what the logs show).
std::string path_only(const std::string& target) {
  return target.substr(0, target.find_first_of("?#"));
}

bool valid_request_id(const std::string& id) {
  if (id.empty() || id.size() > max_request_id)
    return false;
  return std::all_of(id.begin(), id.end(),
                     [](unsigned char c) { return c > 0x20 && c < 0x7f && c != '"' && c != '\\'; });
}

std::string error_body(const std::string& code, const std::string& message,
                       const std::string& request_id) {
  // "error" repeats the message for Ollama's clients, which show that field.
  nlohmann::json body = {
      {"code", code}, {"message", message}, {"error", message}, {"request_id", request_id}};
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

/// What a client is told about an upstream failure: the engine's own message names the
/// SSH host, user and key file paths, which are the operator's business (they go to the
/// log), not the client's. Messages about the client's own request are kept.
std::string client_message(const error& e) {
  switch (e.code()) {
  case errc::invalid_request:
    return e.message();
  case errc::pool_exhausted:
    return "no connection to this user's machine became free in time";
  case errc::shutting_down:
    return "the gateway is draining";
  case errc::timeout:
  case errc::request_timeout:
    return "the user's service did not answer in time";
  case errc::connect_failed:
    return "the user's machine cannot be reached over SSH";
  case errc::auth_failed:
    return "the user's machine refused the gateway's SSH key";
  case errc::host_key_unknown:
  case errc::host_key_mismatch:
    return "the user's machine presented a host key that is not the known one";
  case errc::host_key_revoked:
    return "the user's machine presented a revoked host key";
  case errc::channel_open_failed:
    return "the user's machine could not connect to its service";
  case errc::forwarding_prohibited:
    return "the SSH server of the user's machine does not allow forwarding to its service";
  case errc::connection_lost:
    return "the SSH connection to the user's machine was lost";
  case errc::upstream_closed:
  case errc::bad_response:
    return "the user's service sent an incomplete or invalid response";
  case errc::response_too_large:
    return "the user's service sent a response over the size limit";
  default:
    return "the request could not be forwarded";
  }
}

double millis(steady::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

} // namespace

int status_of(errc code) noexcept {
  switch (code) {
  case errc::unknown_user:
    return 404;
  case errc::invalid_request:
    return 400;
  case errc::pool_exhausted:
  case errc::shutting_down:
    return 503;
  case errc::request_timeout:
  case errc::timeout:
    return 504;
  default:
    return 502;
  }
}

class gateway::impl final : public http_handler {
public:
  explicit impl(gateway_config cfg) : cfg_(std::move(cfg)) {
    engine_ = std::make_unique<engine>(cfg_.engine);
    for (auto& u : cfg_.users) {
      known_users_.insert(u.name);
      if (auto ok = engine_->set_endpoint(u.name, u.ep); !ok)
        throw std::invalid_argument{"user " + u.name + ": " + ok.error().message()};
    }
    bridge_ = std::make_unique<upstream_bridge>(*engine_);
    std::random_device rd;
    id_prefix_ = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    http_server::options opts;
    opts.bind = cfg_.listen_host;
    opts.port = cfg_.listen_port;
    opts.max_header_bytes = cfg_.max_request_header_bytes;
    opts.max_body_bytes = cfg_.max_request_body_bytes;
    opts.max_clients = cfg_.max_clients;
    opts.max_clients_per_source = cfg_.max_clients_per_source;
    opts.client_timeout = cfg_.client_timeout;
    opts.header_timeout = cfg_.header_timeout;
    try {
      server_ = std::make_unique<http_server>(opts, *this);
    } catch (const std::system_error& e) {
      throw std::invalid_argument{std::string{"listen: "} + e.what()};
    }
    stats_thread_ = std::thread([this] { stats_loop(); });
    server_->start();
    log_event(level_enum::info, "listening",
              {field("address", cfg_.listen_host), field("port", int{server_->port()}),
               field("users", std::uint64_t{cfg_.users.size()})});
  }

  ~impl() override {
    // Cuts what is in flight (exchanges end, upstream calls are cancelled); the server
    // object stays until the stats thread, which posts to its queue, is gone.
    server_->shutdown(std::chrono::milliseconds(0));
    stop_stats();
    server_.reset();
    bridge_.reset();
    engine_.reset();
  }

  std::uint16_t port() const { return server_->port(); }

  void handle_signals() { engine_->handle_signals(); }

  shutdown_report wait() {
    auto report = engine_->wait_for_shutdown();
    {
      std::lock_guard<std::mutex> guard{report_mutex_};
      last_report_ = report;
    }
    server_->shutdown(std::min(cfg_.client_timeout, max_final_flush));
    stop_stats();
    log_event(level_enum::info, "shutdown_report",
              {field("duration_ms", static_cast<std::uint64_t>(report.duration.count())),
               field("connections_closed", report.connections_closed),
               field("in_flight_at_start", report.in_flight_at_start),
               field("completed_during_drain", report.completed_during_drain),
               field("cut", report.cut),
               field("forced", std::string{report.forced ? "true" : "false"})});
    return report;
  }

  // -- http_handler (loop thread) -------------------------------------------------------------

  void on_request(http_request req) override {
    exchange ex;
    ex.started = steady::now();
    ex.method = req.method;
    ex.path = path_only(req.target);
    ex.head_request = req.method == "HEAD";
    const std::string* given = req.header("X-Request-Id");
    bool id_ok = given == nullptr || valid_request_id(*given);
    ex.request_id = given != nullptr && id_ok ? *given : new_request_id();
    auto id = req.exchange;
    if (log_enabled(level_enum::trace)) {
      std::string names;
      for (auto& h : req.headers)
        names += (names.empty() ? "" : ",") + h.first;
      log_event(level_enum::trace, "request_received",
                {field("request_id", ex.request_id), field("method", ex.method),
                 field("path", ex.path), field("peer", req.peer), field("header_names", names),
                 field("body_bytes", std::uint64_t{req.body.size()})});
    }
    const std::string* user_header = req.header("X-User-Id");
    if (user_header == nullptr && serve_operational(id, req, ex))
      return;
    if (std::count_if(req.headers.begin(), req.headers.end(),
                      [](const auto& h) { return lower(h.first) == "x-user-id"; }) > 1) {
      fail(id, std::move(ex), 400, "invalid_request", "more than one X-User-Id header");
      return;
    }
    if (!id_ok) {
      fail(id, std::move(ex), 400, "invalid_request",
           "X-Request-Id must be 1-128 visible ASCII characters without quotes or backslashes");
      return;
    }
    if (req.target.empty() || req.target.front() != '/') {
      fail(id, std::move(ex), 400, "invalid_request",
           "the request target must be a path (origin form)");
      return;
    }
    std::string user;
    std::string path = req.target;
    if (req.target.rfind("/u/", 0) == 0) {
      auto end = req.target.find_first_of("/?#", 3);
      user = req.target.substr(3, end == std::string::npos ? std::string::npos : end - 3);
      path = end == std::string::npos ? "/" : req.target.substr(end);
      if (path.front() != '/')
        path.insert(0, "/");
      if (user.empty()) {
        fail(id, std::move(ex), 400, "invalid_request", "empty user in the /u/<user>/ prefix");
        return;
      }
    }
    if (user_header != nullptr) {
      std::string named{trim(*user_header)};
      if (named.empty()) {
        fail(id, std::move(ex), 400, "invalid_request", "empty X-User-Id header");
        return;
      }
      if (!user.empty() && user != named) {
        fail(id, std::move(ex), 400, "invalid_request",
             "the X-User-Id header and the /u/<user>/ prefix name different users");
        return;
      }
      user = std::move(named);
    }
    if (user.empty()) {
      fail(id, std::move(ex), 400, "invalid_request",
           "no user: send an X-User-Id header or use a /u/<user>/ path prefix");
      return;
    }
    ex.user = user;
    ex.path = path_only(path);
    if (engine_->is_shutting_down()) {
      fail(id, std::move(ex), 503, "shutting_down", "the gateway is draining");
      return;
    }
    if (known_users_.count(user) == 0) {
      fail(id, std::move(ex), 404, "unknown_user", "no endpoint is configured for this user");
      return;
    }
    request out;
    out.id = ex.request_id;
    out.method = req.method;
    out.path = std::move(path);
    out.body = std::move(req.body);
    auto drop = hop_by_hop(req.headers);
    for (const char* name : {"host", "content-length", "expect", "x-user-id", "x-request-id"})
      drop.insert(name);
    for (auto& [name, value] : req.headers)
      if (!is_hop_by_hop(drop, lower(name)))
        out.headers.emplace_back(std::move(name), std::move(value));
    out.headers.emplace_back("X-Request-Id", ex.request_id);
    log_event(level_enum::debug, "forwarding",
              {field("request_id", ex.request_id), field("user", ex.user),
               field("method", ex.method), field("path", ex.path)});
    auto listener = std::make_shared<exchange_listener>(server_->queue(), this, id);
    ex.call = bridge_->start(user, std::move(out), std::move(listener));
    ex.forwarding = true;
    ++forwards_in_flight_;
    exchanges_.emplace(id, std::move(ex));
  }

  void on_bad_request(http_request req, int status, std::string why) override {
    exchange ex;
    ex.started = steady::now();
    ex.method = req.method.empty() ? "-" : req.method;
    ex.path = req.target.empty() ? "-" : path_only(req.target);
    ex.request_id = new_request_id();
    // 503: the front end had no slot for this client (see http_server::options::max_clients).
    fail(req.exchange, std::move(ex), status,
         status == 503 ? "too_many_clients" : "invalid_request", why);
  }

  void on_body_sent(std::uint64_t id, std::size_t bytes) override {
    auto it = exchanges_.find(id);
    if (it != exchanges_.end() && it->second.call && it->second.forwarding)
      it->second.call->ack(bytes);
  }

  void on_done(std::uint64_t id, bool complete, std::uint64_t bytes_sent) override {
    auto it = exchanges_.find(id);
    if (it == exchanges_.end())
      return;
    exchange& ex = it->second;
    if (ex.forwarding) {
      // A client that left: the actor releases, the engine abandons the stream. A whole
      // Content-Length body was delivered: the engine has it all and ends the stream by
      // itself, keeping its channel for reuse (its end is then ignored here).
      bool body_delivered = complete && !ex.head_request && ex.status != 204 && ex.status != 304;
      if (!body_delivered)
        ex.call->cancel();
      end_forwarding(ex);
    }
    if (!complete && ex.code == "ok") {
      ex.code = "client_closed";
      if (ex.status == 0)
        ex.status = 499;
    }
    auto latency = steady::now() - ex.started;
    if (ex.counted)
      metrics_.count(ex.status, ex.code, latency);
    bool failed = ex.status >= 500 || (ex.code != "ok" && ex.status < 400);
    std::initializer_list<log_field> fields = {field("request_id", ex.request_id),
                                               field("user", ex.user.empty() ? "-" : ex.user),
                                               field("method", ex.method),
                                               field("path", ex.path),
                                               field("status", ex.status),
                                               field("code", ex.code),
                                               field_fixed3("latency_ms", millis(latency)),
                                               field("bytes", bytes_sent)};
    log_event(!ex.counted ? level_enum::debug
              : failed    ? level_enum::warn
                          : level_enum::info,
              "request", fields);
    exchanges_.erase(it);
  }

  // -- upstream events (loop thread, posted by the forwarders) --------------------------------

  void upstream_head(std::uint64_t id, response res) {
    auto it = exchanges_.find(id);
    if (it == exchanges_.end())
      return;
    exchange& ex = it->second;
    response_head head;
    head.status = res.status;
    head.reason = res.reason;
    head.no_body = ex.head_request || res.status == 204 || res.status == 304;
    auto drop = hop_by_hop(res.headers);
    drop.insert("x-request-id");
    for (auto& [name, value] : res.headers) {
      auto key = lower(name);
      if (key == "content-length") {
        if (!head.content_length)
          head.content_length = parse_length(value);
        continue;
      }
      if (!is_hop_by_hop(drop, key))
        head.headers.emplace_back(std::move(name), std::move(value));
    }
    head.headers.emplace_back("X-Request-Id", ex.request_id);
    head.close = engine_->is_shutting_down();
    ex.status = res.status;
    ex.head_sent = true;
    server_->send_head(id, std::move(head));
  }

  void upstream_chunk(std::uint64_t id, std::string data) {
    if (exchanges_.count(id) != 0)
      server_->send_body(id, std::move(data));
  }

  void upstream_end(std::uint64_t id, error result) {
    auto it = exchanges_.find(id);
    if (it == exchanges_.end())
      return;
    exchange& ex = it->second;
    end_forwarding(ex);
    if (result.code() == errc::none) {
      server_->finish(id, true);
      return;
    }
    std::string code = to_string(result.code());
    if (ex.head_sent) {
      ex.code = code;
      log_event(level_enum::warn, "stream_broken",
                {field("request_id", ex.request_id), field("user", ex.user), field("code", code),
                 field("error", result.message())});
      server_->finish(id, false);
      return;
    }
    int status = status_of(result.code());
    ex.status = status;
    ex.code = code;
    log_event(level_enum::warn, "upstream_failed",
              {field("request_id", ex.request_id), field("user", ex.user), field("code", code),
               field("error", result.message())});
    response_head head = error_head(ex, status);
    if (result.code() == errc::pool_exhausted)
      head.headers.emplace_back("Retry-After", retry_after_seconds);
    server_->respond(id, std::move(head), error_body(code, client_message(result), ex.request_id));
  }

private:
  /// A /metrics (json = false) or /stats request waiting for the pool figures.
  struct stats_waiter {
    std::uint64_t exchange;
    bool json;
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
    /// The forwarder runs (acks and cancellation go to it).
    bool forwarding = false;
    bool head_sent = false;
  };

  /// Posts a forwarder's events to the loop thread.
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

  private:
    std::shared_ptr<loop_queue> queue_;
    impl* gw_;
    std::uint64_t id_;
  };

  void end_forwarding(exchange& ex) {
    if (!ex.forwarding)
      return;
    ex.forwarding = false;
    ex.call.reset();
    --forwards_in_flight_;
  }

  std::string new_request_id() {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%016llx-%llu", static_cast<unsigned long long>(id_prefix_),
                  static_cast<unsigned long long>(++id_counter_));
    return buf;
  }

  response_head error_head(const exchange& ex, int status) {
    response_head head;
    head.status = status;
    head.headers = {{"Content-Type", "application/json"}, {"X-Request-Id", ex.request_id}};
    head.close = engine_->is_shutting_down();
    return head;
  }

  /// Answers with an error body; the exchange is kept until on_done.
  void fail(std::uint64_t id, exchange ex, int status, const std::string& code,
            const std::string& message) {
    ex.status = status;
    ex.code = code;
    auto head = error_head(ex, status);
    if (status == 405)
      head.headers.emplace_back("Allow", "GET, HEAD");
    if (code == "too_many_clients")
      head.headers.emplace_back("Retry-After", "1");
    auto body = error_body(code, message, ex.request_id);
    exchanges_.insert_or_assign(id, std::move(ex));
    server_->respond(id, std::move(head), std::move(body));
  }

  /// /healthz, /readyz, /metrics, /stats; false if the path is none of them.
  bool serve_operational(std::uint64_t id, const http_request& req, exchange& ex) {
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

  response_head ops_head(const exchange& ex, const char* type) {
    response_head head;
    head.headers = {
        {"Content-Type", type}, {"X-Request-Id", ex.request_id}, {"Cache-Control", "no-store"}};
    head.close = engine_->is_shutting_down();
    return head;
  }

  /// Answers the /metrics and /stats requests that waited for `snap`.
  void answer_stats(const pool_snapshot& snap, const std::vector<stats_waiter>& waiters) {
    metrics_view view{metrics_,        engine_->metrics(),          snap,
                      front_figures(), engine_->is_shutting_down(), {}};
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
        server_->respond(w.exchange,
                         ops_head(it->second, "text/plain; version=0.0.4; charset=utf-8"),
                         render_prometheus(view));
    }
  }

  front_end_figures front_figures() const {
    front_end_figures f;
    f.open_connections = server_->open_connections();
    f.connections_accepted = server_->connections_accepted();
    f.bytes_received = server_->bytes_received();
    f.bytes_sent = server_->bytes_sent();
    f.shed_connections = server_->shed_connections();
    f.refused_connections = server_->refused_connections();
    f.header_timeouts = server_->header_timeouts();
    f.forwards_in_flight = forwards_in_flight_;
    return f;
  }

  // -- the stats thread -----------------------------------------------------------------------

  /// Reads the pool and cleanup figures (blocking engine calls, each with a deadline) when
  /// /metrics or /stats asks, and posts the answers to the loop. Requests that arrive
  /// meanwhile share the next reading, so scrapes never queue up behind each other.
  void stats_loop() {
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
      server_->queue()->post([this, snap = std::move(snap), waiters = std::move(waiters)] {
        answer_stats(snap, waiters);
      });
      guard.lock();
    }
  }

  void stop_stats() {
    {
      std::lock_guard<std::mutex> guard{stats_mutex_};
      stats_stop_ = true;
    }
    stats_cv_.notify_all();
    if (stats_thread_.joinable())
      stats_thread_.join();
  }

  gateway_config cfg_;
  std::unique_ptr<engine> engine_;
  std::unique_ptr<upstream_bridge> bridge_;
  std::unordered_set<std::string> known_users_;

  // Loop thread only.
  std::unordered_map<std::uint64_t, exchange> exchanges_;
  gateway_metrics metrics_;
  std::uint64_t forwards_in_flight_ = 0;
  std::uint64_t id_prefix_ = 0;
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

  std::unique_ptr<http_server> server_; // last: its thread calls into everything above
};

gateway::gateway(gateway_config cfg) : impl_(std::make_unique<impl>(std::move(cfg))) {}

gateway::~gateway() = default;

std::uint16_t gateway::port() const {
  return impl_->port();
}

void gateway::handle_signals() {
  impl_->handle_signals();
}

shutdown_report gateway::wait() {
  return impl_->wait();
}

} // namespace sshpool::gateway
