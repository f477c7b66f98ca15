// JWT verification with OpenSSL's EVP (see jwt.hpp).
#include "gateway/jwt.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <array>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

namespace sshpool::gateway {

namespace {

using json = nlohmann::json;

/// A key file larger than this is refused (a JWKS of a few dozen keys is far smaller).
constexpr std::size_t max_key_file_bytes = 1 << 20;
/// The smallest RSA modulus accepted.
constexpr int min_rsa_bits = 2048;

template <class T, void (*Free)(T*)>
struct deleter {
  void operator()(T* p) const { Free(p); }
};
using bio_ptr = std::unique_ptr<BIO, deleter<BIO, BIO_free_all>>;
using bn_ptr = std::unique_ptr<BIGNUM, deleter<BIGNUM, BN_free>>;
using pkey_ctx_ptr = std::unique_ptr<EVP_PKEY_CTX, deleter<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;
using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, deleter<EVP_MD_CTX, EVP_MD_CTX_free>>;
using param_bld_ptr = std::unique_ptr<OSSL_PARAM_BLD, deleter<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free>>;
using params_ptr = std::unique_ptr<OSSL_PARAM, deleter<OSSL_PARAM, OSSL_PARAM_free>>;
using sig_ptr = std::unique_ptr<ECDSA_SIG, deleter<ECDSA_SIG, ECDSA_SIG_free>>;

std::shared_ptr<EVP_PKEY> share(EVP_PKEY* p) {
  return p == nullptr ? nullptr : std::shared_ptr<EVP_PKEY>(p, EVP_PKEY_free);
}

error key_error(std::string message) {
  return {errc::invalid_argument, std::move(message)};
}

/// A JSON object with no duplicate member at its top level (a token with two `exp` or two
/// `alg` could mean different things to different readers); nullopt otherwise.
std::optional<json> parse_object(std::string_view text) {
  std::set<std::string> seen;
  bool duplicate = false;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 &&
        !seen.insert(parsed.get<std::string>()).second)
      duplicate = true;
    return true;
  };
  json doc = json::parse(text.begin(), text.end(), on_event, false);
  if (doc.is_discarded() || !doc.is_object() || duplicate)
    return std::nullopt;
  return doc;
}

/// The algorithm and the check of a public key's type: RSA >= 2048 bits, EC on P-256,
/// Ed25519.
std::optional<jwt_alg> alg_of_key(EVP_PKEY* pkey, std::string& why) {
  switch (EVP_PKEY_get_base_id(pkey)) {
  case EVP_PKEY_RSA:
    if (EVP_PKEY_get_bits(pkey) < min_rsa_bits) {
      why = "an RSA key needs at least 2048 bits";
      return std::nullopt;
    }
    return jwt_alg::rs256;
  case EVP_PKEY_EC: {
    std::array<char, 64> group{};
    std::size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group.data(), group.size(),
                                       &len) != 1 ||
        std::string_view{group.data(), len} != "prime256v1") {
      why = "an EC key must be on the P-256 curve";
      return std::nullopt;
    }
    return jwt_alg::es256;
  }
  case EVP_PKEY_ED25519:
    return jwt_alg::eddsa;
  default:
    why = "only RSA, EC P-256 and Ed25519 keys are supported";
    return std::nullopt;
  }
}

/// A public key from OpenSSL parameters (RSA n/e, or EC group and point).
std::shared_ptr<EVP_PKEY> key_from_params(const char* type, OSSL_PARAM_BLD* bld) {
  params_ptr params{OSSL_PARAM_BLD_to_param(bld)};
  pkey_ctx_ptr ctx{EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr)};
  EVP_PKEY* pkey = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
    return nullptr;
  auto shared = share(pkey);
  // An EC point must lie on its curve.
  pkey_ctx_ptr check{EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr)};
  if (!check || EVP_PKEY_public_check(check.get()) != 1)
    return nullptr;
  return shared;
}

/// A member of a JWK that must be a base64url string (of `size` bytes unless 0).
std::optional<std::string> jwk_bytes(const json& jwk, const char* name, std::size_t size = 0) {
  auto it = jwk.find(name);
  if (it == jwk.end() || !it->is_string())
    return std::nullopt;
  auto bytes = base64url_decode(it->get_ref<const std::string&>());
  if (!bytes || bytes->empty() || (size != 0 && bytes->size() != size))
    return std::nullopt;
  return bytes;
}

