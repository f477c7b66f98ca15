// Client authentication: API keys, JWTs, failures per source (see auth.hpp).
#include "gateway/auth.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <iterator>

#include "gateway/settings.hpp"
#include "net/text.hpp"
#include "sshpool/text.hpp"

namespace sshpool::gateway {

namespace {

/// SHA-256 of `data` (EVP). Should the digest itself fail, the result is all zeros: the
/// hash of no key, so it matches nothing.
std::array<unsigned char, 32> sha256(std::string_view data) {
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 ||
      len != out.size())
    out.fill(0);
  return out;
}

std::optional<std::array<unsigned char, 32>> from_hex(const std::string& hex) {
  std::array<unsigned char, 32> out{};
  if (hex.size() != 64)
    return std::nullopt;
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = net::hex_digit(hex[2 * i]);
    int lo = net::hex_digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return std::nullopt;
    out[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return out;
}

/// Whether `token` has the JWT form: three base64url parts (an empty one is a malformed JWT,
/// e.g. `alg: none` with no signature).
bool jwt_form(std::string_view token) {
  if (std::count(token.begin(), token.end(), '.') != 2)
    return false;
  return std::all_of(token.begin(), token.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

} // namespace

const char* to_string(auth_failure f) noexcept {
  static constexpr std::array<const char*, auth_failure_count - jwt_refusal_count> names = {
      "missing", "unknown_api_key", "unknown_user", "forbidden_user", "rate_limited"};
  auto i = static_cast<std::size_t>(f);
  if (i < jwt_refusal_count)
    return to_string(static_cast<jwt_refusal>(i));
  i -= jwt_refusal_count;
  return i < names.size() ? names[i] : "unknown";
}

std::optional<std::string_view> bearer_token(std::string_view authorization) {
  auto value = text::trim(authorization);
  auto space = value.find(' ');
  if (space == std::string_view::npos || !text::iequals(value.substr(0, space), "Bearer"))
    return std::nullopt;
  auto token = text::trim(value.substr(space + 1));
  // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
  auto end = token.find_last_not_of('=');
  if (token.empty() || end == std::string_view::npos)
    return std::nullopt;
  for (std::size_t i = 0; i <= end; ++i) {
    char c = token[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_' &&
        c != '~' && c != '+' && c != '/')
      return std::nullopt;
  }
  return token;
}

std::string sha256_hex(std::string_view key) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : sha256(key)) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

authenticator::authenticator(const gateway_config& cfg, bool required) : required_(required) {
  for (auto& u : cfg.users) {
    users_.emplace(u.name, u.forward_authorization);
    for (auto& hex : u.api_keys_sha256)
      if (auto hash = from_hex(hex))
        api_keys_.push_back({*hash, u.name});
  }
  if (cfg.jwt) {
    jwt_keys_ = cfg.jwt->keys;
    jwt_policy_ = cfg.jwt->policy;
  }
}

auth_outcome authenticator::authenticate(const std::string* authorization, std::int64_t now) const {
  auth_outcome out;
  if (authorization == nullptr) {
    out.failure = auth_failure::missing;
    return out;
  }
  out.token_presented = true;
  auto token = bearer_token(*authorization);
  if (!token) {
    out.failure = failure_of(jwt_refusal::malformed);
    return out;
  }
  return jwt_keys_ != nullptr && jwt_form(*token) ? check_jwt(*token, now) : check_api_key(*token);
}

auth_outcome authenticator::check_api_key(std::string_view key) const {
  auth_outcome out;
  out.token_presented = true;
  auto hash = sha256(key);
  // Every hash is compared, and the match is picked without a branch on secret data that
  // ends the loop early.
  const api_key* match = nullptr;
  for (auto& k : api_keys_) {
    bool equal = CRYPTO_memcmp(k.hash.data(), hash.data(), hash.size()) == 0;
    match = equal ? &k : match;
  }
  if (match == nullptr)
    out.failure = auth_failure::unknown_api_key;
  else
    out.user = match->user;
  return out;
}

auth_outcome authenticator::check_jwt(std::string_view token, std::int64_t now) const {
  auth_outcome out;
  out.token_presented = true;
  auto verified = verify_jwt(token, *jwt_keys_, jwt_policy_, now);
  if (!verified.subject)
    out.failure = failure_of(verified.refusal);
  else if (users_.count(*verified.subject) == 0)
    out.failure = auth_failure::unknown_user;
  else
    out.user = std::move(*verified.subject);
  return out;
}

bool authenticator::forwards_authorization(const std::string& user) const {
  auto it = users_.find(user);
  return it != users_.end() && it->second;
}

std::string auth_source(std::string_view peer) {
  auto colon = peer.rfind(':');
  std::string ip{colon == std::string_view::npos ? peer : peer.substr(0, colon)};
  in6_addr v6{};
  if (ip.find(':') == std::string::npos || ::inet_pton(AF_INET6, ip.c_str(), &v6) != 1)
    return ip;
  // An IPv4-mapped address counts as its IPv4 address; any other IPv6 one by its /64.
  if (IN6_IS_ADDR_V4MAPPED(&v6))
    return ip.substr(ip.rfind(':') + 1);
  std::fill(v6.s6_addr + 8, v6.s6_addr + 16, 0);
  char text[INET6_ADDRSTRLEN] = "";
  ::inet_ntop(AF_INET6, &v6, text, sizeof text);
  return std::string{text} + "/64";
}

std::optional<std::chrono::seconds> auth_rate_limiter::refused(const std::string& peer,
                                                               clock::time_point now) {
  auto it = sources_.find(auth_source(peer));
  if (it == sources_.end())
    return std::nullopt;
  auto end = it->second.start + opts_.window;
  if (now >= end) {
    sources_.erase(it);
    return std::nullopt;
  }
  if (it->second.failures < opts_.max_failures)
    return std::nullopt;
  auto left = std::chrono::ceil<std::chrono::seconds>(end - now);
  return std::max(left, std::chrono::seconds(1));
}

void auth_rate_limiter::failed(const std::string& peer, clock::time_point now) {
  auto source = auth_source(peer);
  auto it = sources_.find(source);
  if (it != sources_.end() && now >= it->second.start + opts_.window) {
    it->second = {now, 0};
  } else if (it == sources_.end()) {
    if (sources_.size() >= opts_.max_sources)
      evict(now);
    it = sources_.emplace(std::move(source), window{now, 0}).first;
  }
  ++it->second.failures;
}

void auth_rate_limiter::evict(clock::time_point now) {
  for (auto it = sources_.begin(); it != sources_.end();)
    it = now >= it->second.start + opts_.window ? sources_.erase(it) : std::next(it);
  if (sources_.size() < opts_.max_sources || sources_.empty())
    return;
  auto oldest = std::min_element(sources_.begin(), sources_.end(),
                                 [](auto& a, auto& b) { return a.second.start < b.second.start; });
  sources_.erase(oldest);
}

} // namespace sshpool::gateway
