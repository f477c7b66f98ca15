// The demo/test HTTP/1.1 backend's public face (see http_backend.hpp): it owns the server
// (server.hpp), whose loop runs on its own thread from construction until destruction.
//
// Why it is built this way: the integration tests and benchmarks need a peer that behaves
// like a real HTTP service (keep-alive, pipelining, every body framing, slow and streaming
// answers, huge bodies) while staying cheap enough to never be the bottleneck of a
// benchmark: one epoll loop, no thread per client (server.cpp), the routes apart
// (routes.cpp).
//
// Thread-safety: see http_backend.hpp.
#include "backend/http_backend.hpp"

#include "backend/server.hpp"

namespace sshpool::demo {

struct http_backend::impl {
  explicit impl(options opts) : srv(std::move(opts)) {}
  detail::server srv;
};

http_backend::http_backend(options opts) : impl_(std::make_unique<impl>(std::move(opts))) {}

http_backend::~http_backend() = default;

std::uint16_t http_backend::port() const {
  return impl_->srv.port();
}

std::uint64_t http_backend::requests_received() const {
  return impl_->srv.requests_received();
}

std::uint64_t http_backend::connections_accepted() const {
  return impl_->srv.connections_accepted();
}

std::size_t http_backend::open_connections() const {
  return impl_->srv.open_connections();
}

bool http_backend::wait_for_requests(std::uint64_t n, std::chrono::milliseconds timeout) const {
  return impl_->srv.wait_for_requests(n, timeout);
}

std::vector<recorded_request> http_backend::received() const {
  return impl_->srv.received();
}

} // namespace sshpool::demo
