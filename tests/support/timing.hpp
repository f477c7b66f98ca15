// Durations in whole milliseconds, as the tests print and compare them, and the bounded
// polling for conditions that no event announces.
#pragma once

#include <chrono>
#include <thread>

namespace sshpool::test {

/// `d` in whole milliseconds.
inline long long ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

/// Whole milliseconds from `start` to now.
inline long long ms_since(std::chrono::steady_clock::time_point start) {
  return ms(std::chrono::steady_clock::now() - start);
}

/// Polls `probe` every 20 ms until it returns true; false if it still does not after `limit`.
/// For conditions that no event announces to the test, such as a counter in another process
/// or the kernel's count of a process's threads reaching a value.
template <class Probe>
bool eventually(Probe probe, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!probe()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

} // namespace sshpool::test
