// JWTs minted by the tests with OpenSSL: keys generated at run time (RSA 2048, EC P-256,
// Ed25519), their public halves as PEM or JWK, and compact tokens signed by them (or
// forged: HS256 with a public key as the secret, alg none). Nothing here verifies.
//
// Thread-safety: a signing_key is immutable after construction.
#pragma once

#include <openssl/types.h>

#include <memory>
#include <string>
#include <string_view>

namespace sshpool::test {

/// Unpadded base64url of `data`.
std::string base64url(std::string_view data);

/// A private key generated now.
class signing_key {
public:
  enum class kind { rsa, ec, ed25519 };

  explicit signing_key(kind k);

  /// RS256, ES256 or EdDSA.
  const char* alg() const;
  /// The public key as PEM (BEGIN PUBLIC KEY).
  std::string public_pem() const;
  /// The public key as a JWK object (JSON text) with `kid` (none if empty).
  std::string jwk(const std::string& kid) const;
  /// The JOSE signature of `data` (ES256: r || s, 32 bytes each).
  std::string sign(std::string_view data) const;

private:
  kind kind_;
  std::shared_ptr<EVP_PKEY> pkey_;
};

/// header.payload.signature, both JSON texts base64url-encoded, signed by `key`.
std::string make_jwt(const std::string& header_json, const std::string& claims_json,
                     const signing_key& key);

/// The same signed with HMAC-SHA256 and `secret` (an alg confusion attack when the secret is
/// a public key).
std::string make_hs256_jwt(const std::string& header_json, const std::string& claims_json,
                           std::string_view secret);

/// Seconds since the Unix epoch, now.
long long unix_now();

} // namespace sshpool::test
