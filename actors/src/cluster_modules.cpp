// What a cluster node's actor system needs: CAF's middleman and OpenSSL manager, with the
// cluster's certificate, key and CA (mutual TLS), and the middleman's own heartbeat. Also
// the checks the engine runs before it starts a node.
//
// CAF 0.17.6's OpenSSL module, with openssl_certificate / openssl_key / openssl_cafile set
// (authentication_enabled), makes every connection TLS 1.2 with SSL_VERIFY_PEER |
// SSL_VERIFY_FAIL_IF_NO_PEER_CERT on both sides: a peer without a certificate, or with one
// not signed by the cluster CA, fails the handshake and never reaches the actors. There is
// no host name check: the CA must be the cluster's own.
//
// It has a flaw this file repairs: its session calls SSL_get_error() after SSL_read,
// SSL_write, SSL_connect and SSL_accept without emptying the thread's OpenSSL error queue
// first, and leaves the queue filled when a handshake fails. OpenSSL's SSL_get_error needs
// an empty queue: with a refused peer's entry still queued, the next SSL_read of a good
// connection on the same I/O thread that merely has nothing to read reports SSL_ERROR_SSL,
// and CAF closes that connection. Every peer refused for its certificate would cut a
// member's connection (the refusal test of tests/cluster/test_cluster_members.cpp shows
// it). The four definitions below take the place of libssl's in the whole process (the
// dynamic linker finds the executable's first) and empty the queue before calling libssl's
// own, as OpenSSL's manual asks of every caller.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>

#include "cluster.hpp"
#include "sshpool/engine.hpp"

namespace sshpool {

namespace {

/// OpenSSL's last error as text (and the queue emptied).
std::string ssl_error() {
  std::string text;
  while (auto code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    text += (text.empty() ? "" : "; ") + std::string{buf};
  }
  return text.empty() ? "unknown error" : text;
}

/// libssl's own definition of `name` (the next one after this executable's).
template <class Fn>
Fn libssl(const char* name) {
  auto* fn = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
  if (!fn) {
    std::fprintf(stderr, "sshpool: %s not found in libssl\n", name);
    std::abort();
  }
  return fn;
}

} // namespace

} // namespace sshpool

extern "C" {

int SSL_read(SSL* ssl, void* buf, int num) {
  static auto next = sshpool::libssl<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return next(ssl, buf, num);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static auto next = sshpool::libssl<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return next(ssl, buf, num);
}

int SSL_connect(SSL* ssl) {
  static auto next = sshpool::libssl<int (*)(SSL*)>("SSL_connect");
  ERR_clear_error();
  return next(ssl);
}

int SSL_accept(SSL* ssl) {
  static auto next = sshpool::libssl<int (*)(SSL*)>("SSL_accept");
  ERR_clear_error();
  return next(ssl);
}

} // extern "C"

namespace sshpool {

void add_cluster_modules(caf::actor_system_config& cfg, const cluster_config& cluster) {
  cfg.load<caf::io::middleman>();
  cfg.load<caf::openssl::manager>();
  cfg.openssl_certificate = cluster.cert_file;
  cfg.openssl_key = cluster.key_file;
  cfg.openssl_cafile = cluster.ca_file;
  // The middleman's own heartbeat (off by default in 0.17.6): it closes a connection that
  // has been silent for connection-timeout, so that a node cut off leaves no stale route
  // behind and its next dial makes a fresh connection. The cluster actor's probe decides
  // membership; TCP alone would notice a cut only after minutes.
  cfg.set("middleman.heartbeat-interval", caf::timespan{cluster.heartbeat_interval});
  cfg.set("middleman.connection-timeout", caf::timespan{cluster.heartbeat_timeout});
}

expected<void> check_cluster_system(caf::actor_system& sys) {
  if (!sys.has_middleman())
    return {errc::invalid_argument,
            "cluster: the actor system has no middleman (use add_cluster_modules)"};
  if (!sys.has_openssl_manager())
    return {errc::invalid_argument,
            "cluster: the actor system has no OpenSSL manager (use add_cluster_modules)"};
  if (!sys.openssl_manager().authentication_enabled() || sys.config().openssl_cafile.empty())
    return {errc::invalid_argument, "cluster: the actor system's OpenSSL manager does not "
                                    "authenticate peers (use add_cluster_modules)"};
  return {};
}

expected<void> check_tls_files(const cluster_config& cfg) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx{SSL_CTX_new(TLS_method()), SSL_CTX_free};
  if (!ctx)
    return {errc::internal, "cluster: cannot create a TLS context: " + ssl_error()};
  ERR_clear_error();
  // An encrypted key fails here instead of prompting on the terminal (the key must be
  // unencrypted: CAF reads it for every connection).
  SSL_CTX_set_default_passwd_cb(ctx.get(), [](char*, int, int, void*) { return 0; });
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cfg.cert_file.c_str()) != 1)
    return {errc::invalid_argument,
            "cluster.cert_file " + cfg.cert_file + ": cannot load: " + ssl_error()};
  // Never the key's content in a message: only its path and OpenSSL's reason. Loaded after
  // the certificate, the key is also checked against it ("key values mismatch").
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), cfg.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    return {errc::invalid_argument,
            "cluster.key_file " + cfg.key_file + ": cannot load: " + ssl_error()};
  if (SSL_CTX_load_verify_locations(ctx.get(), cfg.ca_file.c_str(), nullptr) != 1)
    return {errc::invalid_argument,
            "cluster.ca_file " + cfg.ca_file + ": cannot load: " + ssl_error()};
  return {};
}

} // namespace sshpool