/// The public key of one JWK (RFC 7517/7518/8037): RSA n/e, EC P-256 x/y, OKP Ed25519 x.
expected<std::shared_ptr<EVP_PKEY>> jwk_key(const json& jwk) {
  auto kty = jwk.value("kty", std::string{});
  auto crv = jwk.value("crv", std::string{});
  if (kty == "RSA") {
    auto n = jwk_bytes(jwk, "n");
    auto e = jwk_bytes(jwk, "e");
    if (!n || !e)
      return key_error("an RSA key needs base64url n and e");
    param_bld_ptr bld{OSSL_PARAM_BLD_new()};
    bn_ptr bn_n{BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()),
                          static_cast<int>(n->size()), nullptr)};
    bn_ptr bn_e{BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()),
                          static_cast<int>(e->size()), nullptr)};
    if (!bld || !bn_n || !bn_e ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1)
      return key_error("an RSA key that OpenSSL cannot build");
    if (auto pkey = key_from_params("RSA", bld.get()))
      return pkey;
    return key_error("an RSA key that OpenSSL refuses");
  }
  if (kty == "EC") {
    auto x = jwk_bytes(jwk, "x", 32);
    auto y = jwk_bytes(jwk, "y", 32);
    if (crv != "P-256" || !x || !y)
      return key_error("an EC key needs crv P-256 and 32-byte base64url x and y");
    std::string point = "\x04" + *x + *y;
    param_bld_ptr bld{OSSL_PARAM_BLD_new()};
    if (!bld ||
        OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) !=
            1 ||
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                         point.size()) != 1)
      return key_error("an EC key that OpenSSL cannot build");
    if (auto pkey = key_from_params("EC", bld.get()))
      return pkey;
    return key_error("an EC point that is not on P-256");
  }
  if (kty == "OKP") {
    auto x = jwk_bytes(jwk, "x", 32);
    if (crv != "Ed25519" || !x)
      return key_error("an OKP key needs crv Ed25519 and a 32-byte base64url x");
    if (auto pkey = share(EVP_PKEY_new_raw_public_key(
            EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(x->data()),
            x->size())))
      return pkey;
    return key_error("an Ed25519 key that OpenSSL refuses");
  }
  return key_error("kty must be RSA, EC or OKP");
}

const char* alg_name(jwt_alg alg) {
  static constexpr std::array<const char*, 3> names = {"RS256", "ES256", "EdDSA"};
  return names[static_cast<std::size_t>(alg)];
}

expected<std::vector<jwt_keys::key>> parse_jwks(std::string_view content) {
  auto doc = parse_object(content);
  if (!doc)
    return key_error("malformed JSON (a JWKS is an object with \"keys\")");
  auto it = doc->find("keys");
  if (it == doc->end() || !it->is_array() || it->empty())
    return key_error("a JWKS needs a non-empty \"keys\" array");
  std::vector<jwt_keys::key> out;
  std::set<std::string> kids;
  for (std::size_t i = 0; i < it->size(); ++i) {
    const json& jwk = (*it)[i];
    std::string at = "keys[" + std::to_string(i) + "]: ";
    if (!jwk.is_object())
      return key_error(at + "must be an object");
    if (jwk.contains("use") && jwk["use"] != "sig")
      return key_error(at + "\"use\" must be \"sig\"");
    auto pkey = jwk_key(jwk);
    if (!pkey)
      return key_error(at + pkey.error().message());
    std::string why;
    auto alg = alg_of_key(pkey->get(), why);
    if (!alg)
      return key_error(at + why);
    if (jwk.contains("alg") && jwk["alg"] != alg_name(*alg))
      return key_error(at + "\"alg\" must be " + alg_name(*alg) + " for this key type");
    std::string kid;
    if (jwk.contains("kid")) {
      if (!jwk["kid"].is_string() || jwk["kid"].get_ref<const std::string&>().empty())
        return key_error(at + "\"kid\" must be a non-empty string");
      kid = jwk["kid"].get<std::string>();
      if (!kids.insert(kid).second)
        return key_error(at + "a second key with the same kid");
    }
    out.push_back({std::move(kid), *alg, std::move(*pkey)});
  }
  if (out.size() > 1)
    for (std::size_t i = 0; i < out.size(); ++i)
      if (out[i].kid.empty())
        return key_error("keys[" + std::to_string(i) +
                         "]: a JWKS with several keys needs a kid on each");
  return out;
}

