// A certificate authority made at test time by the openssl CLI in a temporary directory, and
// the certificates it signs (never a key in the repository).
#pragma once

#include <string>

#include "support/os.hpp"

namespace sshpool::test {

/// A CA NAME.pem / NAME.key (P-256, unencrypted key, valid two days) in `dir`. Failures of
/// the openssl CLI throw std::runtime_error with its output.
class test_ca {
public:
  explicit test_ca(const temp_dir& dir, const std::string& name = "ca");

  /// Issues CERT.pem / CERT.key in the directory, signed by this CA, with common name `cn`
  /// and the subject alternative names localhost and 127.0.0.1.
  void issue(const std::string& cert, const std::string& cn) const;

  const temp_dir& dir;
  /// The CA's certificate (the trust anchor to hand to clients and peers).
  std::string ca;

private:
  std::string name_;
};

} // namespace sshpool::test
