// The gateway's client authentication on its own (no CAF, no network): strict base64url,
// JWTs signed at test time by RSA 2048, EC P-256 and Ed25519 keys (PEM and JWKS), every
// refusal of jwt.hpp, API keys, and the failures per source address.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "gateway/auth.hpp"
#include "gateway/jwt.hpp"
#include "gateway/settings.hpp"
#include "support/jwt_mint.hpp"

using namespace sshpool::gateway;
using sshpool::test::base64url;
using sshpool::test::make_hs256_jwt;
using sshpool::test::make_jwt;
using sshpool::test::signing_key;
using sshpool::test::unix_now;
using json = nlohmann::json;

namespace {

std::shared_ptr<const jwt_keys> keys_of(const std::string& content) {
  auto keys = jwt_keys::parse(content);
  INFO((keys ? std::string{} : keys.error().message()));
  REQUIRE(keys);
  return *keys;
}

jwt_policy policy() {
  jwt_policy p;
  p.issuer = "https://id.example";
  p.audience = "sshpool";
  p.leeway = std::chrono::seconds(30);
  return p;
}

/// Valid claims for alice, changed by `change`.
std::string claims(const json& change = json::object()) {
  json c = {{"sub", "alice"},
            {"iss", "https://id.example"},
            {"aud", "sshpool"},
            {"exp", unix_now() + 300},
            {"nbf", unix_now() - 10}};
  c.update(change);
  return c.dump();
}

std::string header(const signing_key& key, const json& change = json::object()) {
  json h = {{"alg", key.alg()}, {"typ", "JWT"}};
  h.update(change);
  return h.dump();
}

jwt_outcome verify(const std::string& token, const jwt_keys& keys) {
  return verify_jwt(token, keys, policy(), unix_now());
}

void refused(const jwt_outcome& out, jwt_refusal why) {
  CHECK_FALSE(out.subject);
  CHECK(out.refusal == why);
}

} // namespace

TEST_CASE("base64url is decoded strictly", "[auth][jwt]") {
  CHECK(base64url_decode("") == std::string{});
  CHECK(base64url_decode("aGVsbG8") == std::string{"hello"});
  CHECK(base64url_decode("-_8") == std::string{"\xfb\xff"});
  CHECK_FALSE(base64url_decode("aGVsbG8=")); // padding
  CHECK_FALSE(base64url_decode("aGVs+G8"));  // base64, not base64url
  CHECK_FALSE(base64url_decode("aGVsb"));    // 4n+1 characters
  CHECK_FALSE(base64url_decode("aGVsbG9"));  // unused bits not zero: a second encoding
  for (const std::string& s :
       {std::string{"x"}, std::string{"xy"}, std::string{"xyz"}, std::string(100, '\xff')})
    CHECK(base64url_decode(base64url(s)) == s);
}

TEST_CASE("JWTs signed by RSA, EC and Ed25519 keys verify against their PEM key", "[auth][jwt]") {
  for (auto kind : {signing_key::kind::rsa, signing_key::kind::ec, signing_key::kind::ed25519}) {
    signing_key key{kind};
    INFO(key.alg());
    auto keys = keys_of(key.public_pem());
    auto ok = verify(make_jwt(header(key), claims(), key), *keys);
    REQUIRE(ok.subject);
    CHECK(*ok.subject == "alice");
    // An array audience holding ours, a kid the single key ignores, within the leeway.
    CHECK(verify(make_jwt(header(key, {{"kid", "any"}}),
                          claims({{"aud", {"other", "sshpool"}}, {"exp", unix_now() - 10}}), key),
                 *keys)
              .subject);

    refused(verify(make_jwt(header(key), claims({{"exp", unix_now() - 31}}), key), *keys),
            jwt_refusal::expired);
    refused(verify(make_jwt(header(key), claims({{"nbf", unix_now() + 60}}), key), *keys),
            jwt_refusal::not_yet_valid);
    refused(verify(make_jwt(header(key), claims({{"iss", "https://evil.example"}}), key), *keys),
            jwt_refusal::wrong_issuer);
    refused(verify(make_jwt(header(key), claims({{"aud", {"other"}}}), key), *keys),
            jwt_refusal::wrong_audience);
    refused(verify(make_jwt(header(key), claims({{"aud", nullptr}}), key), *keys),
            jwt_refusal::wrong_audience);
    signing_key other{kind};
    refused(verify(make_jwt(header(key), claims(), other), *keys), jwt_refusal::bad_signature);
    // alg none: no signature at all, or a token with an empty one.
    auto none = base64url(header(key, {{"alg", "none"}})) + "." + base64url(claims());
    refused(verify(none + ".", *keys), jwt_refusal::malformed);
    refused(verify(none + "." + base64url("x"), *keys), jwt_refusal::bad_algorithm);
    // HS256 with the public key as the HMAC secret (the classic confusion attack).
    refused(
        verify(make_hs256_jwt(header(key, {{"alg", "HS256"}}), claims(), key.public_pem()), *keys),
        jwt_refusal::bad_algorithm);
    // A header naming another accepted algorithm than the key's type.
    const char* wrong = kind == signing_key::kind::rsa ? "ES256" : "RS256";
    refused(verify(make_jwt(header(key, {{"alg", wrong}}), claims(), key), *keys),
            jwt_refusal::bad_algorithm);
    refused(verify(make_jwt(header(key, {{"crit", {"exp"}}}), claims(), key), *keys),
            jwt_refusal::malformed);
    refused(verify(make_jwt(header(key), claims({{"sub", 7}}), key), *keys),
            jwt_refusal::malformed);
    refused(verify(make_jwt(header(key), claims({{"exp", nullptr}}), key), *keys),
            jwt_refusal::malformed);
  }
}

