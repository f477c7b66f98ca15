// Durations in whole milliseconds, as the tests print and compare them; the bounded
// polling for conditions that no event announces; and the intervals that a scenario itself
// asks for (an outage, a pace, a stall), named as such.
#pragma once

#include <algorithm>
#include <chrono>
#include <thread>

namespace sshpool::test {

/// How often `eventually`, `settled` and a watched `hold_for` look.
inline constexpr std::chrono::milliseconds poll_interval{20};

/// `d` in whole milliseconds.
inline long long ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

/// Whole milliseconds from `start` to now.
inline long long ms_since(std::chrono::steady_clock::time_point start) {
  return ms(std::chrono::steady_clock::now() - start);
}

/// Polls `probe` every `poll_interval` until it returns true; false if it still does not
/// after `limit`. For conditions that no event announces to the test, such as a counter in
/// another process or the kernel's count of a process's threads reaching a value.
template <class Probe>
bool eventually(Probe probe, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!probe()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(poll_interval);
  }
  return true;
}

/// Polls `value` until it is non-zero and the same over 10 polls in a row: a flow that
/// stalled, every buffer on its way full (bytes waiting in a socket that nobody reads).
/// Returns that value, or 0 if it did not settle within 20 s.
template <class Value>
auto settled(Value value) {
  decltype(value()) last{};
  int same = 0;
  bool done = eventually(
      [&] {
        auto now = value();
        same = now == last && now != decltype(now){} ? same + 1 : 0;
        last = now;
        return same >= 10;
      },
      std::chrono::seconds(20));
  return done ? last : decltype(last){};
}

/// Lets `d` pass: an interval that the scenario itself is made of (an outage of N seconds,
/// an attacker's or a load's pace, a stall longer than a deadline), never a wait for
/// something to happen (await that: its event, or `eventually`). Callers name the interval.
inline void hold_for(std::chrono::steady_clock::duration d) {
  std::this_thread::sleep_for(d);
}

/// `hold_for(d)`, calling `watch` every `poll_interval` meanwhile and once at its end: for
/// what must hold throughout the interval, such as a count that must never pass a cap.
template <class Watch>
void hold_for(std::chrono::steady_clock::duration d, Watch watch) {
  const auto until = std::chrono::steady_clock::now() + d;
  for (auto now = std::chrono::steady_clock::now(); now < until;
       now = std::chrono::steady_clock::now()) {
    watch();
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(poll_interval, until - now));
  }
  watch();
}

} // namespace sshpool::test
