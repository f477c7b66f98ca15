// Private key files. libssh reports every failure of ssh_pki_import_privkey_file alike;
// the reasons are told apart by a first import without a passphrase whose callback only
// records that a passphrase was asked for: libssh asks for one exactly when the file is an
// encrypted key it can read (OpenSSH, PEM and PKCS#8 formats alike).
#include "key_loader.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "sshpool/ssh/key_check.hpp"

namespace sshpool::ssh {

namespace {

/// libssh's passphrase callback: records the question and gives no answer.
int note_question(const char*, char*, std::size_t, int, int, void* asked) {
  *static_cast<bool*>(asked) = true;
  return -1;
}

/// Why `path` cannot be read (libssh says only that it could not).
std::string read_failure(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr)
    return std::strerror(errno);
  std::fclose(f);
  return "unreadable";
}

} // namespace

std::string key_fingerprint(ssh_key key) {
  unsigned char* hash = nullptr;
  std::size_t hash_len = 0;
  std::string result = "unknown";
  if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hash_len) == 0) {
    if (char* text = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hash_len)) {
      result = text;
      ssh_string_free_char(text);
    }
    ssh_clean_pubkey_hash(&hash);
  }
  return result;
}

expected<key_ptr> load_private_key(const std::string& path, const std::string& passphrase) {
  ssh_key raw = nullptr;
  bool asked = false;
  int rc = ssh_pki_import_privkey_file(path.c_str(), nullptr, note_question, &asked, &raw);
  if (rc == SSH_OK)
    return key_ptr{raw};
  if (rc == SSH_EOF)
    return error{errc::invalid_argument,
                 "cannot read private key '" + path + "': " + read_failure(path)};
  if (!asked)
    return error{errc::invalid_argument, "'" + path +
                                             "' is not a private key (not one in "
                                             "OpenSSH, PEM or PKCS#8 format)"};
  if (passphrase.empty())
    return error{errc::invalid_argument,
                 "private key '" + path + "' is encrypted, and no passphrase was given"};
  if (ssh_pki_import_privkey_file(path.c_str(), passphrase.c_str(), nullptr, nullptr, &raw) !=
      SSH_OK)
    return error{errc::invalid_argument,
                 "wrong passphrase for private key '" + path + "' (it does not decrypt it)"};
  return key_ptr{raw};
}

expected<void> check_private_key(const std::string& path, const std::string& passphrase) {
  auto key = load_private_key(path, passphrase);
  if (!key)
    return key.error();
  return {};
}

} // namespace sshpool::ssh
