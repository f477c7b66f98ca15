// libFuzzer target: sshpool-demo's configuration loader, load_config(args, env).
//
// The loader must never crash or throw, whatever the config file, the environment and the
// flags hold: it returns a configuration or an invalid_argument error with a message. A
// configuration it accepts must be valid (validate() passes, every user complete), and
// what --check-config prints for it (describe()) must load back, as a config file, into
// the same configuration: the effective configuration is shown faithfully. A violation
// calls __builtin_trap(), which libFuzzer reports.
//
// Input: the config file's content, then optionally NUL-separated entries: NAME=VALUE sets
// an environment variable, anything else (starting with '-' or without '=') is the next
// command-line argument. An empty file part means no --config. The loader only reads
// files by name, so the file lives in a per-process directory ($TMPDIR or /tmp) beside
// the key files the users can name (id_ed25519, a real private key generated at start, for
// the loader loads it; known_hosts; passphrase; authorized_keys, its public key, for agent
// users; jwt.pem, an Ed25519 public key, for the `jwt` object) and is rewritten in place for
// each input.
#include "gateway/settings.hpp"

#include <libssh/libssh.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "support/jwt_mint.hpp"

// Name resolution stays numeric: `listen` resolves its host with getaddrinfo, and a fuzzer
// must neither send DNS queries nor wait for them. This definition takes precedence over
// libc's (and the sanitizers' weak interceptor) for the whole process.
extern "C" int getaddrinfo(const char* node, const char* service, const addrinfo* hints,
                           addrinfo** res) {
  using fn = int (*)(const char*, const char*, const addrinfo*, addrinfo**);
  static const auto real = reinterpret_cast<fn>(dlsym(RTLD_NEXT, "getaddrinfo"));
  addrinfo numeric = hints != nullptr ? *hints : addrinfo{};
  numeric.ai_flags |= AI_NUMERICHOST;
  return real(node, service, &numeric, res);
}

namespace {

using namespace sshpool;
using namespace sshpool::fuzz;
using namespace sshpool::gateway;

/// A per-process directory ($TMPDIR or /tmp), removed at exit.
struct temp_dir {
  std::string path;

  temp_dir() {
    const char* tmp = std::getenv("TMPDIR");
    path =
        std::string{tmp != nullptr && *tmp != '\0' ? tmp : "/tmp"} + "/sshpool-fuzz-config.XXXXXX";
    check(::mkdtemp(path.data()) != nullptr);
  }
  ~temp_dir() { ::rmdir(path.c_str()); }
};

/// A file rewritten in place for each input, through a descriptor kept open. It is never
/// truncated to nothing: on ext4 that makes the next close (the loader's too) flush it to
/// disk, which would slow the fuzzer down a hundredfold.
struct scratch_file {
  std::string path;
  int fd;

  scratch_file(std::string file, std::string_view content)
      : path(std::move(file)), fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    check(fd >= 0);
    write(content);
  }
  ~scratch_file() {
    ::close(fd);
    ::unlink(path.c_str());
  }

  void write(std::string_view content) {
    check(::pwrite(fd, content.data(), content.size(), 0) == static_cast<ssize_t>(content.size()));
    check(::ftruncate(fd, static_cast<off_t>(content.size())) == 0);
  }
};

/// A new unencrypted ed25519 key: the private key in OpenSSH format, and its public key as
/// an authorized_keys line.
struct generated_key {
  std::string private_key;
  std::string authorized_line;

  generated_key() {
    ssh_key key = nullptr;
    char* text = nullptr;
    check(ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &key) == SSH_OK);
    check(ssh_pki_export_privkey_base64(key, nullptr, nullptr, nullptr, &text) == SSH_OK);
    private_key = text;
    ssh_string_free_char(text);
    check(ssh_pki_export_pubkey_base64(key, &text) == SSH_OK);
    authorized_line = std::string{"ssh-ed25519 "} + text + " fuzz\n";
    ssh_string_free_char(text);
    ssh_key_free(key);
  }
};

