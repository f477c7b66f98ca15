// libFuzzer target: the gateway's client authentication, its JWT parser and the
// Authorization header (app/gateway/auth.cpp, jwt.cpp).
//
// Each input is used five ways, none of which may crash, throw or accept a forgery:
//   1. as an Authorization header value: the authenticator (API keys and a JWKS of an RSA,
//      an EC and an Ed25519 key generated at start) authenticates nobody, except the
//      configured API key itself (the seed corpus holds it);
//   2. as a compact token: verify_jwt never accepts it (nothing here can sign);
//   3. as the claims of a token genuinely signed with the Ed25519 key: accepted only if the
//      claims satisfy the policy (exp, nbf with the leeway, iss, aud, a string sub), checked
//      again here with nlohmann's own parser;
//   4. as a key file: a key set that loads holds keys, each with a public key;
//   5. as base64url: what decodes encodes back to the same text (one encoding per value).
// A violation calls __builtin_trap(), which libFuzzer reports.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_check.hpp"
#include "gateway/auth.hpp"
#include "gateway/jwt.hpp"
#include "gateway/settings.hpp"
#include "support/jwt_mint.hpp"

namespace {

using namespace sshpool::fuzz;
using namespace sshpool::gateway;
using namespace sshpool::test;
using json = nlohmann::json;

/// The API key configured for alice (the seed corpus holds "Bearer fuzz-api-key").
constexpr std::string_view api_key = "fuzz-api-key";
/// The time every input is checked at.
constexpr std::int64_t now = 1'800'000'000;

struct world {
  signing_key rsa{signing_key::kind::rsa};
  signing_key ec{signing_key::kind::ec};
  signing_key ed{signing_key::kind::ed25519};
  std::shared_ptr<const jwt_keys> keys;
  jwt_policy policy;
  gateway_config cfg;
  std::unique_ptr<authenticator> auth;

  world() {
    auto parsed = jwt_keys::parse("{\"keys\":[" + rsa.jwk("r") + "," + ec.jwk("e") + "," +
                                  ed.jwk("d") + "]}");
    check(parsed.has_value());
    keys = *parsed;
    policy.issuer = "iss";
    policy.audience = "aud";
    policy.leeway = std::chrono::seconds(30);
    cfg.users.resize(2);
    cfg.users[0].name = "alice";
    cfg.users[0].api_keys_sha256 = {sha256_hex(api_key)};
    cfg.users[1].name = "bob";
    cfg.jwt = jwt_settings{};
    cfg.jwt->policy = policy;
    cfg.jwt->keys = keys;
    auth = std::make_unique<authenticator>(cfg);
  }
};

world& w() {
  static world instance;
  return instance;
}

/// What the policy requires of `text` as claims, judged independently of jwt.cpp.
bool claims_acceptable(std::string_view text) {
  json c = json::parse(text.begin(), text.end(), nullptr, false);
  if (!c.is_object() || !c.contains("exp") || !c["exp"].is_number() || !c.contains("sub") ||
      !c["sub"].is_string() || c["sub"].get<std::string>().empty())
    return false;
  double leeway = 30;
  if (static_cast<double>(now) >= c["exp"].get<double>() + leeway)
    return false;
  if (c.contains("nbf") && (!c["nbf"].is_number() || now + leeway < c["nbf"].get<double>()))
    return false;
  if (!c.contains("iss") || c["iss"] != "iss" || !c.contains("aud"))
    return false;
  const json& aud = c["aud"];
  if (aud.is_array()) {
    for (auto& a : aud)
      if (a == "aud")
        return true;
    return false;
  }
  return aud == "aud";
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input{reinterpret_cast<const char*>(data), size};

  auto outcome = w().auth->authenticate(&input, now);
  check(outcome.failure.has_value() != !outcome.user.empty());
  if (!outcome.failure) {
    auto token = bearer_token(input);
    check(token && *token == api_key && outcome.user == "alice");
  }

  check(!verify_jwt(input, *w().keys, w().policy, now).subject);

  auto signed_token = make_jwt(R"({"alg":"EdDSA","kid":"d"})", input, w().ed);
  auto verified = verify_jwt(signed_token, *w().keys, w().policy, now);
  if (signed_token.size() <= max_token_bytes) {
    // A duplicate member is refused by jwt.cpp and may be accepted by the plain parse.
    if (verified.subject)
      check(claims_acceptable(input) && !verified.subject->empty());
  } else {
    check(!verified.subject);
  }

  if (auto keys = jwt_keys::parse(input)) {
    check(!(*keys)->keys().empty());
    for (auto& k : (*keys)->keys())
      check(k.pkey != nullptr);
  }

  if (auto decoded = base64url_decode(input))
    check(base64url(*decoded) == input);
  return 0;
}
