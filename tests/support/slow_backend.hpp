// Backend settings for streaming tests: a token stream paced slowly enough to act on mid-way.
#pragma once

#include <chrono>
#include <cstddef>

#include "backend/http_backend.hpp"

namespace sshpool::test {

/// A backend whose streams (/api/chat) send `tokens` tokens, one every `delay`.
inline demo::http_backend::options slow_stream(std::chrono::milliseconds delay,
                                               std::size_t tokens) {
  demo::http_backend::options o;
  o.token_delay = delay;
  o.tokens = tokens;
  return o;
}

} // namespace sshpool::test
