// ssh_runtime and its transport: a thin handle that routes the owner's calls to the
// connector pool (handshake) and to the session's reactor (everything after).
#include "sshpool/ssh/runtime.hpp"

#include <atomic>

#include "connector.hpp"
#include "reactor.hpp"

namespace sshpool::ssh {

transport_sink::~transport_sink() = default;
transport::~transport() = default;
transport_factory::~transport_factory() = default;

namespace {

class ssh_transport final : public transport {
public:
  ssh_transport(std::shared_ptr<session_control> ctl, std::shared_ptr<connector_pool> connectors)
      : ctl_(std::move(ctl)), connectors_(std::move(connectors)) {}

  ~ssh_transport() override { close(); }

  void open() override {
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

  void close() override {
    if (!ctl_->closed.exchange(true))
      ctl_->home->close(ctl_->id);
  }

private:
  std::shared_ptr<session_control> ctl_;
  std::shared_ptr<connector_pool> connectors_;
};

std::atomic<std::uint64_t> session_ids{0};

} // namespace

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
  ctl->id = ++session_ids;
  ctl->ep = ep;
  ctl->opts = opts;
  ctl->sink = std::move(sink);
  ctl->home = reactors_[ctl->id % reactors_.size()];
  ctl->counters = counters_.get();
  return std::make_unique<ssh_transport>(std::move(ctl), connectors_);
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
