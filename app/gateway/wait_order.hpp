// The order in which the front end sheds client connections (http_admission.cpp): the
// connections without an exchange, the one that has waited longest first. An intrusive
// doubly linked list sorted by each member's `since`, so that finding the oldest is a
// look at the head rather than a scan of every connection; a connection is in two such
// orders at once (all of them, and those of its source), hence the link as a template
// argument. Members are placed at about the current time, so insertion walks back from
// the tail a step or two; `time_point::min()` (a connection that only waits for its peer's
// FIN) goes straight to the head.
//
// Thread-safety: none (the loop thread only).
#pragma once

#include <chrono>

namespace sshpool::gateway {

/// A member's place in one `wait_order`.
template <class T>
struct wait_link {
  T* prev = nullptr;
  T* next = nullptr;
  bool linked = false;
  std::chrono::steady_clock::time_point since;
};

/// Members of type T ordered by `since`, oldest first; equal ones in the order placed, but
/// for `time_point::min()`: each goes to the head, ahead of those placed before it.
template <class T, wait_link<T> T::*Link>
class wait_order {
public:
  using time_point = std::chrono::steady_clock::time_point;

  wait_order() = default;
  wait_order(const wait_order&) = delete;
  wait_order& operator=(const wait_order&) = delete;

  /// The member that has waited longest, or nullptr.
  T* oldest() const noexcept { return head_; }

  /// Puts `x` (in or not yet) at its place for `since`.
  void place(T& x, time_point since) noexcept {
    remove(x);
    auto& l = x.*Link;
    l.since = since;
    T* before = nullptr; // the member that `x` follows (nullptr: `x` becomes the head)
    if (since != time_point::min()) {
      before = tail_;
      while (before != nullptr && (before->*Link).since > since)
        before = (before->*Link).prev;
    }
    l.prev = before;
    l.next = before != nullptr ? (before->*Link).next : head_;
    (l.next != nullptr ? (l.next->*Link).prev : tail_) = &x;
    (before != nullptr ? (before->*Link).next : head_) = &x;
    l.linked = true;
  }

  /// Takes `x` out (nothing if it is not in).
  void remove(T& x) noexcept {
    auto& l = x.*Link;
    if (!l.linked)
      return;
    (l.prev != nullptr ? (l.prev->*Link).next : head_) = l.next;
    (l.next != nullptr ? (l.next->*Link).prev : tail_) = l.prev;
    l = wait_link<T>{};
  }

private:
  T* head_ = nullptr;
  T* tail_ = nullptr;
};

} // namespace sshpool::gateway
