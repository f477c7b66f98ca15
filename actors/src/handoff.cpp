// The futex of the facade's hand-off (handoff.hpp).
#include "handoff.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ctime>

namespace sshpool::detail {

namespace {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "the futex word must be a plain 32-bit word");

long futex(std::atomic<std::uint32_t>& word, int op, std::uint32_t value, const timespec* timeout) {
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), op, value, timeout, nullptr,
                 0);
}

} // namespace

bool completion_flag::set() noexcept {
  auto before = state_.exchange(done);
  if (before == sleeping)
    futex(state_, FUTEX_WAKE_PRIVATE, 1, nullptr);
  return before != abandoned;
}

bool completion_flag::abandon() noexcept {
  return state_.exchange(abandoned) != done;
}

bool completion_flag::wait_until(std::chrono::steady_clock::time_point deadline) noexcept {
  using namespace std::chrono;
  for (;;) {
    auto seen = state_.load();
    if (seen == done)
      return true;
    auto left = deadline - steady_clock::now();
    if (left <= steady_clock::duration::zero())
      return false;
    if (seen == idle && !state_.compare_exchange_strong(seen, sleeping))
      continue; // set meanwhile
    // FUTEX_WAIT's timeout is relative, on the monotonic clock; it returns at once if the
    // word is no longer `sleeping` (set meanwhile), and may wake spuriously.
    auto secs = duration_cast<seconds>(left);
    timespec ts{static_cast<time_t>(secs.count()),
                static_cast<long>(duration_cast<nanoseconds>(left - secs).count())};
    futex(state_, FUTEX_WAIT_PRIVATE, sleeping, &ts);
  }
}

} // namespace sshpool::detail
