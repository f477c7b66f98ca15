// JSON Web Tokens (RFC 7519) as the gateway accepts them: compact JWS (RFC 7515) signed with
// RS256 (RSA >= 2048 bits), ES256 (P-256) or EdDSA (Ed25519), verified with OpenSSL's EVP
// against configured keys only (a PEM public key, or a JWKS file whose keys are chosen by
// `kid`); never a key the token names or carries (jku, jwk, x5u are ignored).
//
// A token is refused, by the first reason that applies:
//   malformed       over max_token_bytes, not three base64url parts (strict, unpadded), a
//                   header or payload that is not a JSON object, a duplicate member, a
//                   `crit` header, no `exp` or `sub`, a claim of the wrong type
//   bad_algorithm   `alg` other than RS256, ES256, EdDSA (none, HS*, ...), or not the one of
//                   the chosen key's type (or of the JWKS key's own `alg`)
//   unknown_key     no `kid` while the JWKS has several keys, or a `kid` no key has
//   bad_signature   the signature does not verify
//   expired         now >= exp + leeway
//   not_yet_valid   now + leeway < nbf
//   wrong_issuer    `iss` is not the configured issuer
//   wrong_audience  `aud` (a string, or an array of strings) does not hold the audience
// The signature is checked before any claim is read.
//
// Thread-safety: a loaded key set is immutable and may be shared between threads; the
// functions are pure.
#pragma once

#include <openssl/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sshpool/error.hpp"

namespace sshpool::gateway {

/// The longest token accepted (its compact form), in bytes.
inline constexpr std::size_t max_token_bytes = 8192;

/// Why a token was refused (see the top of this file).
enum class jwt_refusal {
  malformed,
  bad_algorithm,
  unknown_key,
  bad_signature,
  expired,
  not_yet_valid,
  wrong_issuer,
  wrong_audience,
};

inline constexpr std::size_t jwt_refusal_count = 8;

/// The snake_case name of `r` ("bad_signature", ...).
const char* to_string(jwt_refusal r) noexcept;

/// The signature algorithms accepted, one per key type.
enum class jwt_alg { rs256, es256, eddsa };

/// Strict unpadded base64url (RFC 4648 section 5): nullopt for any other character, padding,
/// a length of 4n+1, or unused trailing bits that are not zero (one encoding per value).
std::optional<std::string> base64url_decode(std::string_view in);

/// The verification keys: one PEM public key, or the keys of a JWKS file.
class jwt_keys {
public:
  /// One key, its type and its `kid` (empty: none).
  struct key {
    std::string kid;
    jwt_alg alg;
    std::shared_ptr<EVP_PKEY> pkey;
  };

  /// Reads `path`: a JWKS (a JSON object with "keys") or a PEM public key (RSA of at least
  /// 2048 bits, EC P-256 or Ed25519). Errors (invalid_argument) say what is wrong with which
  /// key, never quoting the file.
  static expected<std::shared_ptr<const jwt_keys>> load(const std::string& path);

  /// Parses the content of a key file (see `load`).
  static expected<std::shared_ptr<const jwt_keys>> parse(std::string_view content);

  const std::vector<key>& keys() const { return keys_; }

  /// The key a token's header chooses (`kid` null: none given), or unknown_key.
  const key* choose(const std::string* kid) const;

private:
  std::vector<key> keys_;
};

/// What a token must satisfy besides its signature.
struct jwt_policy {
  std::string issuer;
  std::string audience;
  std::chrono::seconds leeway{30};
};

/// The outcome of a verification: the subject, or why the token was refused.
struct jwt_outcome {
  std::optional<std::string> subject;
  jwt_refusal refusal = jwt_refusal::malformed;
};

/// Verifies `token` (compact form) against `keys` and `policy` at `now` (seconds since the
/// Unix epoch). Never throws.
jwt_outcome verify_jwt(std::string_view token, const jwt_keys& keys, const jwt_policy& policy,
                       std::int64_t now);

} // namespace sshpool::gateway
