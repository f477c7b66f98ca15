// The engine's CAF scheduler policy (actors/src/sharing_policy.hpp) on real threads: every
// message sent from threads outside the actor system is handled, the scheduler threads sleep
// when there is nothing to do (the short watch of an empty queue never becomes a busy loop),
// and the system stops cleanly.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include <caf/all.hpp>

#include "sharing_policy.hpp"
#include "support/process_info.hpp"
#include "support/timing.hpp"

using namespace std::chrono_literals;

namespace {

/// An actor system scheduled by the engine's policy, as engine.cpp installs it.
struct sharing_config : caf::actor_system_config {
  explicit sharing_config(std::size_t threads) {
    set("scheduler.max-threads", threads);
    module_factories.push_back([](caf::actor_system& sys) -> caf::actor_system::module* {
      return new caf::scheduler::coordinator<sshpool::sharing_policy>(sys);
    });
  }
};

} // namespace

TEST_CASE("the sharing policy runs every message sent from outside and sleeps when idle",
          "[scheduler]") {
  for (std::size_t threads : {std::size_t{1}, std::size_t{2}}) {
    CAPTURE(threads);
    sharing_config cfg{threads};
    caf::actor_system sys{cfg};
    constexpr int senders = 4;
    constexpr int per_sender = 20000;
    std::atomic<int> handled{0};
    std::vector<caf::actor> targets;
    for (int i = 0; i < 8; ++i)
      targets.push_back(sys.spawn([&handled]() -> caf::behavior {
        return {[&handled](int) { handled.fetch_add(1, std::memory_order_relaxed); }};
      }));
    std::vector<std::thread> threads_out;
    for (int s = 0; s < senders; ++s)
      threads_out.emplace_back([&targets, s] {
        for (int i = 0; i < per_sender; ++i)
          caf::anon_send(targets[static_cast<std::size_t>(s + i) % targets.size()], i);
      });
    for (auto& t : threads_out)
      t.join();
    CHECK(sshpool::test::eventually([&] { return handled.load() == senders * per_sender; }));
    // Idle: a thread that kept watching the queue would use the whole 300 ms.
    auto before = sshpool::test::cpu_seconds(getpid());
    sshpool::test::hold_for(300ms);
    CHECK(sshpool::test::cpu_seconds(getpid()) - before < 0.03);
    for (auto& a : targets)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }
}
