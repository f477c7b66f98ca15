// The gateway: routing, error mapping and the per-exchange state machine between the front
// end and the bridge actor (see gateway.hpp). Header hygiene is in headers.cpp, the
// operational endpoints and the stats thread in ops.cpp (the shared state: gateway_impl.hpp).
//
// An exchange, on the loop thread:
//
//   on_request ── ops path ──────────────────────────► respond ─┐
//       │ ── bad / unknown user / draining ───────────► respond ─┤
//       │ ── not authenticated, another user ─────────► respond ─┤  (auth_gate.cpp)
//       │ ── over its fair share (429) ───────────────► respond ─┤
//       ▼ bridge.start                                           │
//   forwarding ── upstream_head ──► streaming ── upstream_end ──►│ finish
//       │ upstream_response (whole before its head) ──► respond ┤
//       │ upstream_end(error) before the head: error response ──┤
//       │                          on_body_sent ──► call->ack    ▼
//       └── on_done(incomplete) : call->cancel ─────────────► on_done: count, log, forget
#include "gateway/gateway.hpp"

#include <algorithm>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <nlohmann/json.hpp>

#include "gateway/auth_settings.hpp"
#include "gateway/gateway_impl.hpp"
#include "gateway/headers.hpp"
#include "gateway/logging.hpp"
#include "net/text.hpp"
#include "sshpool/ssh/http_framing.hpp"
#include "sshpool/text.hpp"

