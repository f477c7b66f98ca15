// ssh_runtime and its transport: a thin handle that routes the owner's calls to the
// connector pool (handshake) and to the session's reactor (everything after).
#include "sshpool/ssh/runtime.hpp"

#include <atomic>
#include <optional>

#include "connector.hpp"
#include "reactor.hpp"

namespace sshpool::ssh {

transport_sink::~transport_sink() = default;
transport::~transport() = default;
transport_factory::~transport_factory() = default;

void transport::disconnect(std::string) {
  close();
}

namespace {

/// A dialed session (its handshake runs on a connector) or an agent's (already up: `open`
/// hands it to its reactor).
class ssh_transport final : public transport {
public:
  ssh_transport(std::shared_ptr<session_control> ctl, std::shared_ptr<connector_pool> connectors,
                std::optional<connected_session> agent = std::nullopt)
      : ctl_(std::move(ctl)), connectors_(std::move(connectors)), agent_(agent) {}

  ~ssh_transport() override { close(); }

  void open() override {
    if (agent_) {
      ctl_->home->adopt(ctl_, *agent_);
      agent_.reset();
      return;
    }
    ctl_->start_deadline = std::chrono::steady_clock::now() + ctl_->opts.queue_timeout;
    connectors_->submit(ctl_);
  }

  void forward(std::uint64_t tag, outbound_request req) override {
    ctl_->home->forward(ctl_->id, tag, std::move(req));
  }

  void cancel(std::uint64_t tag) override { ctl_->home->cancel(ctl_->id, tag); }

  void probe() override { ctl_->home->probe(ctl_->id); }

  void ack(std::uint64_t tag, std::uint64_t bytes) override {
    ctl_->home->ack(ctl_->id, tag, bytes);
  }

  void close() override { disconnect({}); }

  void disconnect(std::string reason) override {
    if (ctl_->closed.exchange(true))
      return;
    if (agent_) {
      // Never opened: the reactor frees the session (adopting a closed one disconnects it).
      ctl_->home->adopt(ctl_, *agent_);
      agent_.reset();
      return;
    }
    ctl_->home->close(ctl_->id, std::move(reason));
  }

private:
  std::shared_ptr<session_control> ctl_;
  std::shared_ptr<connector_pool> connectors_;
  /// An agent's session until `open` hands it to the reactor.
  std::optional<connected_session> agent_;
};

std::atomic<std::uint64_t> session_ids{0};

} // namespace

std::uint64_t next_session_id() {
  return ++session_ids;
}

ssh_runtime::ssh_runtime(options opts)
    : counters_(std::move(opts.counters)), connectors_(std::make_shared<connector_pool>(
                                               std::max<std::size_t>(opts.connector_threads, 1))) {
  auto n = std::max<std::size_t>(opts.reactor_threads, 1);
  reactors_.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    reactors_.push_back(std::make_shared<reactor>());
}

ssh_runtime::~ssh_runtime() {
  // Connectors first: a finishing handshake hands its session to a reactor.
  connectors_->stop();
  for (auto& r : reactors_)
    r->stop();
}

std::unique_ptr<transport> ssh_runtime::make(const endpoint& ep, const transport_options& opts,
                                             std::shared_ptr<transport_sink> sink) {
  auto ctl = std::make_shared<session_control>();
  ctl->id = next_session_id();
  ctl->ep = ep;
  ctl->opts = opts;
  ctl->sink = std::move(sink);
  ctl->home = reactors_[ctl->id % reactors_.size()];
  ctl->counters = counters_.get();
  return std::make_unique<ssh_transport>(std::move(ctl), connectors_);
}

std::unique_ptr<transport> ssh_runtime::adopt(agent_handle agent, const transport_options& opts,
                                              std::shared_ptr<transport_sink> sink) {
  auto st = agent.release();
  if (st == nullptr)
    return nullptr;
  auto ctl = std::make_shared<session_control>();
  ctl->id = st->id;
  ctl->agent = st->agent;
  auto& forward = st->agent->forwards().front();
  ctl->ep.host = st->agent->source();
  ctl->ep.port = st->agent->source_port();
  ctl->ep.username = st->agent->user();
  ctl->ep.target_host = forward.address;
  ctl->ep.target_port = forward.port;
  ctl->opts = opts;
  ctl->sink = std::move(sink);
  ctl->home = reactors_[ctl->id % reactors_.size()];
  ctl->counters = counters_.get();
  return std::make_unique<ssh_transport>(std::move(ctl), connectors_,
                                         connected_session{st->session, nullptr});
}

runtime_stats ssh_runtime::stats() const {
  runtime_stats result;
  for (auto& r : reactors_) {
    result.sessions += r->session_count();
    result.channels += r->channel_count();
  }
  result.handshakes_started = connectors_->started();
  result.handshakes_failed = connectors_->failed();
  return result;
}

std::size_t ssh_runtime::thread_count() const noexcept {
  return connectors_->thread_count() + reactors_.size();
}

} // namespace sshpool::ssh
