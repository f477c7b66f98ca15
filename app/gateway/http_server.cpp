// The gateway's HTTP/1.1 front end: one thread, one epoll loop (see http_server.hpp). This
// file runs the loop and reads requests; answers are in http_output.cpp, client slots and
// timeouts in http_admission.cpp (the shared state: http_loop.hpp).
//
// A connection goes through these phases, one exchange at a time:
//
//   reading ── request complete ──► handling ── send_head ──► streaming ── finish ──┐
//      ▲  (parse errors, 408: the handler answers, then the connection closes)  │ respond │
//      │                                                                          ▼         ▼
//      └────────── keep-alive ◄── all output taken by the socket ◄──────────── flushing
//                                          │ Connection: close / cut stream
//                                          ▼
//                                      lingering (our FIN sent; input discarded until the
//                                                 peer's FIN or 2 s) ──► closed
//
// Pipelined requests stay in the input buffer (bounded) until the exchange before them is
// over. While an exchange is in progress the socket stays polled for EOF: a client that
// goes away ends its exchange at once (`on_done(false)`), which is how a stream upstream
// gets cancelled. Calls from the handler only queue output and mark the connection; the
// loop then writes ("services") marked connections, so the handler is never re-entered
// from its own calls.
#include "gateway/http_server.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "gateway/http_loop.hpp"
#include "gateway/logging.hpp"

namespace sshpool::gateway {

namespace {

/// Reads per readiness event (one busy client cannot starve others).
constexpr int read_budget = 8;
/// Period of the timeout sweep over all connections.
constexpr std::chrono::milliseconds sweep_period{250};

} // namespace

void loop_queue::post(std::function<void()> task) {
  std::lock_guard<std::mutex> guard{mutex_};
  if (closed_)
    return;
  tasks_.push_back(std::move(task));
  if (tasks_.size() == 1) {
    std::uint64_t one = 1;
    ssize_t written = ::write(wake_fd_, &one, sizeof one);
    static_cast<void>(written); // an eventfd write of 1 cannot fail short of overflow
  }
}

http_server::loop::loop(http_server& owner, options opts, http_handler& handler)
    : owner_(owner), opts_(std::move(opts)), handler_(handler),
      loop_(opts_.bind, opts_.port, "http_server") {
  owner_.port_ = loop_.port();
  owner_.queue_->wake_fd_ = loop_.wake_fd();
  read_buffer_.resize(read_chunk);
  load_tls();
}

http_server::loop::~loop() {
  shutdown(std::chrono::milliseconds(0));
}

void http_server::loop::start(engine* host) {
  if (thread_.joinable() || host_ != nullptr || stopped_)
    return;
  next_sweep_ = steady::now() + sweep_period;
  if (host != nullptr) {
    auto hosted = host->host(*this);
    if (hosted) {
      host_ = host;
      return;
    }
    log_event(spdlog::level::warn, "http_server_not_hosted",
              {field("error", hosted.error().message())});
  }
  thread_ = std::thread([this] { run(); });
}

void http_server::loop::shutdown(std::chrono::milliseconds grace) {
  if (thread_.joinable() || host_ != nullptr)
    owner_.queue_->post([this, grace] { begin_stop(grace); });
  if (thread_.joinable())
    thread_.join();
  if (host_ != nullptr) {
    std::unique_lock<std::mutex> guard{over_mutex_};
    over_cv_.wait(guard, [this] { return over_; });
    guard.unlock();
    host_->unhost();
    host_ = nullptr;
  }
  stopped_ = true;
  std::lock_guard<std::mutex> guard{owner_.queue_->mutex_};
  owner_.queue_->closed_ = true;
  owner_.queue_->tasks_.clear();
}

void http_server::loop::run() {
  while (!turn(-1)) {
  }
  close_all();
}

void http_server::loop::run_once(int timeout_ms) {
  if (over_) {
    // Over, until `shutdown` unhosts it: waits for a wake-up only (a job for the scheduler
    // thread), so that the thread does not spin through an empty loop.
    pollfd wake{loop_.wake_fd(), POLLIN, 0};
    ::poll(&wake, 1, timeout_ms);
    loop_.clear_wake();
    return;
  }
  if (!turn(timeout_ms))
    return;
  close_all();
  std::lock_guard<std::mutex> guard{over_mutex_};
  over_ = true;
  over_cv_.notify_all();
}

bool http_server::loop::turn(int max_wait_ms) {
  auto now = steady::now();
  auto wait = std::min(next_sweep_, stopping_ ? stop_deadline_ : next_sweep_) - now;
  auto wait_ms = std::max<long long>(0, std::chrono::ceil<std::chrono::milliseconds>(wait).count());
  if (max_wait_ms >= 0)
    wait_ms = std::min<long long>(wait_ms, max_wait_ms);
  bool ok = loop_.poll(
      static_cast<int>(wait_ms), [this] { run_tasks(); },
      [this] {
        loop_.accept_pending([this] { return has_room(); },
                             [this](net::unique_fd fd, const sockaddr_storage& addr) {
                               admit(std::move(fd), addr);
                             });
      },
      [this](std::uint64_t key, std::uint32_t events) {
        if (connection* c = connections_.find(key))
          on_event(*c, events);
      });
  if (!ok) {
    log_event(spdlog::level::err, "http_server_failed",
              {field("error", std::system_category().message(errno))});
    return true;
  }
  service_marked();
  now = steady::now();
  if (now >= next_sweep_) {
    sweep(now);
    service_marked();
    next_sweep_ = now + sweep_period;
  }
  connections_.flush();
  return stopping_ && (now >= stop_deadline_ || !busy());
}

void http_server::loop::close_all() {
  std::vector<std::uint64_t> ids;
  for (auto& [id, c] : connections_)
    ids.push_back(id);
  for (auto id : ids)
    if (connection* c = connections_.find(id))
      drop(*c);
  connections_.flush();
}

bool http_server::loop::busy() const {
  for (auto& [id, c] : connections_)
    if (c->ph != phase::lingering && (c->exchange != 0 || c->unsent() > 0))
      return true;
  return false;
}

void http_server::loop::run_tasks() {
  loop_.clear_wake();
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> guard{owner_.queue_->mutex_};
    tasks.swap(owner_.queue_->tasks_);
  }
  for (auto& task : tasks)
    task();
}

