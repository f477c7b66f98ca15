// The front end's TLS layer (see http_loop.hpp; OpenSSL in tls.hpp): with a certificate
// configured every accepted connection gets a tls_stream, and its reads and writes go
// through it; without one they are the plain socket calls (`receive` and `transmit` pick).
// A TLS connection, in the loop's terms:
//
//   accepted ── handshake step ──┬── want_read:  poll EPOLLIN ──┐
//      │          ▲              ├── want_write: poll EPOLLOUT ─┤
//      │          └──────────────┼──────────────────────────────┘
//      │                         ├── failed / peer gone: counted (tls_handshake_failures),
//      │                         │   dropped
//      │                         └── done: counted (tls_handshakes) ──► reading (the phases
//      │                                 of http_server.cpp, with TLS reads and writes)
//      └── not done within header_timeout (sweep): counted (tls_handshake_timeouts and
//          header_timeouts), dropped; while it lasts it is a connection without an exchange,
//          the first to be shed for a newcomer (http_admission.cpp)
//
//   reading / handling / streaming / flushing: SSL_read and SSL_write; a read that needs
//   the socket writable (or a write that needs it readable) adds that to the epoll interest
//   (tls_wants_write / tls_wants_read) until the next step.
//   lingering: close_notify sent if the socket takes it at once, then our FIN; what the peer
//   still sends is read raw and discarded (no decryption needed) until its FIN or 2 s.
//
// Output is one buffer per connection: a TLS write takes what plain HTTP would send in one
// go and cuts it into records. A reload builds a new context off the loop thread and swaps
// it in under `tls_mutex_`; connections keep the context they were made with (their SSL
// object holds a reference), so none is dropped.
//
// Thread-safety: the loop thread only, but for `reload_tls` (any thread).
#include <stdexcept>
#include <string>

#include "gateway/http_loop.hpp"
#include "gateway/logging.hpp"

namespace sshpool::gateway {

void http_server::loop::load_tls() {
  if (opts_.tls_cert_file.empty() && opts_.tls_key_file.empty())
    return;
  auto ctx = tls_context::load(opts_.tls_cert_file, opts_.tls_key_file);
  if (!ctx)
    throw std::invalid_argument{"tls: " + ctx.error().message()};
  tls_ = std::move(*ctx);
}

expected<void> http_server::loop::reload_tls() {
  {
    std::lock_guard<std::mutex> guard{tls_mutex_};
    if (!tls_)
      return {errc::invalid_argument, "tls: not configured (plain HTTP)"};
  }
  auto ctx = tls_context::load(opts_.tls_cert_file, opts_.tls_key_file);
  if (!ctx) {
    log_event(spdlog::level::err, "tls_reload_failed",
              {field("error", ctx.error().message()), field("kept", "the current certificate")});
    return ctx.error();
  }
  {
    std::lock_guard<std::mutex> guard{tls_mutex_};
    tls_ = std::move(*ctx);
  }
  log_event(spdlog::level::info, "tls_reloaded",
            {field("cert_file", opts_.tls_cert_file), field("key_file", opts_.tls_key_file)});
  return {};
}

bool http_server::loop::attach_tls(connection& c) {
  std::shared_ptr<const tls_context> ctx;
  {
    std::lock_guard<std::mutex> guard{tls_mutex_};
    ctx = tls_;
  }
  if (!ctx)
    return true;
  c.tls = tls_stream::make(*ctx, c.fd.get());
  return c.tls != nullptr;
}

bool http_server::loop::continue_handshake(connection& c) {
  auto step = c.tls->handshake();
  c.tls_wants_write = step == tls_io::want_write;
  switch (step) {
  case tls_io::done:
    owner_.counters_.tls_handshakes.fetch_add(1);
    if (log_enabled(spdlog::level::trace))
      log_event(spdlog::level::trace, "tls_established",
                {field("peer", c.peer), field("alpn", c.tls->alpn())});
    return true;
  case tls_io::want_read:
  case tls_io::want_write:
    return true;
  case tls_io::closed:
  case tls_io::failed:
    break;
  }
  owner_.counters_.tls_handshake_failures.fetch_add(1);
  if (log_enabled(spdlog::level::debug))
    log_event(spdlog::level::debug, "tls_handshake_failed",
              {field("peer", c.peer), field("error", c.tls->failure())});
  drop(c);
  return false;
}

net::recv_status http_server::loop::receive(connection& c, std::size_t& got) {
  if (!c.tls || c.ph == phase::lingering)
    return net::recv_some(c.fd.get(), read_buffer_.data(), read_buffer_.size(), got);
  auto step = c.tls->read(read_buffer_.data(), read_buffer_.size(), got);
  c.tls_wants_write = step == tls_io::want_write;
  switch (step) {
  case tls_io::done:
    return net::recv_status::data;
  case tls_io::want_read:
  case tls_io::want_write:
    return net::recv_status::would_block;
  case tls_io::closed:
    return net::recv_status::eof;
  case tls_io::failed:
    break;
  }
  log_event(spdlog::level::debug, "tls_read_failed",
            {field("peer", c.peer), field("error", c.tls->failure())});
  return net::recv_status::failed;
}

bool http_server::loop::transmit(connection& c, std::size_t& sent) {
  if (!c.tls)
    return net::send_pending(c.fd.get(), c.out, c.out_off, sent);
  sent = 0;
  c.tls_wants_read = false;
  while (c.out_off < c.out.size()) {
    std::size_t wrote = 0;
    switch (c.tls->write(c.out.data() + c.out_off, c.out.size() - c.out_off, wrote)) {
    case tls_io::done:
      c.out_off += wrote;
      sent += wrote;
      continue;
    case tls_io::want_read:
      c.tls_wants_read = true;
      return true;
    case tls_io::want_write:
      return true; // the unsent output keeps EPOLLOUT in the interest
    case tls_io::closed:
    case tls_io::failed:
      return false;
    }
  }
  return true;
}

} // namespace sshpool::gateway
