// The gateway's authentication step (see auth.hpp), called by the routing when
// authentication is configured:
//
//   request ── source over auth_max_failures ─────────────► 429 too_many_auth_failures
//      │ authenticate(Authorization)
//      ├── none or bad credential ────────────────────────► 401 unauthorized (+ WWW-Authenticate)
//      ├── valid JWT of a user this gateway does not serve ► 403 forbidden
//      ├── the request names another user ────────────────► 403 forbidden
//      ▼
//   the authenticated user is the request's user
//
// Every refusal but the 429 counts as a failure of the source address. A 401 says nothing
// about users (the same body whatever the request names); a 403 answers a client holding a
// valid credential only.
//
// A request with a body is checked at its head already (`admit_head`: the source's limit,
// the credential): one that will be refused is answered without its body being read (no
// 100 Continue, nothing buffered), so unauthenticated clients cannot make the gateway hold
// bodies. The user it found comes with the whole request (http_request::principal).
#include "gateway/gateway_impl.hpp"
#include "gateway/headers.hpp"
#include "gateway/logging.hpp"
#include "sshpool/text.hpp"

namespace sshpool::gateway {

namespace {

/// Seconds since the Unix epoch (JWT times).
std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

} // namespace

bool gateway::impl::authenticate(std::uint64_t id, exchange& ex, const http_request& req,
                                 std::string& user) {
  auto now = auth_rate_limiter::clock::now();
  auth_outcome outcome;
  if (!req.principal.empty()) {
    // Verified at the head (admit_head), this same header: not again.
    outcome.user = req.principal;
    outcome.token_presented = true;
  } else if (auto wait = auth_limiter_.refused(req.peer, now)) {
    metrics_.count_auth_failure(auth_failure::rate_limited);
    fail(id, std::move(ex), 429, "too_many_auth_failures",
         "too many failed authentications from this address; retry later",
         {{"Retry-After", std::to_string(wait->count())}});
    return false;
  } else {
    outcome = auth_.authenticate(req.header("Authorization"), unix_now());
  }
  auto credentials = std::count_if(req.headers.begin(), req.headers.end(), [](const auto& h) {
    return text::iequals(h.first, "Authorization");
  });
  if (credentials > 1) {
    outcome.user.clear();
    outcome.failure = failure_of(jwt_refusal::malformed);
  }
  if (!outcome.failure && !user.empty() && user != outcome.user)
    outcome.failure = auth_failure::forbidden_user;
  if (!outcome.failure) {
    user = std::move(outcome.user);
    return true;
  }
  auth_failure why = *outcome.failure;
  metrics_.count_auth_failure(why);
  auth_limiter_.failed(req.peer, now);
  if (log_enabled(spdlog::level::debug))
    log_event(spdlog::level::debug, "auth_failed",
              {field("request_id", ex.request_id), field("peer", req.peer),
               field("reason", to_string(why))});
  if (why == auth_failure::unknown_user || why == auth_failure::forbidden_user) {
    fail(id, std::move(ex), 403, "forbidden",
         why == auth_failure::unknown_user
             ? "the credential is valid but its user is not served by this gateway"
             : "the credential is not for the user this request names");
    return false;
  }
  fail(id, std::move(ex), 401, "unauthorized",
       "authentication required: send Authorization: Bearer <API key or JWT>",
       {{"WWW-Authenticate", outcome.token_presented
                                 ? "Bearer realm=\"sshpool\", error=\"invalid_token\""
                                 : "Bearer realm=\"sshpool\""}});
  return false;
}

bool gateway::impl::admit_head(const net::request& head, const std::string& peer,
                               std::string& principal) {
  if (!auth_.enabled() ||
      (head.header("Content-Length") == nullptr && head.header("Transfer-Encoding") == nullptr))
    return true; // nothing to hold: on_request decides alone
  if (auth_limiter_.refused(peer, auth_rate_limiter::clock::now()))
    return false;
  if (head.header("X-User-Id") == nullptr && !admin_server_ &&
      is_operational_path(path_only(head.target)))
    return true;
  auto outcome = auth_.authenticate(head.header("Authorization"), unix_now());
  if (outcome.failure)
    return false;
  principal = std::move(outcome.user);
  return true;
}

void gateway::impl::strip_credentials(const std::string& user, header_list& headers) const {
  if (!auth_.enabled() || auth_.forwards_authorization(user))
    return;
  headers.erase(
      std::remove_if(headers.begin(), headers.end(),
                     [](const auto& h) { return text::iequals(h.first, "Authorization"); }),
      headers.end());
}

} // namespace sshpool::gateway
