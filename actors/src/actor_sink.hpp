// The connection actor's side of the transport seam: transport events, reported on the I/O
// threads, become internal messages in the connection actor's mailbox.
#pragma once

#include <caf/send.hpp>

#include "internal_messages.hpp"
#include "sshpool/ssh/transport.hpp"

namespace sshpool {

/// Forwards transport events into the actor's mailbox (called on I/O threads).
class actor_sink final : public ssh::transport_sink {
public:
  explicit actor_sink(connection_impl self) : self_(std::move(self)) {}

  void on_open(error result) override {
    caf::anon_send(self_, opened_atom_v,
                   result.code() == errc::none ? caf::error{} : make_caf_error(result));
  }

  void on_response(std::uint64_t tag, response res, transfer_info info) override {
    caf::anon_send(self_, result_atom_v, tag, std::move(res), info);
  }

  void on_failure(std::uint64_t tag, error err, transfer_info info) override {
    caf::anon_send(self_, result_atom_v, tag, make_caf_error(err), info);
  }

  void on_lost(error reason) override {
    caf::anon_send(self_, lost_atom_v, make_caf_error(reason));
  }

  void on_alive() override { caf::anon_send(self_, alive_atom_v); }

  void on_stream_head(std::uint64_t tag, response head) override {
    caf::anon_send(self_, head_atom_v, tag, std::move(head));
  }

  void on_stream_chunk(std::uint64_t tag, std::string chunk) override {
    caf::anon_send(self_, chunk_atom_v, tag, std::move(chunk));
  }

private:
  connection_impl self_;
};

} // namespace sshpool
