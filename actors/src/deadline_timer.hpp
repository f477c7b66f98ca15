// One timer at the earliest of several deadlines, on an actor's clock (so the unit tests run
// it in virtual time). A tick carries the generation it was armed with: arming an earlier
// deadline sends a new tick, and the older one, stale when it arrives, is ignored.
#pragma once

#include <algorithm>
#include <cstdint>

#include <caf/actor_clock.hpp>

namespace sshpool {

class deadline_timer {
public:
  using time_point = caf::actor_clock::time_point;

  /// Sends `atom` with a new generation to `self` at `deadline`, unless a tick is armed no
  /// later than that.
  template <class Self, class Atom>
  void arm(Self* self, time_point deadline, Atom atom) {
    if (deadline >= at_)
      return;
    at_ = deadline;
    auto delay = deadline - self->clock().now();
    self->delayed_send(self, std::max(delay, decltype(delay){0}), atom, ++generation_);
  }

  /// A tick of `generation` arrived: true if it is the armed one (now no longer armed),
  /// false for a stale one.
  bool fire(std::uint64_t generation) {
    if (generation != generation_)
      return false;
    at_ = time_point::max();
    return true;
  }

private:
  std::uint64_t generation_ = 0;
  time_point at_ = time_point::max();
};

} // namespace sshpool