namespace sshpool::gateway {

namespace {

using spdlog::level::level_enum;

/// Seconds a client is asked to wait after pool_exhausted.
constexpr const char* retry_after_seconds = "1";
/// ... and after agent_offline: an agent that lost its network reconnects within a few
/// seconds (ssh's ServerAliveInterval and a restart loop on the user's side).
constexpr const char* agent_retry_after_seconds = "5";
/// ... and after over_fair_share: the flood that filled the budget is short-lived or refused.
constexpr const char* fair_share_retry_after_seconds = "1";
/// Upper bound of the front end's final flush after the drain.
constexpr std::chrono::milliseconds max_final_flush{5000};

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
  case errc::agent_offline:
    return "the user's machine is not connected to the gateway (no ssh -R agent dialed in "
           "in time)";
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

/// The engine's settings as the gateway runs them. Unless `scheduler_threads` is set, CAF
/// gets the cores that the engine's reactor threads (half the cores by default) leave, at
/// least one thread; the front end's loop runs on the first of them (engine::host). Every
/// request crosses from the loop to CAF, to a reactor and back: a second CAF thread on two
/// cores only made the bridge and the connection actors wake each other's threads (4 to 13
/// thread switches per request in the gateway instead of 1.3 to 2.8, and 10-50 % more CPU
/// per request).
engine_config engine_settings(engine_config cfg) {
  if (cfg.scheduler_threads == 0) {
    std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
    std::size_t reactors =
        cfg.reactor_threads != 0 ? cfg.reactor_threads : std::max<std::size_t>(1, cores / 2);
    cfg.scheduler_threads = cores > reactors ? cores - reactors : 1;
  }
  return cfg;
}

} // namespace

int status_of(errc code) noexcept {
  switch (code) {
  case errc::unknown_user:
    return 404;
  case errc::invalid_request:
    return 400;
  case errc::pool_exhausted:
  case errc::agent_offline:
  case errc::shutting_down:
    return 503;
  case errc::request_timeout:
  case errc::timeout:
    return 504;
  default:
    return 502;
  }
}

gateway::impl::impl(gateway_config cfg)
    : cfg_(std::move(cfg)), auth_(cfg_),
      auth_limiter_({cfg_.auth_max_failures, cfg_.auth_failure_window, cfg_.auth_max_sources}) {
  auth_required_ = auth_.enabled();
  engine_ = std::make_unique<engine>(engine_settings(cfg_.engine));
  for (auto& u : cfg_.users) {
    known_users_.insert(u.name);
    if (u.ep.mode == endpoint_mode::agent)
      agent_users_.push_back(u.name);
    if (auto ok = engine_->set_endpoint(u.name, u.ep); !ok)
      throw std::invalid_argument{"user " + u.name + ": " + ok.error().message()};
  }
  bridge_ = std::make_unique<upstream_bridge>(*engine_);
  std::random_device rd;
  char prefix[24];
  std::snprintf(prefix, sizeof prefix, "%016llx-",
                static_cast<unsigned long long>((static_cast<std::uint64_t>(rd()) << 32) ^ rd()));
  id_prefix_ = prefix;
  http_server::options opts;
  opts.bind = cfg_.listen_host;
  opts.port = cfg_.listen_port;
  opts.max_header_bytes = cfg_.max_request_header_bytes;
  opts.max_body_bytes = cfg_.max_request_body_bytes;
  opts.max_clients = cfg_.max_clients;
  opts.max_clients_per_source = cfg_.max_clients_per_source;
  opts.client_timeout = cfg_.client_timeout;
  opts.header_timeout = cfg_.header_timeout;
  opts.tls_cert_file = cfg_.tls_cert_file;
  opts.tls_key_file = cfg_.tls_key_file;
  try {
    server_ = std::make_unique<http_server>(opts, *this);
  } catch (const std::system_error& e) {
    throw std::invalid_argument{std::string{"listen: "} + e.what()};
  }
  if (!cfg_.admin_listen_host.empty()) {
    // Plain HTTP for scrapers on a private address: few clients, short requests.
    http_server::options admin;
    admin.bind = cfg_.admin_listen_host;
    admin.port = cfg_.admin_listen_port;
    admin.max_body_bytes = 0;
    admin.max_clients = 64;
    admin.client_timeout = cfg_.client_timeout;
    admin.header_timeout = cfg_.header_timeout;
    try {
      admin_server_ = std::make_unique<http_server>(admin, admin_handler_);
    } catch (const std::system_error& e) {
      throw std::invalid_argument{std::string{"admin_listen: "} + e.what()};
    }
  }
  stats_thread_ = std::thread([this] { stats_loop(); });
  server_->start(engine_.get()); // on the engine's first scheduler thread
  if (admin_server_) {
    admin_server_->start();
    log_event(
        level_enum::info, "admin_listening",
        {field("address", cfg_.admin_listen_host), field("port", int{admin_server_->port()})});
    if (!is_loopback(cfg_.admin_listen_host))
      log_event(level_enum::warn, "admin_listen_exposed",
                {field("address", cfg_.admin_listen_host),
                 field("hint", std::string{"the admin listener has no TLS and no authentication "
                                           "and /stats names every user: keep it on a private "
                                           "address that clients cannot reach"})});
  }
  log_event(level_enum::info, "listening",
            {field("address", cfg_.listen_host), field("port", int{server_->port()}),
             field("users", std::uint64_t{cfg_.users.size()}),
             field("tls", std::string{cfg_.tls_cert_file.empty() ? "off" : "on"})});
}

gateway::impl::~impl() {
  stop_reload();
  // Cuts what is in flight (exchanges end, upstream calls are cancelled); the servers stay
  // until the stats thread, which posts to their queues, is gone. The admin listener goes
  // first: it posts to the front end's loop.
  if (admin_server_)
    admin_server_->shutdown(std::chrono::milliseconds(0));
  server_->shutdown(std::chrono::milliseconds(0));
  stop_stats();
  admin_server_.reset();
  server_.reset();
  bridge_.reset();
  engine_.reset();
}

shutdown_report gateway::impl::wait() {
  auto report = engine_->wait_for_shutdown();
  stop_reload();
  {
    std::lock_guard<std::mutex> guard{report_mutex_};
    last_report_ = report;
  }
  if (admin_server_)
    admin_server_->shutdown(std::chrono::milliseconds(0));
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

gateway::impl::exchange gateway::impl::exchange_for(const http_request& req) {
  exchange ex;
  ex.started = steady::now();
  ex.method = req.method;
  ex.path = path_only(req.target);
  ex.head_request = req.method == "HEAD";
  return ex;
}

void gateway::impl::on_request(http_request req) {
  auto ex = exchange_for(req);
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
  // With an admin listener the operational paths are answered there only; here they are
  // paths like any other (a user's, or an error without one).
  if (user_header == nullptr && !admin_server_ && serve_operational(id, req, ex))
    return;
  if (std::count_if(req.headers.begin(), req.headers.end(),
                    [](const auto& h) { return text::iequals(h.first, "X-User-Id"); }) > 1) {
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
    std::string named{text::trim(*user_header)};
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
  if (auth_.enabled() && !authenticate(id, ex, req, user))
    return;
  if (req.body_withheld) {
    // Refused at the head, valid now (a JWT's nbf passed meanwhile): the body is gone.
    fail(id, std::move(ex), 401, "unauthorized",
         "the credential was not valid when the head arrived",
         {{"WWW-Authenticate", "Bearer realm=\"sshpool\""}});
    return;
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
  if (!within_fair_share(user)) {
    ++fair_share_refusals_;
    fail(id, std::move(ex), 429, "over_fair_share",
         "the gateway is at its budget of requests in flight and this user holds its share",
         {{"Retry-After", fair_share_retry_after_seconds}});
    return;
  }
  request out;
  out.id = ex.request_id;
  out.method = req.method;
  out.path = std::move(path);
  out.body = std::move(req.body);
  out.headers = end_to_end(std::move(req.headers),
                           {"host", "content-length", "expect", "x-user-id", "x-request-id"});
  strip_credentials(user, out.headers);
  out.headers.emplace_back("X-Request-Id", ex.request_id);
  if (log_enabled(level_enum::debug))
    log_event(level_enum::debug, "forwarding",
              {field("request_id", ex.request_id), field("user", ex.user),
               field("method", ex.method), field("path", ex.path)});
  auto listener = std::make_shared<exchange_listener>(server_->queue(), this, id);
  ex.call = bridge_->start(user, std::move(out), std::move(listener));
  ex.forwarding = true;
  ++forwards_in_flight_;
  ++user_in_flight_[ex.user];
  exchanges_.emplace(id, std::move(ex));
}

void gateway::impl::on_bad_request(http_request req, int status, std::string why) {
  refuse(std::move(req), status, std::move(why), false);
}

void gateway::impl::refuse(http_request req, int status, std::string why, bool admin) {
  exchange ex;
  ex.admin = admin;
  ex.counted = !admin;
  ex.started = steady::now();
  ex.method = req.method.empty() ? "-" : req.method;
  ex.path = req.target.empty() ? "-" : path_only(req.target);
  ex.request_id = new_request_id();
  // 503: the front end had no slot for this client (see http_server::options::max_clients).
  fail(req.exchange, std::move(ex), status, status == 503 ? "too_many_clients" : "invalid_request",
       why);
}

void gateway::impl::on_body_sent(std::uint64_t id, std::size_t bytes) {
  auto it = exchanges_.find(id);
  if (it != exchanges_.end() && it->second.call && it->second.forwarding)
    it->second.call->ack(bytes);
}

void gateway::impl::on_done(std::uint64_t id, bool complete, std::uint64_t bytes_sent) {
  auto it = exchanges_.find(id);
  if (it == exchanges_.end())
    return;
  exchange& ex = it->second;
  if (ex.forwarding) {
    // A client that left: the actor releases, the engine abandons the stream. A whole
    // Content-Length body was delivered: the engine has it all and ends the stream by
    // itself, keeping its channel for reuse (its end is then ignored here).
    bool body_delivered = complete && !has_no_body(ex.head_request, ex.status);
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
  auto level = !ex.counted ? level_enum::debug : failed ? level_enum::warn : level_enum::info;
  if (log_enabled(level)) // the fields cost more than the rest of this function
    log_event(level, "request",
              {field("request_id", ex.request_id), field("user", ex.user.empty() ? "-" : ex.user),
               field("method", ex.method), field("path", ex.path), field("status", ex.status),
               field("code", ex.code), field_fixed3("latency_ms", millis(latency)),
               field("bytes", bytes_sent)});
  exchanges_.erase(it);
}

response_head gateway::impl::forwarded_head(exchange& ex, response& res) {
  response_head head;
  head.status = res.status;
  head.reason = std::move(res.reason);
  head.no_body = has_no_body(ex.head_request, res.status);
  for (auto& [name, value] : res.headers)
    if (!head.content_length && text::iequals(name, "content-length"))
      head.content_length = net::parse_unsigned(value);
  head.headers = end_to_end(std::move(res.headers), {"content-length", "x-request-id"});
  head.headers.emplace_back("X-Request-Id", ex.request_id);
  head.close = engine_->is_shutting_down();
  ex.status = res.status;
  ex.head_sent = true;
  return head;
}

void gateway::impl::upstream_head(std::uint64_t id, response res) {
  auto it = exchanges_.find(id);
  if (it != exchanges_.end())
    server_->send_head(id, forwarded_head(it->second, res));
}

gateway::impl::exchange* gateway::impl::upstream_done(std::uint64_t id) {
  auto it = exchanges_.find(id);
  if (it == exchanges_.end())
    return nullptr;
  end_forwarding(it->second);
  return &it->second;
}

void gateway::impl::upstream_response(std::uint64_t id, response whole) {
  exchange* ex = upstream_done(id);
  if (ex == nullptr)
    return;
  auto head = forwarded_head(*ex, whole);
  if (head.no_body) {
    // HEAD, 204, 304: the upstream's Content-Length stands (respond would say 0).
    server_->send_head(id, std::move(head));
    server_->finish(id, true);
    return;
  }
  server_->respond(id, std::move(head), std::move(whole.body));
}

void gateway::impl::upstream_chunk(std::uint64_t id, std::string data) {
  if (exchanges_.count(id) != 0)
    server_->send_body(id, std::move(data));
}

void gateway::impl::upstream_end(std::uint64_t id, error result) {
  exchange* found = upstream_done(id);
  if (found == nullptr)
    return;
  exchange& ex = *found;
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
  else if (result.code() == errc::agent_offline)
    head.headers.emplace_back("Retry-After", agent_retry_after_seconds);
  server_->respond(id, std::move(head), error_body(code, client_message(result), ex.request_id));
}

void gateway::impl::end_forwarding(exchange& ex) {
  if (!ex.forwarding)
    return;
  ex.forwarding = false;
  ex.call.reset();
  --forwards_in_flight_;
  if (auto mine = user_in_flight_.find(ex.user);
      mine != user_in_flight_.end() && --mine->second == 0)
    user_in_flight_.erase(mine);
}

bool gateway::impl::within_fair_share(const std::string& user) const {
  // Below the budget everyone is admitted. At it, a user is admitted while it holds fewer
  // than budget / active users (itself counted as active), so a user with nothing in flight
  // always is: the total may pass the budget by the small users' shares, at most the budget
  // again, and the users above their share get 429 until the total is below it.
  auto budget = cfg_.max_in_flight_total;
  if (budget == 0 || forwards_in_flight_ < budget)
    return true;
  auto mine = user_in_flight_.find(user);
  std::size_t held = mine == user_in_flight_.end() ? 0 : mine->second;
  std::size_t active = user_in_flight_.size() + (held == 0 ? 1 : 0);
  return held * active < budget;
}

std::string gateway::impl::new_request_id() {
  std::string id = id_prefix_;
  net::append_number(id, ++id_counter_);
  return id;
}

response_head gateway::impl::error_head(const exchange& ex, int status) {
  response_head head;
  head.status = status;
  head.headers = {{"Content-Type", "application/json"}, {"X-Request-Id", ex.request_id}};
  head.close = engine_->is_shutting_down();
  return head;
}

void gateway::impl::fail(std::uint64_t id, exchange ex, int status, const std::string& code,
                         const std::string& message, header_list extra) {
  ex.status = status;
  ex.code = code;
  auto head = error_head(ex, status);
  if (status == 405)
    head.headers.emplace_back("Allow", "GET, HEAD");
  if (code == "too_many_clients")
    head.headers.emplace_back("Retry-After", "1");
  for (auto& h : extra)
    head.headers.push_back(std::move(h));
  auto body = error_body(code, message, ex.request_id);
  send_answer(id, std::move(ex), std::move(head), std::move(body));
}

gateway::gateway(gateway_config cfg) : impl_(std::make_unique<impl>(std::move(cfg))) {}

gateway::~gateway() = default;

std::uint16_t gateway::port() const {
  return impl_->port();
}

std::optional<std::uint16_t> gateway::admin_port() const {
  return impl_->admin_port();
}

std::optional<agent_listener_status> gateway::agent_listener() const {
  return impl_->agent_listener();
}

void gateway::handle_signals() {
  impl_->handle_signals();
}

void gateway::handle_reload(config_source load) {
  impl_->handle_reload(std::move(load));
}

void gateway::reload(const gateway_config& next) {
  impl_->reload(next);
}

shutdown_report gateway::wait() {
  return impl_->wait();
}

} // namespace sshpool::gateway
