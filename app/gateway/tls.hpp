// TLS for the front end (OpenSSL): a server context made from a certificate chain file and a
// private key file (TLS 1.2 and later, OpenSSL's default ciphers, ALPN http/1.1, no
// renegotiation), and the TLS layer of one non-blocking connection: the handshake, reads,
// writes and a best-effort close_notify, each reporting whether the socket must become
// readable or writable before the call can make progress (the loop turns that into its
// epoll interest; see http_tls.cpp). No call ever blocks.
//
// A context is immutable once loaded and shared: a connection's SSL object holds its own
// reference to the context it was made from, so replacing the context (a certificate reload)
// leaves live connections as they are.
//
// Thread-safety: `tls_context::load` from any thread; a context may be used by several
// threads; a `tls_stream` belongs to the thread of its connection. OpenSSL's error queue is
// per thread and cleared before every call.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include <openssl/types.h>

#include "sshpool/error.hpp"

namespace sshpool::gateway {

/// A server TLS context: certificate chain and key, TLS 1.2+, ALPN http/1.1.
class tls_context {
public:
  /// Loads the PEM certificate chain (the server's certificate first, then intermediates)
  /// and the PEM private key, and checks that they belong together. Blocking (reads the two
  /// files). Errors (invalid_argument) name the file and OpenSSL's reason; no key material
  /// is ever part of a message.
  static expected<std::shared_ptr<const tls_context>> load(const std::string& cert_file,
                                                           const std::string& key_file);

  ~tls_context();
  tls_context(const tls_context&) = delete;
  tls_context& operator=(const tls_context&) = delete;

  SSL_CTX* native() const noexcept { return ctx_; }

private:
  explicit tls_context(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
};

/// What a TLS call on a non-blocking socket came to.
enum class tls_io {
  /// The handshake is complete, or bytes were read / written.
  done,
  /// Nothing more until the socket is readable.
  want_read,
  /// Nothing more until the socket is writable.
  want_write,
  /// The peer closed the connection (close_notify or TCP FIN).
  closed,
  /// A protocol or socket error (`failure()` says which).
  failed,
};

/// The TLS layer of one accepted, non-blocking connection (server side).
class tls_stream {
public:
  /// A stream over `fd` (not owned) with `ctx`; nullptr if OpenSSL cannot make one.
  static std::unique_ptr<tls_stream> make(const tls_context& ctx, int fd);

  ~tls_stream();
  tls_stream(const tls_stream&) = delete;
  tls_stream& operator=(const tls_stream&) = delete;

  /// Whether the handshake is complete.
  bool established() const noexcept { return established_; }

  /// Advances the handshake: `done` once it is complete.
  tls_io handshake();

  /// Reads at most `size` application bytes into `buf`; `got` is set to the bytes read.
  tls_io read(char* buf, std::size_t size, std::size_t& got);

  /// Writes from `data` (`size` > 0 bytes); `wrote` is set to the bytes taken (partial
  /// writes: a record at a time). After want_read / want_write, call it again with the
  /// same bytes first (the buffer may have moved and grown).
  tls_io write(const char* data, std::size_t size, std::size_t& wrote);

  /// Sends close_notify if the socket takes it now; never waits for the peer's.
  void shutdown() noexcept;

  /// The protocol ALPN selected ("" if none).
  std::string alpn() const;

  /// Why the last call `failed` (OpenSSL's reason or the socket error).
  const std::string& failure() const noexcept { return failure_; }

private:
  explicit tls_stream(SSL* ssl) : ssl_(ssl) {}
  /// Maps the result `rc` of an SSL call to tls_io, recording a failure's reason.
  tls_io outcome(int rc);

  SSL* ssl_;
  bool established_ = false;
  std::string failure_;
};

} // namespace sshpool::gateway
