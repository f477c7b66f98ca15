// Durations in whole milliseconds, as the tests print and compare them.
#pragma once

#include <chrono>

namespace sshpool::test {

/// `d` in whole milliseconds.
inline long long ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

/// Whole milliseconds from `start` to now.
inline long long ms_since(std::chrono::steady_clock::time_point start) {
  return ms(std::chrono::steady_clock::now() - start);
}

} // namespace sshpool::test
