// See tls.hpp.
#include "gateway/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cerrno>
#include <cstring>

namespace sshpool::gateway {

namespace {

/// The only protocol offered, in ALPN's wire format (length-prefixed).
constexpr unsigned char alpn_protocols[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

/// OpenSSL's reason for the last failure on this thread ("" if its queue is empty), and
/// the queue cleared.
std::string openssl_reason() {
  std::string reason;
  while (unsigned long code = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    reason = text; // the last one is the most specific
  }
  return reason;
}

/// ALPN: http/1.1 if the client offers it; otherwise the handshake goes on without ALPN
/// (what a client that offers nothing gets too).
int select_alpn(SSL*, const unsigned char** out, unsigned char* out_len, const unsigned char* in,
                unsigned int in_len, void*) {
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, out_len, alpn_protocols, sizeof alpn_protocols, in, in_len) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

/// Before an SSL call: nothing left from earlier calls in the error queue or errno.
void clear_errors() {
  ERR_clear_error();
  errno = 0;
}

expected<std::shared_ptr<const tls_context>> fail(const std::string& what) {
  return error{errc::invalid_argument, what + ": " + openssl_reason()};
}

int no_passphrase(char*, int, int, void*) {
  return 0;
}

} // namespace

expected<std::shared_ptr<const tls_context>> tls_context::load(const std::string& cert_file,
                                                               const std::string& key_file) {
  ERR_clear_error();
  SSL_CTX* raw = SSL_CTX_new(TLS_server_method());
  if (raw == nullptr)
    return fail("TLS context");
  std::shared_ptr<const tls_context> ctx{new tls_context(raw)};
  SSL_CTX_set_min_proto_version(raw, TLS1_2_VERSION);
  // Renegotiation is a cheap way to make a server compute; a clean EOF without close_notify
  // is an ordinary end of a connection, not an error.
  SSL_CTX_set_options(raw, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Writes may take part of a buffer (one record at a time) and be retried from a buffer
  // that moved (the output string grows and is compacted); idle connections give their
  // read and write buffers back.
  SSL_CTX_set_mode(raw, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_alpn_select_cb(raw, select_alpn, nullptr);
  // An encrypted key is refused at once, never asked for on a terminal (a service has none;
  // a reload would wait there for good).
  SSL_CTX_set_default_passwd_cb(raw, no_passphrase);
  if (SSL_CTX_use_certificate_chain_file(raw, cert_file.c_str()) != 1)
    return fail("cert_file " + cert_file);
  if (SSL_CTX_use_PrivateKey_file(raw, key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    return fail("key_file " + key_file);
  if (SSL_CTX_check_private_key(raw) != 1)
    return fail("key_file " + key_file + " does not match cert_file " + cert_file);
  return ctx;
}

tls_context::~tls_context() {
  SSL_CTX_free(ctx_);
}

std::unique_ptr<tls_stream> tls_stream::make(const tls_context& ctx, int fd) {
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx.native());
  if (ssl == nullptr) {
    ERR_clear_error();
    return nullptr;
  }
  std::unique_ptr<tls_stream> stream{new tls_stream(ssl)};
  if (SSL_set_fd(ssl, fd) != 1) {
    ERR_clear_error();
    return nullptr;
  }
  SSL_set_accept_state(ssl);
  return stream;
}

tls_stream::~tls_stream() {
  SSL_free(ssl_);
}

tls_io tls_stream::handshake() {
  clear_errors();
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    established_ = true;
    return tls_io::done;
  }
  return outcome(rc);
}

tls_io tls_stream::read(char* buf, std::size_t size, std::size_t& got) {
  got = 0;
  clear_errors();
  int rc = SSL_read_ex(ssl_, buf, size, &got);
  return rc == 1 ? tls_io::done : outcome(rc);
}

tls_io tls_stream::write(const char* data, std::size_t size, std::size_t& wrote) {
  wrote = 0;
  clear_errors();
  int rc = SSL_write_ex(ssl_, data, size, &wrote);
  return rc == 1 ? tls_io::done : outcome(rc);
}

void tls_stream::shutdown() noexcept {
  if (!established_)
    return;
  ERR_clear_error();
  SSL_shutdown(ssl_); // one attempt: the alert goes out if the socket takes it now
  ERR_clear_error();
}

std::string tls_stream::alpn() const {
  const unsigned char* name = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &name, &len);
  return name == nullptr ? std::string{} : std::string(reinterpret_cast<const char*>(name), len);
}

tls_io tls_stream::outcome(int rc) {
  int saved_errno = errno;
  switch (SSL_get_error(ssl_, rc)) {
  case SSL_ERROR_WANT_READ:
    return tls_io::want_read;
  case SSL_ERROR_WANT_WRITE:
    return tls_io::want_write;
  case SSL_ERROR_ZERO_RETURN:
    ERR_clear_error();
    return tls_io::closed;
  case SSL_ERROR_SYSCALL:
    if (ERR_peek_error() == 0) {
      failure_ = saved_errno != 0 ? std::strerror(saved_errno) : "connection closed by the peer";
      return saved_errno != 0 ? tls_io::failed : tls_io::closed;
    }
    failure_ = openssl_reason();
    return tls_io::failed;
  default:
    failure_ = openssl_reason();
    return tls_io::failed;
  }
}

} // namespace sshpool::gateway
