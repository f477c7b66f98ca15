// The connection's forwards: `forward` (blocking) and `forward_async` (a future, or a
// callback). Both send forward_atom to the leased connection through the hand-off of
// handoff.hpp; the connection actor answers by the request's deadline (request_timeout),
// or fails the request (connection_lost, shutting_down) when it closes, and a request it
// never saw (the actor was gone) completes with connection_lost when its message is
// dropped. So an async forward always completes, and `forward` waits for the same answer
// (with reply_slack beyond the deadline, in case the actors are stalled).
//
// An async forward's completion runs on the thread that hands the reply over: the
// connection actor's scheduler thread, or the caller's when the request is refused at once
// (an empty or released handle, a stopped engine; a connection actor that has ended, whose
// closed mailbox CAF answers with request_receiver_down on the sending thread).
#include <exception>
#include <future>
#include <memory>
#include <utility>

#include "engine_impl.hpp"

namespace sshpool {

namespace {

/// What refuses a forward before it is sent: an empty or released handle, a deadline that
/// is not positive, a stopped engine.
error refusal(const detail::lease_handle* lease, std::chrono::milliseconds deadline) {
  if (lease == nullptr)
    return {errc::invalid_argument, "empty connection handle"};
  if (deadline.count() <= 0)
    return {errc::invalid_argument, "the deadline must be positive"};
  if (lease->released.load())
    return {errc::not_leased, "the lease was released"};
  if (lease->impl->stopped.load())
    return detail::stopped_error();
  return {};
}

/// The engine's request_timeout (any positive value for an empty handle: it is refused).
std::chrono::milliseconds default_deadline(const detail::lease_handle* lease) {
  return lease != nullptr ? lease->impl->cfg.pool.request_timeout : std::chrono::milliseconds{1};
}

/// Sends `req` and calls `done` with its result once; see the top of this file.
template <class Done>
void start_forward(const detail::lease_handle* lease, const request& req,
                   std::chrono::milliseconds deadline, Done done) {
  if (auto err = refusal(lease, deadline); detail::failed(err)) {
    done(expected<response>{std::move(err)});
    return;
  }
  detail::send_request(
      *lease->impl->sys, lease->value.connection,
      [done = std::move(done)](caf::mailbox_element_ptr reply) mutable {
        response result;
        auto take = [&](response& res) { result = std::move(res); };
        auto err = detail::take_reply(reply.get(), errc::connection_lost, take);
        done(detail::failed(err) ? expected<response>{std::move(err)}
                                 : expected<response>{std::move(result)});
      },
      forward_atom_v, req, caf::timespan{deadline});
}

} // namespace

expected<response> connection::forward(const request& req) const {
  return forward(req, default_deadline(lease_.get()));
}

expected<response> connection::forward(const request& req,
                                       std::chrono::milliseconds deadline) const {
  if (auto err = refusal(lease_.get(), deadline); detail::failed(err))
    return err;
  response result;
  auto err = detail::call(
      *lease_->impl, lease_->value.connection, caf::timespan{deadline} + detail::reply_slack,
      errc::connection_lost, [&](response& res) { result = std::move(res); }, forward_atom_v, req,
      caf::timespan{deadline});
  if (detail::failed(err))
    return err;
  return result;
}

std::future<expected<response>> connection::forward_async(const request& req) const {
  return forward_async(req, default_deadline(lease_.get()));
}

std::future<expected<response>>
connection::forward_async(const request& req, std::chrono::milliseconds deadline) const {
  std::promise<expected<response>> promise;
  auto result = promise.get_future();
  start_forward(lease_.get(), req, deadline,
                [promise = std::move(promise)](expected<response> res) mutable {
                  promise.set_value(std::move(res));
                });
  return result;
}

void connection::forward_async(const request& req, response_callback on_done) const {
  forward_async(req, std::move(on_done), default_deadline(lease_.get()));
}

void connection::forward_async(const request& req, response_callback on_done,
                               std::chrono::milliseconds deadline) const {
  start_forward(lease_.get(), req, deadline,
                [on_done = std::move(on_done)](expected<response> res) {
                  // An exception must not end the actor that handed the reply over.
                  try {
                    on_done(std::move(res));
                  } catch (const std::exception& ex) {
                    log().error("a forward_async callback threw: {}", ex.what());
                  } catch (...) {
                    log().error("a forward_async callback threw");
                  }
                });
}

} // namespace sshpool
