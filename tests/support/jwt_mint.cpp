// Minting test JWTs with OpenSSL (see jwt_mint.hpp).
#include "support/jwt_mint.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <chrono>
#include <stdexcept>

namespace sshpool::test {

namespace {

void require(bool ok, const char* what) {
  if (!ok)
    throw std::runtime_error{std::string{"OpenSSL: "} + what};
}

std::string bytes_of(const BIGNUM* bn, int size = 0) {
  std::string out(static_cast<std::size_t>(size > 0 ? size : BN_num_bytes(bn)), '\0');
  auto p = reinterpret_cast<unsigned char*>(out.data());
  require((size > 0 ? BN_bn2binpad(bn, p, size) : BN_bn2bin(bn, p)) >= 0, "BN_bn2bin");
  return out;
}

std::string bn_param(EVP_PKEY* pkey, const char* name, int size = 0) {
  BIGNUM* bn = nullptr;
  require(EVP_PKEY_get_bn_param(pkey, name, &bn) == 1, name);
  std::string out = bytes_of(bn, size);
  BN_free(bn);
  return out;
}

} // namespace

std::string base64url(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()),
                          static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n));
  while (!out.empty() && out.back() == '=')
    out.pop_back();
  for (char& c : out)
    c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

signing_key::signing_key(kind k) : kind_(k) {
  EVP_PKEY* raw = k == kind::rsa  ? EVP_RSA_gen(2048)
                  : k == kind::ec ? EVP_EC_gen("P-256")
                                  : EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  require(raw != nullptr, "key generation");
  pkey_.reset(raw, EVP_PKEY_free);
}

const char* signing_key::alg() const {
  return kind_ == kind::rsa ? "RS256" : kind_ == kind::ec ? "ES256" : "EdDSA";
}

std::string signing_key::public_pem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  require(bio != nullptr && PEM_write_bio_PUBKEY(bio, pkey_.get()) == 1, "PEM_write_bio_PUBKEY");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out{data, static_cast<std::size_t>(len)};
  BIO_free(bio);
  return out;
}

std::string signing_key::jwk(const std::string& kid) const {
  std::string members;
  if (kind_ == kind::rsa) {
    members = "\"kty\":\"RSA\",\"n\":\"" + base64url(bn_param(pkey_.get(), OSSL_PKEY_PARAM_RSA_N)) +
              "\",\"e\":\"" + base64url(bn_param(pkey_.get(), OSSL_PKEY_PARAM_RSA_E)) + "\"";
  } else if (kind_ == kind::ec) {
    members = "\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" +
              base64url(bn_param(pkey_.get(), OSSL_PKEY_PARAM_EC_PUB_X, 32)) + "\",\"y\":\"" +
              base64url(bn_param(pkey_.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 32)) + "\"";
  } else {
    std::string raw(32, '\0');
    std::size_t len = raw.size();
    require(EVP_PKEY_get_raw_public_key(pkey_.get(), reinterpret_cast<unsigned char*>(raw.data()),
                                        &len) == 1,
            "EVP_PKEY_get_raw_public_key");
    members = "\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"" + base64url(raw) + "\"";
  }
  if (!kid.empty())
    members += ",\"kid\":\"" + kid + "\"";
  return "{" + members + "}";
}

std::string signing_key::sign(std::string_view data) const {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const EVP_MD* md = kind_ == kind::ed25519 ? nullptr : EVP_sha256();
  std::size_t len = 0;
  require(ctx != nullptr && EVP_DigestSignInit(ctx, nullptr, md, nullptr, pkey_.get()) == 1,
          "EVP_DigestSignInit");
  auto in = reinterpret_cast<const unsigned char*>(data.data());
  require(EVP_DigestSign(ctx, nullptr, &len, in, data.size()) == 1, "EVP_DigestSign");
  std::string sig(len, '\0');
  require(
      EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, in, data.size()) == 1,
      "EVP_DigestSign");
  EVP_MD_CTX_free(ctx);
  sig.resize(len);
  if (kind_ != kind::ec)
    return sig;
  auto p = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* ecdsa = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
  require(ecdsa != nullptr, "d2i_ECDSA_SIG");
  std::string jose = bytes_of(ECDSA_SIG_get0_r(ecdsa), 32) + bytes_of(ECDSA_SIG_get0_s(ecdsa), 32);
  ECDSA_SIG_free(ecdsa);
  return jose;
}

std::string make_jwt(const std::string& header_json, const std::string& claims_json,
                     const signing_key& key) {
  std::string signed_part = base64url(header_json) + "." + base64url(claims_json);
  return signed_part + "." + base64url(key.sign(signed_part));
}

std::string make_hs256_jwt(const std::string& header_json, const std::string& claims_json,
                           std::string_view secret) {
  std::string signed_part = base64url(header_json) + "." + base64url(claims_json);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  require(HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
               reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(), mac,
               &len) != nullptr,
          "HMAC");
  return signed_part + "." + base64url({reinterpret_cast<const char*>(mac), len});
}

long long unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

} // namespace sshpool::test