void http_server::loop::begin_stop(std::chrono::milliseconds grace) {
  stopping_ = true;
  stop_deadline_ = steady::now() + grace;
  loop_.close_listener();
  std::vector<connection*> idle;
  for (auto& [id, c] : connections_) {
    c->input_closed = true;
    if (c->ph == phase::reading)
      idle.push_back(c.get());
    else
      c->close_after = true;
  }
  for (auto* c : idle)
    drop(*c);
}

void http_server::loop::on_event(connection& c, std::uint32_t events) {
  if ((events & EPOLLERR) != 0) {
    drop(c);
    return;
  }
  if (c.handshaking() && (!continue_handshake(c) || !c.tls->established())) {
    if (c.fd)
      mark(c);
    return;
  }
  // A TLS read may have waited for the socket to become writable.
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) != 0 ||
      (c.tls_wants_write && (events & EPOLLOUT) != 0))
    on_readable(c, (events & (EPOLLRDHUP | EPOLLHUP)) != 0);
  if (c.fd)
    mark(c);
}

bool http_server::loop::wants_input(const connection& c) const {
  return c.ph == phase::lingering || (!c.input_closed && c.unparsed() < opts_.max_header_bytes);
}

void http_server::loop::on_readable(connection& c, bool hung_up) {
  for (int i = 0; i < read_budget; ++i) {
    if (!wants_input(c)) {
      // Not reading (input paused or closed): only the peer's hang-up matters now.
      if (hung_up)
        drop(c);
      return;
    }
    std::size_t n = 0;
    auto got = receive(c, n);
    if (got == net::recv_status::would_block)
      return;
    if (got != net::recv_status::data) {
      // The peer's FIN (a client gone mid-exchange is a cancelled exchange), or an error.
      drop(c);
      return;
    }
    owner_.counters_.bytes_received.fetch_add(n);
    c.last_input = steady::now();
    if (c.ph != phase::lingering && !c.input_closed)
      c.in.append(read_buffer_.data(), n);
    // A short plain read emptied the socket. A TLS read returns a record at most: read on
    // until the layer wants more from the socket.
    if (!c.tls && n < read_buffer_.size())
      return;
  }
}

void http_server::loop::advance(connection& c) {
  while (c.ph == phase::reading && !c.input_closed && c.unparsed() > 0) {
    std::size_t used = 0;
    auto got = c.reader.feed({c.in.data() + c.in_off, c.unparsed()}, used);
    c.in_off += used;
    if (c.reader.head_done() && !c.head_admitted) {
      c.head_admitted = true;
      if (!handler_.admit_head(c.reader.current(), c.peer, c.principal)) {
        withhold_body(c);
        break;
      }
    }
    if (c.reader.take_expect_continue())
      append_out(c, "HTTP/1.1 100 Continue\r\n\r\n");
    if (got == net::request_reader::result::more)
      break;
    if (got == net::request_reader::result::request)
      dispatch(c);
    else
      reject(c, c.reader.status(), c.reader.why());
  }
  net::compact(c.in, c.in_off, read_chunk);
}