/// ES256's JOSE signature (r || s, 32 bytes each) as the DER ECDSA-Sig-Value OpenSSL verifies.
std::optional<std::string> es256_der(const std::string& sig) {
  if (sig.size() != 64)
    return std::nullopt;
  auto bytes = reinterpret_cast<const unsigned char*>(sig.data());
  sig_ptr ecdsa{ECDSA_SIG_new()};
  BIGNUM* r = BN_bin2bn(bytes, 32, nullptr);
  BIGNUM* s = BN_bin2bn(bytes + 32, 32, nullptr);
  if (!ecdsa || r == nullptr || s == nullptr || ECDSA_SIG_set0(ecdsa.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return std::nullopt;
  }
  int len = i2d_ECDSA_SIG(ecdsa.get(), nullptr);
  if (len <= 0)
    return std::nullopt;
  std::string der(static_cast<std::size_t>(len), '\0');
  auto out = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_ECDSA_SIG(ecdsa.get(), &out) != len)
    return std::nullopt;
  return der;
}

bool verify_signature(const jwt_keys::key& key, std::string_view signed_part, std::string sig) {
  if (key.alg == jwt_alg::es256) {
    auto der = es256_der(sig);
    if (!der)
      return false;
    sig = std::move(*der);
  }
  md_ctx_ptr ctx{EVP_MD_CTX_new()};
  // EdDSA hashes internally (no digest); RS256 and ES256 use SHA-256 (PKCS#1 v1.5 padding
  // is RSA's default).
  const EVP_MD* md = key.alg == jwt_alg::eddsa ? nullptr : EVP_sha256();
  return ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key.pkey.get()) == 1 &&
         EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(signed_part.data()),
                          signed_part.size()) == 1;
}

std::optional<jwt_alg> alg_of_name(const std::string& name) {
  if (name == "RS256")
    return jwt_alg::rs256;
  if (name == "ES256")
    return jwt_alg::es256;
  if (name == "EdDSA")
    return jwt_alg::eddsa;
  return std::nullopt;
}

/// The claims' checks, once the signature verified.
jwt_outcome check_claims(const json& claims, const jwt_policy& policy, std::int64_t now) {
  auto refuse = [](jwt_refusal why) { return jwt_outcome{std::nullopt, why}; };
  auto exp = claims.find("exp");
  auto nbf = claims.find("nbf");
  auto sub = claims.find("sub");
  if (exp == claims.end() || !exp->is_number() || (nbf != claims.end() && !nbf->is_number()) ||
      sub == claims.end() || !sub->is_string() || sub->get_ref<const std::string&>().empty())
    return refuse(jwt_refusal::malformed);
  auto leeway = static_cast<double>(policy.leeway.count());
  auto at = static_cast<double>(now);
  if (at >= exp->get<double>() + leeway)
    return refuse(jwt_refusal::expired);
  if (nbf != claims.end() && at + leeway < nbf->get<double>())
    return refuse(jwt_refusal::not_yet_valid);
  auto iss = claims.find("iss");
  if (iss == claims.end() || *iss != policy.issuer)
    return refuse(jwt_refusal::wrong_issuer);
  auto aud = claims.find("aud");
  bool audience_ok = false;
  if (aud != claims.end() && aud->is_array())
    for (auto& a : *aud)
      audience_ok = audience_ok || a == policy.audience;
  else if (aud != claims.end())
    audience_ok = *aud == policy.audience;
  if (!audience_ok)
    return refuse(jwt_refusal::wrong_audience);
  return {sub->get<std::string>(), jwt_refusal::malformed};
}

} // namespace

const char* to_string(jwt_refusal r) noexcept {
  static constexpr std::array<const char*, jwt_refusal_count> names = {
      "malformed", "bad_algorithm", "unknown_key",  "bad_signature",
      "expired",   "not_yet_valid", "wrong_issuer", "wrong_audience"};
  auto i = static_cast<std::size_t>(r);
  return i < names.size() ? names[i] : "unknown";
}

