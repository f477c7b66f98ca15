// The mock backend's loop: one thread, one epoll loop (net::event_loop), non-blocking
// sockets, no thread per client. Delayed answers (/slow, the /api/chat token stream, the
// lingering close) are entries in a timer heap whose head bounds the epoll timeout. Output is
// written with non-blocking sends; what the socket does not take stays buffered and is
// resumed on EPOLLOUT. See server.hpp for the connection's state.
//
// Thread-safety: the loop thread only, but for the observers (atomics, the record's mutex).
#include "backend/server.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <climits>

#include "net/text.hpp"

namespace sshpool::demo::detail {

namespace {

/// How many requests `received()` keeps.
constexpr std::size_t max_recorded = 1000;
/// How much of each body `received()` keeps.
constexpr std::size_t recorded_body_bytes = std::size_t{64} << 10;
/// Size of one recv.
constexpr std::size_t read_chunk = std::size_t{64} << 10;
/// Reads per readiness event, so one busy client cannot starve the others.
constexpr int read_budget = 8;
/// Streamed bodies are generated until this much output is waiting to be sent.
constexpr std::size_t out_high_water = std::size_t{256} << 10;
/// Reading stops while this many requests wait for their turn...
constexpr std::size_t max_queued_requests = 32;
/// ...or while this much output is unsent (e.g. a large echo).
constexpr std::size_t max_unsent_for_reading = std::size_t{1} << 20;
/// After our FIN, how long we keep reading (and discarding) before closing anyway.
constexpr std::chrono::seconds linger_timeout{2};

} // namespace

server::server(http_backend::options opts)
    : opts_(std::move(opts)), loop_(opts_.bind, opts_.port, "http_backend") {
  thread_ = std::thread([this] { run(); });
}

server::~server() {
  loop_.wake();
  thread_.join();
}

std::vector<recorded_request> server::received() const {
  std::lock_guard<std::mutex> lock(record_mutex_);
  return {records_.begin(), records_.end()};
}

bool server::wait_for_requests(std::uint64_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(record_mutex_);
  return record_cv_.wait_for(lock, timeout, [&] { return requests_.load() >= n; });
}

// -- the loop -------------------------------------------------------------------------------

void server::run() {
  read_buffer_.resize(read_chunk);
  for (bool stopping = false; !stopping;) {
    bool ok = loop_.poll(
        next_timeout_ms(), [&] { stopping = true; },
        [&] {
          loop_.accept_pending(
              [] { return true; },
              [&](net::unique_fd fd, const sockaddr_storage&) { admit(std::move(fd)); });
        },
        [&](std::uint64_t key, std::uint32_t events) {
          if (connection* c = connections_.find(key))
            on_event(*c, events);
        });
    if (!ok)
      break;
    run_timers();
    connections_.flush();
  }
  open_.store(0);
}

int server::next_timeout_ms() const {
  if (timers_.empty())
    return -1;
  auto wait = timers_.top().when - steady::now();
  if (wait <= steady::duration::zero())
    return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
  return static_cast<int>(std::min<decltype(ms)>(ms, INT_MAX));
}

void server::admit(net::unique_fd fd) {
  auto c = std::make_unique<connection>();
  std::uint64_t key = connections_.next_key();
  c->id = key;
  c->fd = std::move(fd);
  c->events = EPOLLIN;
  if (!loop_.add(c->fd.get(), c->events, key))
    return; // cannot be polled: dropped
  accepted_.fetch_add(1);
  open_.fetch_add(1);
  connections_.insert(key, std::move(c));
}

void server::on_event(connection& c, std::uint32_t events) {
  if ((events & (EPOLLERR | EPOLLHUP)) != 0) {
    close_now(c);
    return;
  }
  if ((events & EPOLLOUT) != 0) {
    pump(c);
    if (!c.fd)
      return;
  }
  if ((events & EPOLLIN) != 0) {
    on_readable(c);
  } else if ((events & EPOLLRDHUP) != 0) {
    // Only polled while not reading: the peer is gone for a /hang; otherwise its EOF is
    // noticed once reading resumes.
    if (c.active.kind == job_kind::hang) {
      close_now(c);
    } else {
      c.rdhup_seen = true;
      update_interest(c);
    }
  }
}

// -- reading --------------------------------------------------------------------------------

bool server::wants_input(const connection& c) const {
  return c.lingering || (!c.input_done && c.queued.size() < max_queued_requests &&
                         c.unsent() < max_unsent_for_reading);
}

void server::on_readable(connection& c) {
  for (int i = 0; i < read_budget && wants_input(c); ++i) {
    std::size_t n = 0;
    auto got = net::recv_some(c.fd.get(), read_buffer_.data(), read_buffer_.size(), n);
    if (got == net::recv_status::failed) {
      close_now(c);
      return;
    }
    if (got == net::recv_status::eof) {
      on_peer_eof(c);
      if (!c.fd)
        return;
    } else if (got == net::recv_status::data && !c.lingering) {
      parse(c, {read_buffer_.data(), n});
    }
    if (n < read_buffer_.size())
      break; // the socket is drained (or at its end)
  }
  pump(c);
}

void server::on_peer_eof(connection& c) {
  c.peer_eof = true;
  c.input_done = true;
  bool busy = c.active.kind != job_kind::idle || !c.queued.empty() || c.unsent() > 0;
  if (c.lingering || c.active.kind == job_kind::hang || !busy)
    close_now(c);
}

/// Reads every request in `data` into the queue (pipelining); after a refused one, or one
/// that ends the connection (Connection: close, HTTP/1.0, Upgrade), reading stops.
void server::parse(connection& c, std::string_view data) {
  while (!data.empty() && !c.input_done) {
    std::size_t used = 0;
    auto got = c.reader.feed(data, used);
    data.remove_prefix(used);
    if (c.reader.take_expect_continue() && c.active.kind == job_kind::idle && c.queued.empty() &&
        !c.close_after)
      c.out += "HTTP/1.1 100 Continue\r\n\r\n";
    if (got == net::request_reader::result::more)
      return;
    request r;
    if (got == net::request_reader::result::request) {
      c.reader.take(r);
      r.keep_alive = c.reader.keep_alive() && !c.reader.upgrade();
      record(r);
    } else {
      r.reject = c.reader.status();
      r.keep_alive = false;
    }
    c.input_done = !r.keep_alive; // further bytes are not requests of ours
    c.queued.push_back(std::move(r));
  }
}

void server::record(const request& r) {
  recorded_request rec;
  rec.method = r.method;
  rec.path = r.target;
  rec.headers = r.headers;
  rec.body = r.body.substr(0, recorded_body_bytes);
  rec.body_size = r.body.size();
  {
    std::lock_guard<std::mutex> lock(record_mutex_);
    if (records_.size() == max_recorded)
      records_.pop_front();
    records_.push_back(std::move(rec));
    requests_.fetch_add(1);
  }
  record_cv_.notify_all();
}

// -- writing --------------------------------------------------------------------------------

/// Produces output and sends it until the socket is full, the response in progress waits
/// or there is nothing left; then closes or updates the epoll interest.
void server::pump(connection& c) {
  if (c.lingering)
    return;
  for (;;) {
    fill(c);
    if (c.unsent() == 0)
      break;
    std::size_t sent = 0;
    if (!net::send_pending(c.fd.get(), c.out, c.out_off, sent)) {
      close_now(c);
      return;
    }
    if (c.unsent() > 0)
      break; // the socket is full: wait for EPOLLOUT
    c.out.clear();
    c.out_off = 0;
  }
  bool done = c.unsent() == 0 && c.active.kind == job_kind::idle &&
              (c.close_after || (c.peer_eof && c.queued.empty()));
  if (done)
    begin_close(c);
  else
    update_interest(c);
}

/// Appends output until `out_high_water` is reached or the response in progress waits.
void server::fill(connection& c) {
  if (c.out_off > 0 && c.unsent() < out_high_water) {
    c.out.erase(0, c.out_off);
    c.out_off = 0;
  }
  while (c.unsent() < out_high_water) {
    switch (c.active.kind) {
    case job_kind::pattern:
      produce_pattern(c);
      continue;
    case job_kind::chunks:
      produce_chunks(c);
      continue;
    case job_kind::delayed:
    case job_kind::chat:
    case job_kind::hang:
      return;
    case job_kind::idle:
      break;
    }
    if (c.close_after || c.queued.empty())
      return;
    request r = std::move(c.queued.front());
    c.queued.pop_front();
    start(c, r);
  }
}

void server::produce_pattern(connection& c) {
  job& j = c.active;
  auto n = static_cast<std::size_t>(std::min<std::uint64_t>(j.left, out_high_water));
  append_pattern(c.out, j.offset, n);
  j.offset += n;
  j.left -= n;
  if (j.left == 0)
    j = job{};
}

void server::produce_chunks(connection& c) {
  job& j = c.active;
  if (j.left == 0) {
    if (j.chunks_left == 0) {
      if (j.chunked)
        c.out += "0\r\n\r\n";
      j = job{};
      return;
    }
    if (j.chunked) {
      net::append_number(c.out, j.chunk_size, 16);
      c.out += "\r\n";
    }
    j.left = j.chunk_size;
  }
  auto n = static_cast<std::size_t>(std::min<std::uint64_t>(j.left, out_high_water));
  append_pattern(c.out, j.offset, n);
  j.offset += n;
  j.left -= n;
  if (j.left == 0) {
    if (j.chunked)
      c.out += "\r\n";
    --j.chunks_left;
  }
}

void server::update_interest(connection& c) {
  std::uint32_t want = 0;
  if (wants_input(c))
    want |= EPOLLIN;
  else if (!c.peer_eof && !c.rdhup_seen)
    want |= EPOLLRDHUP;
  if (c.unsent() > 0 && !c.lingering)
    want |= EPOLLOUT;
  if (want != c.events) {
    c.events = want;
    if (!loop_.modify(c.fd.get(), want, c.id))
      close_now(c);
  }
}

/// Graceful close: send our FIN, then wait (bounded) for the peer's so that unread input
/// does not turn into a reset that could destroy the response in flight.
void server::begin_close(connection& c) {
  if (c.peer_eof) {
    close_now(c);
    return;
  }
  ::shutdown(c.fd.get(), SHUT_WR);
  c.lingering = true;
  arm_timer(c, steady::now() + linger_timeout);
  update_interest(c);
}

void server::close_now(connection& c) {
  c.fd.reset();
  open_.fetch_sub(1);
  connections_.retire(c.id); // destroyed after the current event
  loop_.resume_accepting();
}

// -- timers ---------------------------------------------------------------------------------

void server::arm_timer(connection& c, steady::time_point when) {
  timers_.push({when, c.id, ++c.timer_token});
}

void server::run_timers() {
  auto now = steady::now();
  while (!timers_.empty() && timers_.top().when <= now) {
    timer_entry t = timers_.top();
    timers_.pop();
    connection* c = connections_.find(t.connection_id);
    if (c == nullptr || c->timer_token != t.token)
      continue;
    if (c->lingering) {
      close_now(*c);
    } else if (c->active.kind == job_kind::delayed) {
      c->out += c->active.deferred;
      c->active = job{};
      pump(*c);
    } else if (c->active.kind == job_kind::chat) {
      emit_token(*c);
      pump(*c);
    }
  }
}

} // namespace sshpool::demo::detail
