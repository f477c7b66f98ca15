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
// A hosted loop (engine::host, sshpool/engine.hpp): an event loop of the embedding service
// (the gateway's front end) runs on the first scheduler thread, between jobs, instead of on
// a thread of its own. Work that crosses between it and the actors then stays on one
// thread: no wake-up, no context switch. That thread:
//
//   jobs queued: runs them, and the loop without waiting (run_once(0)) every `loop_every`
//                jobs, so that a stream of jobs cannot starve the loop's sockets;
//   no job:      lets the loop wait (run_once(-1): until one of its descriptors or
//                deadlines, or `wake`; at once when one is ready): a job queued meanwhile
//                by another thread wakes it through the loop's `wake` instead of the
//                condition variable (also when other threads sleep, if the jobs outnumber
//                them). No watch of the empty queue first: with the loop's sockets to
//                serve, the watch cost a third more CPU per request where several gateways
//                share the cores (the cluster benchmark).
//
// A job the loop queues from its run_once wakes no thread: the same thread runs it next.
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

#include "sshpool/engine.hpp"

namespace sshpool {

class sharing_policy : public caf::policy::unprofiled {
public:
  /// Looks at an empty queue at most this many times (a CPU pause each) before sleeping,
  /// at least `min_spin` (below it: not at all, but for a look every `probe_every` sleeps).
  static constexpr int max_spin = 1024;
  static constexpr int min_spin = 16;
  static constexpr int probe_every = 64;
  /// A hosted loop runs (without waiting) at least once per this many jobs.
  static constexpr int loop_every = 16;

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
    /// The hosted loop (nullptr: none; set and cleared under the lock, read without it as a
    /// hint) and whether its thread waits in it (the lock's).
    std::atomic<hosted_loop*> loop{nullptr};
    bool loop_waiting = false;
    /// Held while the loop runs: `unhost` takes it to know the loop is left.
    std::mutex loop_running;
    /// Jobs run since the loop last ran (its thread's).
    int jobs_since_loop = 0;
  };

  /// Runs `loop` on the first scheduler thread from now on (see above); false if a loop is
  /// hosted already.
  static bool host(coordinator_data& q, hosted_loop& loop) {
    std::lock_guard<std::mutex> guard{q.lock};
    if (q.loop != nullptr)
      return false;
    q.loop = &loop;
    q.cv.notify_all(); // the first thread may sleep on the condition variable
    return true;
  }

  /// Stops running the hosted loop; returns once its thread has left it; false if no loop
  /// was hosted.
  static bool unhost(coordinator_data& q) {
    hosted_loop* loop = nullptr;
    {
      std::lock_guard<std::mutex> guard{q.lock};
      loop = q.loop.exchange(nullptr);
      if (loop != nullptr && q.loop_waiting)
        loop->wake();
    }
    std::lock_guard<std::mutex> wait_for_it{q.loop_running};
    return loop != nullptr;
  }

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
    bool first = self->id() == 0;
    for (;;) {
      if (first && q.loop.load(std::memory_order_relaxed) != nullptr)
        if (auto* job = dequeue_hosting(q))
          return job;
      watch(q);
      std::unique_lock<std::mutex> guard{q.lock};
      // The first thread leaves its sleep when a loop is hosted (host() wakes every thread).
      while (q.queue.empty() && !(first && q.loop != nullptr)) {
        ++q.sleepers;
        q.cv.wait(guard);
        --q.sleepers;
      }
      if (!q.queue.empty())
        return pop(q);
    }
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
  /// The scheduler whose hosted loop this thread is running (its run_once): a job it queues
  /// there needs no wake-up, the thread takes it when run_once returns.
  static inline thread_local const coordinator_data* in_loop_of = nullptr;

  static caf::resumable* pop(coordinator_data& q) {
    auto* job = q.queue.front();
    q.queue.pop_front();
    q.size.store(q.queue.size(), std::memory_order_relaxed);
    return job;
  }

  static caf::resumable* try_pop(coordinator_data& q) {
    if (q.size.load(std::memory_order_relaxed) == 0)
      return nullptr;
    std::lock_guard<std::mutex> guard{q.lock};
    return q.queue.empty() ? nullptr : pop(q);
  }

  /// Runs the hosted loop once, if one is hosted.
  static void run_loop(coordinator_data& q, int timeout_ms) {
    if (q.loop.load(std::memory_order_relaxed) == nullptr)
      return;
    std::lock_guard<std::mutex> running{q.loop_running};
    hosted_loop* loop = nullptr;
    {
      std::lock_guard<std::mutex> guard{q.lock};
      loop = q.loop;
    }
    if (loop == nullptr)
      return;
    q.jobs_since_loop = 0;
    in_loop_of = &q;
    loop->run_once(timeout_ms);
    in_loop_of = nullptr;
  }

  /// The first thread's dequeue while a loop is hosted: jobs, and the loop between them (see
  /// above); nullptr once no loop is hosted and no job is queued.
  static caf::resumable* dequeue_hosting(coordinator_data& q) {
    for (;;) {
      if (auto* job = try_pop(q)) {
        if (++q.jobs_since_loop >= loop_every)
          run_loop(q, 0);
        return job;
      }
      std::unique_lock<std::mutex> guard{q.lock};
      if (!q.queue.empty())
        return pop(q);
      if (q.loop == nullptr)
        return nullptr;
      q.loop_waiting = true;
      guard.unlock();
      run_loop(q, -1);
      guard.lock();
      q.loop_waiting = false;
    }
  }

  static void push(coordinator_data& q, caf::resumable* job) {
    bool wake = false;
    {
      std::lock_guard<std::mutex> guard{q.lock};
      q.queue.push_back(job);
      q.size.store(q.queue.size(), std::memory_order_relaxed);
      if (in_loop_of == &q)
        return; // the loop's own thread takes it next
      wake = q.sleepers > 0;
      // The loop's thread too while the sleeping threads may all be woken already (a
      // sleeper counts until it runs again). Its wake-up (an eventfd write) under the lock:
      // `unhost` clears the loop under it too, so a loop is never woken once it is gone
      // (`unhost` woke it: its thread is on its way out of it and sees the job).
      if (q.loop_waiting && q.queue.size() > q.sleepers)
        if (auto* loop = q.loop.load(std::memory_order_relaxed))
          loop->wake();
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