void http_server::loop::begin_exchange(connection& c) {
  c.exchange = next_exchange_++;
  exchanges_.emplace(c.exchange, c.id);
  c.exchange_start = c.queued_total;
  c.frame = framing::none;
  c.remaining = 0;
  c.cut = false;
  c.ph = phase::handling;
}

void http_server::loop::dispatch(connection& c) {
  c.head_admitted = false;
  begin_exchange(c);
  ++c.requests;
  http_request req;
  c.reader.take(req);
  c.http10 = req.http10;
  c.keep_alive = c.reader.keep_alive();
  c.head_request = req.method == "HEAD";
  req.exchange = c.exchange;
  req.peer = c.peer;
  req.principal = std::move(c.principal);
  c.principal.clear();
  if (stopping_)
    c.close_after = true;
  handler_.on_request(std::move(req));
}

void http_server::loop::withhold_body(connection& c) {
  c.input_closed = true;
  c.close_after = true;
  c.in.clear();
  c.in_off = 0;
  c.head_admitted = false;
  begin_exchange(c);
  ++c.requests;
  http_request req;
  c.reader.take(req);
  req.body.clear();
  req.body_withheld = true;
  c.http10 = req.http10;
  c.head_request = req.method == "HEAD";
  req.exchange = c.exchange;
  req.peer = c.peer;
  handler_.on_request(std::move(req));
}

void http_server::loop::reject(connection& c, int status, std::string why) {
  c.input_closed = true;
  c.close_after = true;
  c.in.clear();
  c.in_off = 0;
  begin_exchange(c);
  http_request req;
  c.reader.take(req);
  c.http10 = req.http10;
  c.head_request = false;
  req.exchange = c.exchange;
  req.peer = c.peer;
  handler_.on_bad_request(std::move(req), status, std::move(why));
}

connection* http_server::loop::find_exchange(std::uint64_t exchange) {
  auto it = exchanges_.find(exchange);
  if (it == exchanges_.end())
    return nullptr;
  return connections_.find(it->second);
}

void http_server::loop::service_marked() {
  while (!marked_.empty()) {
    std::vector<std::uint64_t> batch;
    batch.swap(marked_);
    std::sort(batch.begin(), batch.end());
    batch.erase(std::unique(batch.begin(), batch.end()), batch.end());
    for (auto id : batch) {
      connection* found = connections_.find(id);
      if (found == nullptr)
        continue;
      connection& c = *found;
      if (c.overflow) {
        log_event(spdlog::level::warn, "client_output_overflow",
                  {field("peer", c.peer), field("unsent_bytes", std::uint64_t{c.unsent()})});
        drop(c);
        continue;
      }
      pump(c);
      if (!c.fd)
        continue;
      if (c.ph == phase::reading)
        advance(c);
      if (c.ph == phase::lingering && c.unparsed() > 0) {
        c.in.clear();
        c.in_off = 0;
      }
      if (!c.fd)
        continue;
      update_waiting(c);
      update_interest(c); // may drop it, which takes it out of the order as well
    }
  }
}

http_server::http_server(options opts, http_handler& handler)
    : queue_(std::make_shared<loop_queue>()) {
  loop_ = std::make_unique<loop>(*this, std::move(opts), handler);
}

http_server::~http_server() {
  loop_.reset();
}

void http_server::start(engine* host) {
  loop_->start(host);
}

void http_server::shutdown(std::chrono::milliseconds grace) {
  loop_->shutdown(grace);
}

expected<void> http_server::reload_tls() {
  return loop_->reload_tls();
}

void http_server::respond(std::uint64_t exchange, response_head head, std::string body) {
  loop_->respond(exchange, std::move(head), std::move(body));
}

void http_server::send_head(std::uint64_t exchange, response_head head) {
  loop_->send_head(exchange, std::move(head));
}

void http_server::send_body(std::uint64_t exchange, std::string data) {
  loop_->send_body(exchange, std::move(data));
}

void http_server::finish(std::uint64_t exchange, bool complete) {
  loop_->finish(exchange, complete);
}

} // namespace sshpool::gateway
