// Requests and bodies as the tests build them, and how a forward's result is printed in a
// test's failure message. Header-only and without CAF: the unit tests of the HTTP framing
// use it as well as the integration, fault, security and soak tests.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include "sshpool/error.hpp"
#include "sshpool/types.hpp"

namespace sshpool::test {

/// A request with a correlation id and a body, without headers.
inline request make_request(std::string id, std::string method, std::string path,
                            std::string body = {}) {
  request req;
  req.id = std::move(id);
  req.method = std::move(method);
  req.path = std::move(path);
  req.body = std::move(body);
  return req;
}

/// A GET of `path` with a correlation id.
inline request get(std::string id, std::string path) {
  return make_request(std::move(id), "GET", std::move(path));
}

/// A request with headers and a body, without a correlation id (the validation tests').
inline request build_request(std::string method, std::string path, header_list headers = {},
                             std::string body = {}) {
  auto req = make_request({}, std::move(method), std::move(path), std::move(body));
  req.headers = std::move(headers);
  return req;
}

/// `n` bytes of the test backend's body pattern from byte `offset` on: byte i is
/// 'a' + i % 26 (http_backend's /bytes, /chunked, /close and /echo of such a body).
inline std::string pattern(std::size_t n, std::size_t offset = 0) {
  std::string result(n, '\0');
  for (std::size_t i = 0; i < n; ++i)
    result[i] = static_cast<char>('a' + (offset + i) % 26);
  return result;
}

/// "status N" for a response, the error (code and message) otherwise.
inline std::string describe(const expected<response>& res) {
  return res ? "status " + std::to_string(res->status) : res.error().to_string();
}

} // namespace sshpool::test
