// Client authentication of sshpool-demo: the credential decides the user.
//
// A client sends `Authorization: Bearer <token>`. A token of the JWT form (base64url parts
// joined by two dots) is verified as a JWT (see jwt.hpp) when `jwt` is configured, and its
// `sub` is the user; any other token is an API key: its SHA-256 (OpenSSL EVP) is compared
// with every configured hash in constant time (CRYPTO_memcmp, all of them every time, so the
// time does not tell which user matched), and the user is the one whose
// `api_keys_sha256` holds it. The config holds hashes only, never a key.
//
// The authenticator says who the client is, or why not (auth_failure); the gateway turns a
// failure into 401 (no or a bad credential), 403 (a valid credential for a user the gateway
// does not serve, or a request that names another user) or 429 (the source address made
// too many failures: see auth_rate_limiter).
//
// Thread-safety: an authenticator is immutable after construction (any thread may call
// `authenticate`); a rate limiter is used by one thread (the front end's loop).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gateway/jwt.hpp"

namespace sshpool::gateway {

struct gateway_config;

/// Why a request was not authenticated (the label of
/// sshpool_gateway_auth_failures_total{reason}): a refused JWT, as its jwt_refusal (same value,
/// same label; an Authorization value that is not `Bearer <token>` counts as `malformed`, see
/// `failure_of`), or one of these.
enum class auth_failure : std::uint8_t {
  /// No Authorization header.
  missing = jwt_refusal_count,
  /// An API key no user has.
  unknown_api_key,
  /// A valid JWT whose `sub` is not a configured user.
  unknown_user,
  /// The request names (/u/<user>/, X-User-Id) a user other than the authenticated one.
  forbidden_user,
  /// The source address made too many failures lately (answered before any verification).
  rate_limited,
};

inline constexpr std::size_t auth_failure_count = jwt_refusal_count + 5;

/// The failure of a JWT refused for `r`.
constexpr auth_failure failure_of(jwt_refusal r) noexcept {
  return static_cast<auth_failure>(r);
}

/// The label of `f` ("missing", "bad_signature", ...).
const char* to_string(auth_failure f) noexcept;

/// Who the client is, or why that is not known.
struct auth_outcome {
  /// The authenticated user (empty on failure).
  std::string user;
  std::optional<auth_failure> failure;
  /// A Bearer token was sent (a failure is then answered with error="invalid_token").
  bool token_presented = false;
};

/// The token of an Authorization value `Bearer <token>` (scheme case-insensitive, RFC 6750
/// b64token characters), or nullopt.
std::optional<std::string_view> bearer_token(std::string_view authorization);

/// Hex SHA-256 of `key` (lower case), as `api_keys_sha256` lists it.
std::string sha256_hex(std::string_view key);

/// Resolves credentials to users, from the users' `api_keys_sha256` and the `jwt` settings.
class authenticator {
public:
  /// `required`: authentication stays on even if `cfg` holds no key and no `jwt` (every
  /// request then fails), so that a configuration change cannot open the gateway.
  explicit authenticator(const gateway_config& cfg, bool required = false);

  /// Whether authentication is on (required, some user has API keys, or `jwt` is set); if
  /// not, requests name their user as before.
  bool enabled() const { return required_ || !api_keys_.empty() || jwt_keys_ != nullptr; }

  /// The user of `authorization` (the header's value; null: none), at `now` (seconds since
  /// the Unix epoch, for JWT times).
  auth_outcome authenticate(const std::string* authorization, std::int64_t now) const;

  /// Whether `user`'s entry says to forward the client's Authorization header upstream.
  bool forwards_authorization(const std::string& user) const;

private:
  struct api_key {
    std::array<unsigned char, 32> hash;
    std::string user;
  };
  auth_outcome check_api_key(std::string_view key) const;
  auth_outcome check_jwt(std::string_view token, std::int64_t now) const;

  bool required_ = false;
  std::vector<api_key> api_keys_;
  std::shared_ptr<const jwt_keys> jwt_keys_;
  jwt_policy jwt_policy_;
  /// Every configured user, and whether its Authorization header is forwarded.
  std::unordered_map<std::string, bool> users_;
};

/// Failed authentications per source address in fixed windows: a source with `max_failures`
/// failures in its current window is refused (429) until the window ends. At most
/// `max_sources` sources are tracked: when full, sources whose window ended are dropped,
/// then the one with the oldest window. IPv6 sources count per /64 (one host's block).
class auth_rate_limiter {
public:
  using clock = std::chrono::steady_clock;

  struct options {
    std::size_t max_failures = 20;
    std::chrono::milliseconds window{std::chrono::seconds(60)};
    std::size_t max_sources = 4096;
  };

  explicit auth_rate_limiter(options opts) : opts_(opts) {}

  /// If `peer` ("ip:port") is refused now: the seconds until its window ends (at least 1).
  std::optional<std::chrono::seconds> refused(const std::string& peer, clock::time_point now);

  /// Counts a failure of `peer`.
  void failed(const std::string& peer, clock::time_point now);

  /// Sources tracked now.
  std::size_t sources() const { return sources_.size(); }

private:
  struct window {
    clock::time_point start;
    std::size_t failures = 0;
  };
  /// Makes room for one more source (see the class comment).
  void evict(clock::time_point now);

  options opts_;
  std::unordered_map<std::string, window> sources_;
};

/// The source a peer ("ip:port") counts as: its IPv4 address, or its IPv6 /64 prefix.
std::string auth_source(std::string_view peer);

} // namespace sshpool::gateway