TEST_CASE("malformed and oversized tokens are refused before any signature check", "[auth][jwt]") {
  signing_key key{signing_key::kind::ed25519};
  auto keys = keys_of(key.public_pem());
  auto good = make_jwt(header(key), claims(), key);
  REQUIRE(verify(good, *keys).subject);
  for (std::string bad : {std::string{}, std::string{"a.b"}, good + ".x", "." + good,
                          good.substr(0, good.rfind('.')) + ".=="})
    refused(verify(bad, *keys), jwt_refusal::malformed);
  // Padding in a part, and a duplicate claim (two readers could see two subjects).
  refused(verify(base64url(header(key)) + "=." + good.substr(good.find('.') + 1), *keys),
          jwt_refusal::malformed);
  std::string twice = R"({"sub":"alice","sub":"bob","iss":"https://id.example","aud":"sshpool",)"
                      R"("exp":)" +
                      std::to_string(unix_now() + 300) + "}";
  refused(verify(make_jwt(header(key), twice, key), *keys), jwt_refusal::malformed);
  // Over 8 KiB, although validly signed.
  auto big = make_jwt(header(key), claims({{"pad", std::string(8192, 'p')}}), key);
  REQUIRE(big.size() > max_token_bytes);
  refused(verify(big, *keys), jwt_refusal::malformed);
  refused(verify(make_jwt("[1]", claims(), key), *keys), jwt_refusal::malformed);
}

TEST_CASE("a JWKS with several keys chooses the key by kid", "[auth][jwt]") {
  signing_key rsa{signing_key::kind::rsa};
  signing_key ec{signing_key::kind::ec};
  signing_key ed{signing_key::kind::ed25519};
  auto keys =
      keys_of(R"({"keys":[)" + rsa.jwk("r1") + "," + ec.jwk("e1") + "," + ed.jwk("d1") + "]}");
  REQUIRE(keys->keys().size() == 3);
  CHECK(verify(make_jwt(header(rsa, {{"kid", "r1"}}), claims(), rsa), *keys).subject);
  CHECK(verify(make_jwt(header(ec, {{"kid", "e1"}}), claims(), ec), *keys).subject);
  CHECK(verify(make_jwt(header(ed, {{"kid", "d1"}}), claims(), ed), *keys).subject);
  refused(verify(make_jwt(header(rsa), claims(), rsa), *keys), jwt_refusal::unknown_key);
  refused(verify(make_jwt(header(rsa, {{"kid", "r2"}}), claims(), rsa), *keys),
          jwt_refusal::unknown_key);
  // A kid of another key type's key: the algorithm does not fit the key.
  refused(verify(make_jwt(header(rsa, {{"kid", "e1"}}), claims(), rsa), *keys),
          jwt_refusal::bad_algorithm);
  // Ed25519's key used as an HMAC secret.
  refused(
      verify(make_hs256_jwt(header(ed, {{"alg", "HS256"}, {"kid", "d1"}}), claims(), ed.jwk("d1")),
             *keys),
      jwt_refusal::bad_algorithm);

  // One JWK with a kid: a token must name it.
  auto one = keys_of(R"({"keys":[)" + ed.jwk("d1") + "]}");
  CHECK(verify(make_jwt(header(ed, {{"kid", "d1"}}), claims(), ed), *one).subject);
  refused(verify(make_jwt(header(ed), claims(), ed), *one), jwt_refusal::unknown_key);
}

TEST_CASE("key files that cannot be trusted are refused with a reason", "[auth][jwt]") {
  signing_key ed{signing_key::kind::ed25519};
  signing_key ec{signing_key::kind::ec};
  auto fails = [](const std::string& content, const std::string& part) {
    auto keys = jwt_keys::parse(content);
    REQUIRE_FALSE(keys);
    INFO(keys.error().message());
    CHECK(keys.error().message().find(part) != std::string::npos);
  };
  fails("not a key", "neither a JWKS nor a PEM");
  fails(R"({"keys":[]})", "non-empty");
  fails(R"({"keys":[)" + ed.jwk("") + "," + ec.jwk("e") + "]}", "needs a kid on each");
  fails(R"({"keys":[)" + ed.jwk("a") + "," + ec.jwk("a") + "]}", "same kid");
  fails(R"({"keys":[{"kty":"oct","k":"c2VjcmV0"}]})", "kty");
  fails(R"({"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]})", "P-256");
  // A point that is not on the curve.
  fails(R"({"keys":[{"kty":"EC","crv":"P-256","x":")" + base64url(std::string(32, '\1')) +
            R"(","y":")" + base64url(std::string(32, '\2')) + R"("}]})",
        "not on P-256");
  auto with_alg = json::parse(ed.jwk("d"));
  with_alg["alg"] = "RS256";
  fails(R"({"keys":[)" + with_alg.dump() + "]}", "\"alg\" must be EdDSA");
}

