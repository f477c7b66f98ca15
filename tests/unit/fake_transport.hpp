// A fake transport behind the ssh::transport seam: records what the connection actors ask
// for and lets a test decide when handshakes finish and what requests return. Used with
// CAF's deterministic test coordinator, so everything runs on the test thread.
#pragma once

#include <memory>
#include <vector>

#include "sshpool/ssh/transport.hpp"

namespace sshpool::test {

/// What one transport was asked to do.
struct fake_session {
  endpoint ep;
  ssh::transport_options opts;
  std::shared_ptr<ssh::transport_sink> sink;
  /// Made by `adopt` (an agent): `open()` reports success at once, as the runtime's does.
  bool agent = false;
  bool opened = false;
  bool closed = false;
  /// The reason given to `disconnect` (empty: closed without one, or still open).
  std::string disconnect_reason;
  std::vector<std::uint64_t> forwarded;
  std::vector<std::uint64_t> cancelled;
  std::size_t probes = 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> acked;
  /// Answer probes at once (a live server); false: a hung one.
  bool auto_alive = true;

  /// Completes the handshake (successfully unless `err` has a code).
  void finish_open(error err = {}) { sink->on_open(std::move(err)); }
  /// Answers request `tag` with a 200 whose body is `body`.
  void respond(std::uint64_t tag, std::string body = "ok");
  /// Reports the session as lost.
  void lose() { sink->on_lost(error{errc::connection_lost, "fake session lost"}); }
  /// Streams: the head, a body piece, the end (after a head).
  void stream_head(std::uint64_t tag, int status = 200) {
    response head;
    head.status = status;
    sink->on_stream_head(tag, std::move(head));
  }
  void stream_chunk(std::uint64_t tag, std::string chunk) {
    sink->on_stream_chunk(tag, std::move(chunk));
  }
  void stream_end(std::uint64_t tag) { sink->on_response(tag, response{}, transfer_info{}); }
  /// A stream's response complete before its head was reported: reported whole.
  void stream_whole(std::uint64_t tag, std::string body) {
    response whole;
    whole.status = 200;
    whole.body = std::move(body);
    sink->on_response(tag, std::move(whole), transfer_info{});
  }
  /// Reports a packet from the server (the answer to a probe).
  void answer_probe() { sink->on_alive(); }
};

class fake_transport_factory final : public ssh::transport_factory {
public:
  std::unique_ptr<ssh::transport> make(const endpoint& ep, const ssh::transport_options& opts,
                                       std::shared_ptr<ssh::transport_sink> sink) override;
  /// A fake agent session (the handle, empty in unit tests, is not used).
  std::unique_ptr<ssh::transport> adopt(ssh::agent_handle agent, const ssh::transport_options& opts,
                                        std::shared_ptr<ssh::transport_sink> sink) override;

  /// Every transport made so far, in order.
  std::vector<std::shared_ptr<fake_session>> sessions;
  /// `auto_alive` of the sessions made from now on.
  bool auto_alive = true;
};

} // namespace sshpool::test
