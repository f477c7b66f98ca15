// The reconnect backoff of a user's pool: after failed handshakes, the next one waits a delay
// drawn with full jitter. Plain C++ (no CAF): the user_pool actor and plain unit tests use it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

#include "sshpool/errc.hpp"

namespace sshpool {

/// Whether a failed handshake is a refusal that retrying soon will not change (the key, the
/// host key or the settings are wrong).
inline bool is_refusal(errc code) {
  return code == errc::auth_failed || code == errc::host_key_unknown ||
         code == errc::host_key_mismatch || code == errc::host_key_revoked ||
         code == errc::invalid_argument;
}

/// The bounds, both included, of the delay before the next handshake.
struct backoff_bounds {
  std::chrono::milliseconds low{0};
  std::chrono::milliseconds high{0};
};

/// The bounds after `failures` (at least 1) failures in a row: [0, min(cap, base *
/// 2^(failures - 1))], or [cap / 2, cap] after a refusal.
inline backoff_bounds backoff_range(std::uint32_t failures, bool refusal,
                                    std::chrono::milliseconds base, std::chrono::milliseconds cap) {
  if (refusal)
    return {cap / 2, cap};
  auto doublings = std::min<std::uint32_t>(failures > 0 ? failures - 1 : 0, 20);
  return {std::chrono::milliseconds{0},
          std::min<std::chrono::milliseconds>(cap, base * (1LL << doublings))};
}

/// A delay drawn uniformly from backoff_range (full jitter).
template <class Rng>
std::chrono::milliseconds backoff_delay(std::uint32_t failures, bool refusal,
                                        std::chrono::milliseconds base,
                                        std::chrono::milliseconds cap, Rng& rng) {
  auto range = backoff_range(failures, refusal, base, cap);
  std::uniform_int_distribution<long long> jitter{range.low.count(), range.high.count()};
  return std::chrono::milliseconds{jitter(rng)};
}

} // namespace sshpool