TEST_CASE("the authenticator: API keys and JWTs decide the user", "[auth]") {
  signing_key ed{signing_key::kind::ed25519};
  gateway_config cfg;
  cfg.users.resize(2);
  cfg.users[0].name = "alice";
  cfg.users[0].api_keys_sha256 = {sha256_hex("alice-key-1"), sha256_hex("alice-key-2")};
  cfg.users[1].name = "bob";
  cfg.users[1].api_keys_sha256 = {sha256_hex("bob-key")};
  cfg.users[1].forward_authorization = true;
  authenticator plain{cfg};
  REQUIRE(plain.enabled());
  CHECK(authenticator{gateway_config{}}.enabled() == false);

  auto as = [](const authenticator& a, const std::string& value) {
    return a.authenticate(&value, unix_now());
  };
  CHECK(as(plain, "Bearer alice-key-2").user == "alice");
  CHECK(as(plain, "bearer   bob-key ").user == "bob");
  CHECK(as(plain, "Bearer wrong").failure == auth_failure::unknown_api_key);
  CHECK(as(plain, "Bearer wrong").token_presented);
  CHECK(as(plain, "Basic YWxpY2U6eA==").failure == failure_of(jwt_refusal::malformed));
  CHECK(as(plain, "Bearer two words").failure == failure_of(jwt_refusal::malformed));
  CHECK(as(plain, "Bearer").failure == failure_of(jwt_refusal::malformed));
  auto none = plain.authenticate(nullptr, unix_now());
  CHECK(none.failure == auth_failure::missing);
  CHECK_FALSE(none.token_presented);
  CHECK(plain.forwards_authorization("bob"));
  CHECK_FALSE(plain.forwards_authorization("alice"));
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

  cfg.jwt = jwt_settings{};
  cfg.jwt->policy = policy();
  cfg.jwt->keys = keys_of(ed.public_pem());
  authenticator with_jwt{cfg};
  CHECK(as(with_jwt, "Bearer " + make_jwt(header(ed), claims({{"sub", "bob"}}), ed)).user == "bob");
  CHECK(as(with_jwt, "Bearer " + make_jwt(header(ed), claims({{"sub", "carol"}}), ed)).failure ==
        auth_failure::unknown_user);
  CHECK(as(with_jwt, "Bearer " + make_jwt(header(ed), claims({{"exp", 1}}), ed)).failure ==
        failure_of(jwt_refusal::expired));
  CHECK(as(with_jwt, "Bearer alice-key-1").user == "alice");
}

TEST_CASE("failed authentications are limited per source address", "[auth]") {
  auth_rate_limiter limiter{{3, std::chrono::seconds(10), 2}};
  auto t0 = auth_rate_limiter::clock::now();
  using std::chrono::seconds;
  for (int i = 0; i < 3; ++i) {
    CHECK_FALSE(limiter.refused("10.0.0.1:1000", t0));
    limiter.failed("10.0.0.1:" + std::to_string(1000 + i), t0); // any port: one source
  }
  auto wait = limiter.refused("10.0.0.1:2000", t0 + seconds(4));
  REQUIRE(wait);
  CHECK(*wait == seconds(6));
  CHECK_FALSE(limiter.refused("10.0.0.2:1000", t0));               // another source
  CHECK_FALSE(limiter.refused("10.0.0.1:2000", t0 + seconds(10))); // the window ended

  // IPv6 sources count per /64; a mapped IPv4 address as the IPv4 one.
  CHECK(auth_source("2001:db8:1:2:aaaa::1:443") == "2001:db8:1:2::/64");
  CHECK(auth_source("2001:db8:1:2:bbbb::9:443") == "2001:db8:1:2::/64");
  CHECK(auth_source("::ffff:10.0.0.1:80") == "10.0.0.1");
  CHECK(auth_source("127.0.0.1:80") == "127.0.0.1");

  // Bounded: at most two sources; the one with the oldest window goes first.
  auth_rate_limiter small{{1, std::chrono::seconds(10), 2}};
  small.failed("10.0.0.1:1", t0);
  small.failed("10.0.0.2:1", t0 + seconds(1));
  small.failed("10.0.0.3:1", t0 + seconds(2));
  CHECK(small.sources() == 2);
  CHECK_FALSE(small.refused("10.0.0.1:1", t0 + seconds(3)));
  CHECK(small.refused("10.0.0.2:1", t0 + seconds(3)));
  CHECK(small.refused("10.0.0.3:1", t0 + seconds(3)));
}
