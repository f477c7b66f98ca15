// The front end's side of the gateway's bridge (included only through upstream_state.hpp,
// by the bridge's two files): the work it queues for the bridge actor, the queue that wakes the
// actor once per batch, and the handle on one forwarded request that posts acknowledgements and
// cancellations to it. Thread-safety: `intake::post` and `bridge_call` from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "gateway/upstream.hpp"
#include "sshpool/messages.hpp"

namespace sshpool::gateway::upstream_detail {

/// The front end queued work for the bridge (see `intake`).
using intake_atom = caf::atom_constant<caf::atom("sp_gwtake")>;
constexpr intake_atom intake_atom_v{};
/// The bridge's periodic look at its kept leases.
using keep_tick_atom = caf::atom_constant<caf::atom("sp_gwkeep")>;
constexpr keep_tick_atom keep_tick_atom_v{};

/// The bridge: the sink of every stream, woken by its intake and its tick.
using bridge_actor =
    stream_sink_actor::extend<caf::reacts_to<intake_atom>, caf::reacts_to<keep_tick_atom>>;

/// What the front end asks of the bridge.
struct work {
  enum class kind { start, ack, cancel };
  kind what = kind::start;
  std::uint64_t call = 0;
  std::uint64_t bytes = 0;
  std::string user;
  request req;
  std::shared_ptr<upstream_listener> listener;
};

/// Work from the front end's thread, taken by the bridge in batches: one intake_atom wakes
/// it when the queue turns non-empty.
struct intake {
  std::mutex mutex;
  std::vector<work> items;
  bridge_actor bridge;
  /// The bridge is gone: nothing more is taken.
  bool closed = false;

  /// Queues `w`; false if the bridge is gone.
  bool post(work w) {
    bool wake = false;
    {
      std::lock_guard<std::mutex> guard{mutex};
      if (closed)
        return false;
      items.push_back(std::move(w));
      wake = items.size() == 1;
    }
    if (wake)
      caf::anon_send(bridge, intake_atom_v);
    return true;
  }
};

/// The front end's handle: work for the bridge.
class bridge_call final : public upstream_call {
public:
  bridge_call(std::shared_ptr<intake> in, std::uint64_t id) : in_(std::move(in)), id_(id) {}

  void ack(std::size_t bytes) override {
    work w;
    w.what = work::kind::ack;
    w.call = id_;
    w.bytes = bytes;
    in_->post(std::move(w));
  }

  void cancel() override {
    work w;
    w.what = work::kind::cancel;
    w.call = id_;
    in_->post(std::move(w));
  }

private:
  std::shared_ptr<intake> in_;
  std::uint64_t id_;
};

} // namespace sshpool::gateway::upstream_detail
