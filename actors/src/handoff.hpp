// The facade's hand-off (engine.cpp, forward.cpp): how a thread that is not an actor
// sends a request to the engine's actors and gets the reply without a scoped_actor.
//
// The request names as its sender a reply receiver: a minimal actor with no mailbox, no
// behavior and no thread. The actor that answers (a connection, a pool through the
// supervisor's delegation, the supervisor) calls the receiver's enqueue on its own scheduler
// thread, and the receiver hands the reply to its completion right there: the waiter of a
// blocking call (which wakes the calling thread through a futex), a future's promise, or a
// callback. A request to an actor that already ended comes back at once as an error reply
// (CAF's sec::request_receiver_down, on the sending thread: the caller's, for a facade
// call); a request dropped unanswered (a promise never delivered, the actor system went
// down) releases the last reference to its receiver, which then completes with no reply:
// every completion runs exactly once.
//
//               the reply enqueued (on the answering actor's thread)
//   waiting ──────────────────────────────────────────────────────► completed(reply)
//      │ the last reference dropped unanswered (on the thread that drops it)
//      └──────────────────────────────────────────────────────────► completed(nullptr)
//
// A blocking caller waits on a completion_flag, which settles who owns the reply when the
// reply and the caller's deadline meet:
//
//   idle ── wait_until ──► sleeping (until set, the deadline, or a spurious wake-up)
//    │ set                   │ set (one FUTEX_WAKE)    │ (from either) the deadline passed:
//    ▼                       ▼                         ▼ abandon
//   done: the reply is the caller's         abandoned: set returns false, the reply is the
//                                           completion's (a late lease goes back)
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include <caf/actor_cast.hpp>
#include <caf/actor_config.hpp>
#include <caf/actor_system.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/make_actor.hpp>
#include <caf/message_id.hpp>
#include <caf/monitorable_actor.hpp>
#include <caf/response_type.hpp>

#include "call_traits.hpp"
#include "sshpool/error.hpp"
#include "sshpool/messages.hpp"

namespace sshpool::detail {

/// A one-shot event between two threads: one sets it once, the other waits for it with a
/// deadline and may then give up. A futex word, no lock: `set` makes a system call only if
/// the waiter sleeps.
class completion_flag {
public:
  /// Marks the event; wakes the waiter if it sleeps. Everything written before is visible
  /// to the waiter once its wait returned true (or its `abandon` false). False if the
  /// waiter gave up first: what the event brings is then the setter's to dispose of.
  bool set() noexcept;

  /// Waits until the event is set (true) or `deadline` passed (false), on the steady clock.
  bool wait_until(std::chrono::steady_clock::time_point deadline) noexcept;

  /// The waiter gives up after `wait_until` returned false. True if the event had not come
  /// (`set` will return false); false if it came meanwhile: it is the waiter's after all.
  bool abandon() noexcept;

private:
  static constexpr std::uint32_t idle = 0;
  static constexpr std::uint32_t sleeping = 1;
  static constexpr std::uint32_t done = 2;
  static constexpr std::uint32_t abandoned = 3;
  std::atomic<std::uint32_t> state_{idle};
};

/// The sender of one facade request (see the top of this file). `Complete` is called once,
/// with the reply's mailbox element, or with nullptr if the request was dropped unanswered.
template <class Complete>
class reply_receiver final : public caf::monitorable_actor {
public:
  reply_receiver(caf::actor_config& cfg, Complete complete)
      : caf::monitorable_actor(cfg), complete_(std::move(complete)) {}

  using caf::monitorable_actor::enqueue;

  /// Called by the answering actor; anything but a response is ignored.
  void enqueue(caf::mailbox_element_ptr what, caf::execution_unit*) override {
    if (what && what->mid.is_response() && !completed_.exchange(true))
      complete_(std::move(what));
  }

  /// The last reference is gone: a request never answered completes with nullptr.
  void on_destroy() override {
    if (!completed_.exchange(true))
      complete_(nullptr);
    caf::monitorable_actor::on_destroy();
  }

private:
  Complete complete_;
  std::atomic<bool> completed_{false};
};

/// Sends `xs` to `dest` as a request whose reply goes to `complete` (see reply_receiver);
/// from any thread, never blocking. An empty `dest` completes at once with nullptr.
template <class Handle, class Complete, class... Ts>
void send_request(caf::actor_system& sys, const Handle& dest, Complete complete, Ts&&... xs) {
  static_assert(caf::response_type<typename Handle::signatures, std::decay_t<Ts>...>::valid,
                "the actor does not take this request");
  caf::actor_config cfg;
  auto receiver = caf::make_actor<reply_receiver<Complete>, caf::strong_actor_ptr>(
      sys.next_actor_id(), sys.node(), &sys, cfg, std::move(complete));
  if (!dest)
    return; // the receiver goes away unanswered here
  // A request ID of its own: the receiver takes one request.
  caf::actor_cast<caf::abstract_actor*>(dest)->enqueue(
      caf::make_mailbox_element(std::move(receiver), caf::make_message_id(std::uint64_t{1}), {},
                                std::forward<Ts>(xs)...),
      nullptr);
}

/// Calls `on_value` with the values of `content` if they are of types `As...`.
template <class OnValue, class... As, std::size_t... Is>
bool apply_reply(caf::type_erased_tuple& content, OnValue& on_value, std::tuple<As...>*,
                 std::index_sequence<Is...>) {
  if (!content.match_elements<As...>())
    return false;
  on_value(content.get_mutable_as<As>(Is)...);
  return true;
}

/// Hands a reply to `on_value` (which takes the reply's values). Returns the failure: the
/// error the actor replied, or `when_gone` if the request was dropped unanswered.
template <class OnValue>
error take_reply(caf::mailbox_element* reply, errc when_gone, OnValue& on_value) {
  if (reply == nullptr)
    return error{when_gone, "the request was dropped unanswered (its actor is gone)"};
  auto& content = reply->content();
  if (content.match_elements<caf::error>())
    return from_caf_error(content.get_mutable_as<caf::error>(0), when_gone);
  using params = typename params_of<OnValue>::type;
  if (!apply_reply(content, on_value, static_cast<params*>(nullptr),
                   std::make_index_sequence<std::tuple_size_v<params>>{}))
    return error{errc::internal, "a reply of unexpected types"};
  return {};
}

} // namespace sshpool::detail
