#include "fake_transport.hpp"

namespace sshpool::test {

namespace {

class fake_transport final : public ssh::transport {
public:
  explicit fake_transport(std::shared_ptr<fake_session> s) : s_(std::move(s)) {}
  ~fake_transport() override { s_->closed = true; }
  void open() override {
    s_->opened = true;
    if (s_->agent)
      s_->finish_open();
  }
  void forward(std::uint64_t tag, ssh::outbound_request) override { s_->forwarded.push_back(tag); }
  void cancel(std::uint64_t tag) override { s_->cancelled.push_back(tag); }
  void ack(std::uint64_t tag, std::uint64_t bytes) override { s_->acked.emplace_back(tag, bytes); }
  void probe() override {
    ++s_->probes;
    if (s_->auto_alive)
      s_->sink->on_alive();
  }
  void close() override { s_->closed = true; }
  void disconnect(std::string reason) override {
    s_->disconnect_reason = std::move(reason);
    s_->closed = true;
  }

private:
  std::shared_ptr<fake_session> s_;
};

} // namespace

void fake_session::respond(std::uint64_t tag, std::string body) {
  response res;
  res.status = 200;
  res.body = std::move(body);
  sink->on_response(tag, std::move(res), transfer_info{10, 20, 1});
}

std::unique_ptr<ssh::transport>
fake_transport_factory::make(const endpoint& ep, const ssh::transport_options& opts,
                             std::shared_ptr<ssh::transport_sink> sink) {
  auto s = std::make_shared<fake_session>();
  s->ep = ep;
  s->opts = opts;
  s->sink = std::move(sink);
  s->auto_alive = auto_alive;
  sessions.push_back(s);
  return std::make_unique<fake_transport>(std::move(s));
}

std::unique_ptr<ssh::transport>
fake_transport_factory::adopt(ssh::agent_handle, const ssh::transport_options& opts,
                              std::shared_ptr<ssh::transport_sink> sink) {
  auto t = make(endpoint{}, opts, std::move(sink));
  sessions.back()->agent = true;
  return t;
}

} // namespace sshpool::test
