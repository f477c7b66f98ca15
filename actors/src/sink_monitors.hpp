// The sinks of a connection's streams, each monitored once while it has streams there. A
// sink that outlives its streams (the gateway's bridge is the sink of all its streams)
// would otherwise collect one monitor per stream on the connection's behalf, never
// removed until it quits.
//
// Thread-safety: the owning actor only.
#pragma once

#include <cstddef>
#include <unordered_map>

#include <caf/actor_addr.hpp>

#include "sshpool/messages.hpp"

namespace sshpool {

/// Streams per sink; monitors a sink from its first stream to the end of its last.
class sink_monitors {
public:
  /// A stream of `sink` starts.
  template <class Self>
  void add(Self* self, const stream_sink_actor& sink) {
    if (counts_[sink.address()]++ == 0)
      self->monitor(sink);
  }

  /// A stream of `sink` ended (a null sink: not a stream, nothing to do).
  template <class Self>
  void remove(Self* self, const stream_sink_actor& sink) {
    if (!sink)
      return;
    auto i = counts_.find(sink.address());
    if (i != counts_.end() && --i->second == 0) {
      self->demonitor(sink.address());
      counts_.erase(i);
    }
  }

private:
  std::unordered_map<caf::actor_addr, std::size_t> counts_;
};

} // namespace sshpool
