// The agent listener's host key file (see host_key.hpp).
#include "host_key.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "sshpool/ssh/key_check.hpp"
#include "sshpool/ssh/log.hpp"

namespace sshpool::ssh {

namespace {

std::string errno_text(int err) {
  return std::strerror(err);
}

/// Writes a new ed25519 key to `path` unless the file exists: the key goes to a temporary
/// file of mode 0600 in the same directory, which is then linked to `path` (atomic, and
/// never replacing a file). Returns the errno text of a failure, or empty.
std::string create_host_key(const std::string& path) {
  ssh_key raw = nullptr;
  if (ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &raw) != SSH_OK)
    return "cannot generate an ed25519 key";
  key_ptr key{raw};
  std::string temp = path + ".XXXXXX";
  int fd = ::mkostemp(temp.data(), O_CLOEXEC); // mode 0600
  if (fd < 0)
    return errno_text(errno);
  ::close(fd);
  std::string failure;
  if (ssh_pki_export_privkey_file(raw, nullptr, nullptr, nullptr, temp.c_str()) != SSH_OK)
    failure = "cannot write the key";
  else if (::link(temp.c_str(), path.c_str()) != 0 && errno != EEXIST)
    failure = errno_text(errno);
  ::unlink(temp.c_str());
  return failure;
}

} // namespace

expected<key_ptr> load_or_create_host_key(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT)
      return error{errc::invalid_argument,
                   "cannot read host key '" + path + "': " + errno_text(errno)};
    if (auto why = create_host_key(path); !why.empty())
      return error{errc::invalid_argument, "cannot create host key '" + path + "': " + why};
    log().warn("created the agent host key '{}' (ed25519)", path);
    if (::stat(path.c_str(), &st) != 0)
      return error{errc::invalid_argument,
                   "cannot read host key '" + path + "': " + errno_text(errno)};
  }
  if (!S_ISREG(st.st_mode))
    return error{errc::invalid_argument, "host key '" + path + "' is not a regular file"};
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%03o", static_cast<unsigned>(st.st_mode & 0777));
    return error{errc::invalid_argument, "host key '" + path + "' is accessible to group or " +
                                             "others (mode " + mode + "); chmod 600 it"};
  }
  auto key = load_private_key(path, "");
  if (!key)
    return key.error();
  if (ssh_key_type(key->get()) != SSH_KEYTYPE_ED25519)
    return error{errc::invalid_argument, "host key '" + path + "' is a " +
                                             ssh_key_type_to_char(ssh_key_type(key->get())) +
                                             " key, not ed25519"};
  return key;
}

std::string public_key_line(ssh_key key) {
  char* blob = nullptr;
  if (ssh_pki_export_pubkey_base64(key, &blob) != SSH_OK)
    return {};
  std::string line = std::string{ssh_key_type_to_char(ssh_key_type(key))} + ' ' + blob;
  ssh_string_free_char(blob);
  return line;
}

expected<host_key_identity> load_host_key_identity(const std::string& path) {
  auto key = load_or_create_host_key(path);
  if (!key)
    return key.error();
  return host_key_identity{key_fingerprint(key->get()), public_key_line(key->get())};
}

} // namespace sshpool::ssh
