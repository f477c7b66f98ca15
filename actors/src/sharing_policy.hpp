// The engine's CAF scheduler policy `sharing` (engine_config::scheduler): one job queue for
// all scheduler threads, as CAF's own work_sharing, with two differences that matter when
// I/O threads (the reactors, a gateway's front end) hand the actors a message per event:
//
//   enqueue: lock, push, unlock, then wake a thread only if one sleeps (CAF's wakes under
//            the lock, so the woken thread blocks again at once on that lock: a second
//            futex round trip per hand-off), and no list node allocated per job;
//   dequeue: an empty queue is watched for a short while (up to tens of microseconds,
//            without the lock) before the thread sleeps on the condition variable: when jobs
//            come in quick succession (many small requests) the next one usually comes
//            within that, and neither side enters the kernel. The watch adapts, as glibc's
//            adaptive mutexes do: it doubles after a watch that found a job and halves after
//            one that did not, so that jobs spaced wider apart (a bulk stream's pieces) do
//            not keep a thread spinning on cores the I/O threads and the server need.
//
// Only the engine's own actor system uses it (engine.cpp installs it as the scheduler
// module); a service that brings its own actor system keeps its scheduler.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>

#include <caf/policy/unprofiled.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/coordinator.hpp>

namespace sshpool {

class sharing_policy : public caf::policy::unprofiled {
public:
  /// Looks at an empty queue at most this many times (a CPU pause each) before sleeping,
  /// at least `min_spin` (below it: not at all, but for a look every `probe_every` sleeps).
  static constexpr int max_spin = 1024;
  static constexpr int min_spin = 16;
  static constexpr int probe_every = 64;

  struct coordinator_data {
    explicit coordinator_data(caf::scheduler::abstract_coordinator*) {}
    std::mutex lock;
    std::condition_variable cv;
    std::deque<caf::resumable*> queue;
    /// Jobs queued (also read without the lock, as a hint) and threads asleep (the lock's).
    std::atomic<std::size_t> size{0};
    std::size_t sleepers = 0;
    /// The current watch (a hint shared by the threads: races only blur it).
    std::atomic<int> spin{max_spin};
    std::atomic<int> sleeps_unwatched{0};
  };

  struct worker_data {
    explicit worker_data(caf::scheduler::abstract_coordinator*) {}
  };

  template <class Coordinator>
  void central_enqueue(Coordinator* self, caf::resumable* job) {
    push(d(self), job);
  }

  template <class Worker>
  void external_enqueue(Worker* self, caf::resumable* job) {
    push(d(self->parent()), job);
  }

  template <class Worker>
  void internal_enqueue(Worker* self, caf::resumable* job) {
    push(d(self->parent()), job);
  }

  template <class Worker>
  void resume_job_later(Worker* self, caf::resumable* job) {
    push(d(self->parent()), job);
  }

  template <class Worker>
  caf::resumable* dequeue(Worker* self) {
    auto& q = d(self->parent());
    watch(q);
    std::unique_lock<std::mutex> guard{q.lock};
    while (q.queue.empty()) {
      ++q.sleepers;
      q.cv.wait(guard);
      --q.sleepers;
    }
    auto* job = q.queue.front();
    q.queue.pop_front();
    q.size.store(q.queue.size(), std::memory_order_relaxed);
    return job;
  }

  template <class Worker, class UnaryFunction>
  void foreach_resumable(Worker*, UnaryFunction) {
    // no queue per worker
  }

  template <class Coordinator, class UnaryFunction>
  void foreach_central_resumable(Coordinator* self, UnaryFunction f) {
    auto& q = d(self);
    std::unique_lock<std::mutex> guard{q.lock};
    while (!q.queue.empty()) {
      auto* job = q.queue.front();
      q.queue.pop_front();
      f(job);
    }
    q.size.store(0, std::memory_order_relaxed);
  }

private:
  static void push(coordinator_data& q, caf::resumable* job) {
    bool wake = false;
    {
      std::lock_guard<std::mutex> guard{q.lock};
      q.queue.push_back(job);
      q.size.store(q.queue.size(), std::memory_order_relaxed);
      wake = q.sleepers > 0;
    }
    if (wake)
      q.cv.notify_one();
  }

  /// Watches an empty queue for the current spin; adapts the spin to how that went.
  static void watch(coordinator_data& q) {
    if (q.size.load(std::memory_order_relaxed) != 0)
      return;
    auto spin = q.spin.load(std::memory_order_relaxed);
    if (spin < min_spin) {
      if (q.sleeps_unwatched.fetch_add(1, std::memory_order_relaxed) + 1 < probe_every)
        return;
      q.sleeps_unwatched.store(0, std::memory_order_relaxed);
      spin = min_spin;
    }
    int i = 0;
    while (i < spin && q.size.load(std::memory_order_relaxed) == 0) {
      pause();
      ++i;
    }
    bool found = i < spin;
    q.spin.store(found ? std::min(spin * 2, max_spin) : spin / 2, std::memory_order_relaxed);
  }

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
};

} // namespace sshpool