/// The config file, the file describe() is written to, and the key files.
struct workspace {
  temp_dir dir;
  generated_key generated;
  scratch_file key{dir.path + "/id_ed25519", generated.private_key};
  scratch_file authorized_keys{dir.path + "/authorized_keys", generated.authorized_line};
  scratch_file known_hosts{dir.path + "/known_hosts", "\n"};
  scratch_file passphrase{dir.path + "/passphrase", "secret\n"};
  scratch_file jwt_key{dir.path + "/jwt.pem",
                       test::signing_key{test::signing_key::kind::ed25519}.public_pem()};
  scratch_file config{dir.path + "/config.json", "{}"};
  scratch_file again{dir.path + "/again.json", "{}"};
};

workspace& work() {
  static workspace w;
  return w;
}

bool same_users(const gateway_config& x, const gateway_config& y) {
  if (x.users.size() != y.users.size())
    return false;
  for (std::size_t i = 0; i < x.users.size(); ++i) {
    auto &a = x.users[i], &b = y.users[i];
    auto &p = a.ep, &q = b.ep;
    if (a.name != b.name || a.passphrase_file != b.passphrase_file || p.host != q.host ||
        p.port != q.port || p.username != q.username || p.identity_file != q.identity_file ||
        p.passphrase != q.passphrase || p.known_hosts_file != q.known_hosts_file ||
        p.target_host != q.target_host || p.target_port != q.target_port ||
        p.server_nodelay != q.server_nodelay || p.ciphers != q.ciphers ||
        p.max_response_bytes != q.max_response_bytes || p.mode != q.mode ||
        p.authorized_keys_file != q.authorized_keys_file ||
        a.api_keys_sha256 != b.api_keys_sha256 ||
        a.forward_authorization != b.forward_authorization)
      return false;
  }
  return true;
}

/// Invariants of an accepted configuration, and its faithful --check-config form.
void check_accepted(const gateway_config& cfg) {
  check(validate(cfg.engine).has_value());
  check(!cfg.listen_host.empty() && cfg.max_request_header_bytes <= 80 * 1024);
  for (auto& u : cfg.users) {
    check(!u.name.empty() && u.ep.target_port != 0);
    if (u.ep.mode == endpoint_mode::agent)
      check(!u.ep.authorized_keys_file.empty() && !cfg.engine.agents.listen.empty() &&
            !cfg.engine.agents.host_key_file.empty() && u.ep.host.empty() &&
            u.ep.identity_file.empty() && u.ep.known_hosts_file.empty());
    else
      check(!u.ep.host.empty() && !u.ep.username.empty() && !u.ep.identity_file.empty() &&
            !u.ep.known_hosts_file.empty() && u.ep.port != 0 && u.ep.authorized_keys_file.empty());
  }
  check(!cfg.jwt || (cfg.jwt->keys != nullptr && !cfg.jwt->keys->keys().empty()));
  const std::string shown = describe(cfg);
  work().again.write(shown);
  auto reloaded = load_config({"--config", work().again.path}, [](const char*) { return nullptr; });
  check(reloaded.has_value());
  check(describe(reloaded->config) == shown);
  check(same_users(cfg, reloaded->config));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input{reinterpret_cast<const char*>(data), size};
  std::size_t end = input.find('\0');
  const std::string_view file = input.substr(0, end);
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
  if (!file.empty()) {
    work().config.write(file);
    args = {"--config", work().config.path};
  }
  while (end != std::string_view::npos) {
    std::size_t start = end + 1;
    end = input.find('\0', start);
    std::string entry{input.substr(start, end == std::string_view::npos ? end : end - start)};
    auto eq = entry.find('=');
    // The fuzzer names no config file of its own: it would read whatever file it found.
    if (entry == "--config" || entry.rfind("--config=", 0) == 0)
      continue;
    if (entry.empty() || entry[0] == '-' || eq == std::string::npos)
      args.push_back(std::move(entry));
    else
      env[entry.substr(0, eq)] = entry.substr(eq + 1);
  }

  auto loaded = load_config(args, [&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
  if (!loaded) {
    check(loaded.error().code() == errc::invalid_argument && !loaded.error().message().empty());
    return 0;
  }
  if (loaded->action != config_action::help)
    check_accepted(loaded->config);
  return 0;
}