std::optional<std::string> base64url_decode(std::string_view in) {
  if (in.size() % 4 == 1)
    return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t bits = 0;
  int held = 0;
  for (char c : in) {
    std::uint32_t v;
    if (c >= 'A' && c <= 'Z')
      v = static_cast<std::uint32_t>(c - 'A');
    else if (c >= 'a' && c <= 'z')
      v = static_cast<std::uint32_t>(c - 'a' + 26);
    else if (c >= '0' && c <= '9')
      v = static_cast<std::uint32_t>(c - '0' + 52);
    else if (c == '-')
      v = 62;
    else if (c == '_')
      v = 63;
    else
      return std::nullopt;
    bits = (bits << 6) | v;
    held += 6;
    if (held >= 8) {
      held -= 8;
      out.push_back(static_cast<char>((bits >> held) & 0xff));
    }
  }
  // What is left over (2 or 4 bits) must be zero.
  if ((bits & ((1u << held) - 1)) != 0)
    return std::nullopt;
  return out;
}

expected<std::shared_ptr<const jwt_keys>> jwt_keys::load(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return key_error("cannot read '" + path + "'");
  std::string content;
  content.resize(max_key_file_bytes + 1);
  in.read(content.data(), static_cast<std::streamsize>(content.size()));
  content.resize(static_cast<std::size_t>(in.gcount()));
  if (content.size() > max_key_file_bytes)
    return key_error("'" + path + "' is larger than 1 MiB");
  auto keys = parse(content);
  if (!keys)
    return key_error("'" + path + "': " + keys.error().message());
  return keys;
}

expected<std::shared_ptr<const jwt_keys>> jwt_keys::parse(std::string_view content) {
  auto set = std::make_shared<jwt_keys>();
  auto first = content.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && content[first] == '{') {
    auto keys = parse_jwks(content);
    if (!keys)
      return keys.error();
    set->keys_ = std::move(*keys);
    return std::shared_ptr<const jwt_keys>{std::move(set)};
  }
  bio_ptr bio{BIO_new_mem_buf(content.data(), static_cast<int>(content.size()))};
  auto pkey = share(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!pkey)
    return key_error("neither a JWKS nor a PEM public key (BEGIN PUBLIC KEY)");
  std::string why;
  auto alg = alg_of_key(pkey.get(), why);
  if (!alg)
    return key_error(why);
  set->keys_.push_back({{}, *alg, std::move(pkey)});
  return std::shared_ptr<const jwt_keys>{std::move(set)};
}

const jwt_keys::key* jwt_keys::choose(const std::string* kid) const {
  if (kid != nullptr)
    for (auto& k : keys_)
      if (k.kid == *kid)
        return &k;
  // A single key without a kid of its own is the key, whatever the token names.
  if (keys_.size() == 1 && keys_.front().kid.empty())
    return &keys_.front();
  return nullptr;
}

jwt_outcome verify_jwt(std::string_view token, const jwt_keys& keys, const jwt_policy& policy,
                       std::int64_t now) {
  auto refuse = [](jwt_refusal why) { return jwt_outcome{std::nullopt, why}; };
  auto dot1 = token.find('.');
  auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (token.size() > max_token_bytes || dot2 == std::string_view::npos ||
      token.find('.', dot2 + 1) != std::string_view::npos)
    return refuse(jwt_refusal::malformed);
  auto header_text = base64url_decode(token.substr(0, dot1));
  auto payload_text = base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  auto sig = base64url_decode(token.substr(dot2 + 1));
  if (!header_text || !payload_text || !sig || sig->empty())
    return refuse(jwt_refusal::malformed);
  auto header = parse_object(*header_text);
  if (!header || header->contains("crit"))
    return refuse(jwt_refusal::malformed);
  auto alg_it = header->find("alg");
  auto kid_it = header->find("kid");
  if (alg_it == header->end() || !alg_it->is_string() ||
      (kid_it != header->end() && !kid_it->is_string()))
    return refuse(jwt_refusal::malformed);
  auto alg = alg_of_name(alg_it->get<std::string>());
  if (!alg)
    return refuse(jwt_refusal::bad_algorithm);
  const jwt_keys::key* key =
      keys.choose(kid_it == header->end() ? nullptr : &kid_it->get_ref<const std::string&>());
  if (key == nullptr)
    return refuse(jwt_refusal::unknown_key);
  if (key->alg != *alg)
    return refuse(jwt_refusal::bad_algorithm);
  if (!verify_signature(*key, token.substr(0, dot2), std::move(*sig)))
    return refuse(jwt_refusal::bad_signature);
  auto claims = parse_object(*payload_text);
  if (!claims)
    return refuse(jwt_refusal::malformed);
  return check_claims(*claims, policy, now);
}

} // namespace sshpool::gateway
