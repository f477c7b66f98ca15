// The engine's CAF scheduler policy (actors/src/sharing_policy.hpp) on real threads: every
// message sent from threads outside the actor system is handled, the scheduler threads sleep
// when there is nothing to do (the short watch of an empty queue never becomes a busy loop),
// and the system stops cleanly. A hosted loop (engine::host) shares the first thread with
// the actors: neither starves the other, a job queued wakes the loop's wait, and unhosting
// returns while it waits.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include <caf/all.hpp>

#include "sharing_policy.hpp"
#include "sshpool/engine.hpp"
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

namespace {

/// A service's event loop for engine::host: a pipe whose bytes it hands to an actor, and an
/// eventfd for its wake-ups and for the actor's answers (counted in `answers`). Its own
/// deadline is a minute away, so only `wake` (or a byte) ends a wait in time.
struct pipe_loop : sshpool::hosted_loop {
  pipe_loop() {
    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    REQUIRE(::pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC) == 0);
  }
  ~pipe_loop() override {
    ::close(wake_fd);
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
  }

  void run_once(int timeout_ms) override {
    runs.fetch_add(1);
    thread = std::this_thread::get_id();
    pollfd fds[2] = {{wake_fd, POLLIN, 0}, {pipe_fds[0], POLLIN, 0}};
    ::poll(fds, 2, timeout_ms < 0 ? 60'000 : timeout_ms);
    std::uint64_t count = 0;
    if (::read(wake_fd, &count, sizeof count) < 0)
      count = 0;
    char bytes[256];
    ssize_t got = 0;
    while ((got = ::read(pipe_fds[0], bytes, sizeof bytes)) > 0)
      for (ssize_t i = 0; i < got; ++i) {
        seen.fetch_add(1);
        if (echo)
          caf::anon_send(echo, int{bytes[i]});
      }
  }
  void wake() noexcept override {
    std::uint64_t one = 1;
    static_cast<void>(::write(wake_fd, &one, sizeof one));
  }
  void answer() {
    answers.fetch_add(1);
    wake();
  }
  void feed(int n) {
    std::string bytes(static_cast<std::size_t>(n), 'x');
    REQUIRE(::write(pipe_fds[1], bytes.data(), bytes.size()) == n);
  }

  int wake_fd = -1;
  int pipe_fds[2] = {-1, -1};
  caf::actor echo;
  std::atomic<int> runs{0}, seen{0}, answers{0};
  std::atomic<std::thread::id> thread;
};

sshpool::engine_config threads(std::size_t n) {
  sshpool::engine_config cfg;
  cfg.scheduler_threads = n;
  cfg.reactor_threads = 1;
  return cfg;
}

} // namespace

TEST_CASE("a hosted loop runs on the engine's scheduler thread between the actors' jobs",
          "[scheduler][host]") {
  for (std::size_t n : {std::size_t{1}, std::size_t{2}}) {
    CAPTURE(n);
    // What the actors touch outlives the engine (its destructor waits for them).
    pipe_loop loop;
    std::atomic<bool> same_thread{true};
    std::atomic<int> handled{0};
    std::atomic<bool> playing{true};
    std::atomic<int> plays{0};
    sshpool::engine eng{threads(n)};
    loop.echo = eng.system().spawn([&loop, &same_thread]() -> caf::behavior {
      return {[&loop, &same_thread](int) {
        // With one scheduler thread, the loop and the actor share it.
        if (loop.thread != std::this_thread::get_id())
          same_thread = false;
        loop.answer();
      }};
    });
    REQUIRE(eng.host(loop));
    CHECK(eng.host(loop).error().code() == sshpool::errc::invalid_argument);

    // Bytes to the loop, each to the actor and its answer back to the loop.
    loop.feed(200);
    CHECK(sshpool::test::eventually([&] { return loop.answers.load() == 200; }));
    if (n == 1)
      CHECK(same_thread.load());

    // Messages from outside threads are handled while the loop waits: a job queued wakes it.
    auto counter = eng.system().spawn(
        [&handled]() -> caf::behavior { return {[&handled](int) { handled.fetch_add(1); }}; });
    std::thread outside{[&counter] {
      for (int i = 0; i < 5000; ++i)
        caf::anon_send(counter, i);
    }};
    outside.join();
    CHECK(sshpool::test::eventually([&] { return handled.load() == 5000; }));

    // Jobs that never stop coming cannot starve the loop: pairs of actors play ping-pong,
    // so the queue always holds a job when the thread looks for the next one.
    auto player = [&playing, &plays](caf::event_based_actor* self) -> caf::behavior {
      return {[self, &playing, &plays](caf::actor& other) {
        plays.fetch_add(1, std::memory_order_relaxed);
        if (playing)
          self->send(other, caf::actor_cast<caf::actor>(self));
      }};
    };
    std::vector<caf::actor> players;
    for (int pair = 0; pair < 4; ++pair) {
      players.push_back(eng.system().spawn(player));
      players.push_back(eng.system().spawn(player));
      caf::anon_send(players[players.size() - 2], players.back());
    }
    REQUIRE(sshpool::test::eventually([&] { return plays.load() > 1000; }));
    int seen = loop.seen.load();
    loop.feed(10);
    CHECK(sshpool::test::eventually([&] { return loop.seen.load() == seen + 10; }));
    playing = false;
    for (auto& a : players)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);

    // Idle, the loop's wait is no busy loop.
    sshpool::test::hold_for(50ms);
    auto before = sshpool::test::cpu_seconds(getpid());
    sshpool::test::hold_for(300ms);
    CHECK(sshpool::test::cpu_seconds(getpid()) - before < 0.03);

    // Unhosted while it waits (a minute, but for a wake-up): it returns at once, the loop
    // runs no more, the actors go on.
    REQUIRE(sshpool::test::eventually([&] { return loop.answers.load() == 210; }));
    auto unhosting = std::chrono::steady_clock::now();
    eng.unhost();
    CHECK(std::chrono::steady_clock::now() - unhosting < 5s);
    int runs = loop.runs.load();
    int before_unhost = handled.load();
    caf::anon_send(counter, 0);
    CHECK(sshpool::test::eventually([&] { return handled.load() == before_unhost + 1; }));
    loop.feed(1);
    sshpool::test::hold_for(100ms);
    CHECK(loop.runs.load() == runs);
    // And it can be hosted again.
    REQUIRE(eng.host(loop));
    CHECK(sshpool::test::eventually([&] { return loop.answers.load() == 211; }));
    eng.unhost();
    for (auto* a : {&loop.echo, &counter})
      caf::anon_send_exit(*a, caf::exit_reason::user_shutdown);
  }
}

TEST_CASE("only an engine with its own sharing scheduler hosts a loop", "[scheduler][host]") {
  pipe_loop loop;
  auto cfg = threads(1);
  cfg.scheduler = sshpool::scheduler_policy::stealing;
  sshpool::engine eng{cfg};
  CHECK(eng.host(loop).error().code() == sshpool::errc::invalid_argument);
}

TEST_CASE("an engine stopped with a loop still hosted leaves it first", "[scheduler][host]") {
  pipe_loop loop;
  {
    sshpool::engine eng{threads(1)};
    REQUIRE(eng.host(loop));
    REQUIRE(sshpool::test::eventually([&] { return loop.runs.load() > 0; }));
  }
  // The destructor returned (the loop was left, though it waits a minute per run) and the
  // loop is not run any more.
  int runs = loop.runs.load();
  loop.feed(1);
  sshpool::test::hold_for(100ms);
  CHECK(loop.runs.load() == runs);
  CHECK(loop.seen.load() == 0);
}
