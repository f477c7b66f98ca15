// fd and thread counts of the test process before a scenario, compared after it.
#pragma once

#include <catch2/catch.hpp>

#include <cstddef>

#include "support/process_info.hpp"
#include "support/timing.hpp"

namespace sshpool::test {

/// Takes the counts at construction; `check()` after the engine is gone. In-process backends
/// close the sockets of killed peers on their own schedule (a /slow timer, for instance),
/// and a thread that was joined or ended may still be listed in /proc/self/task for a
/// moment (seen under ASan); the kernel offers no event for "count back to N", so the
/// check polls for a bounded time.
struct leak_check {
  std::size_t fds = open_fd_count();
  std::size_t threads = thread_count();
  void check() const {
    eventually([this] { return open_fd_count() == fds && thread_count() == threads; });
    CHECK(open_fd_count() == fds);
    CHECK(thread_count() == threads);
  }
};

} // namespace sshpool::test
