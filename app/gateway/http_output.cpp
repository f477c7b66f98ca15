// The front end's answers (see http_loop.hpp): the response head and the framing of its
// body (Content-Length, chunked, or close-delimited for HTTP/1.0), writing what the socket
// takes, reporting body bytes back to the handler once sent (its acknowledgements upstream),
// the end of an exchange, the lingering close, and dropping a connection.
//
// Thread-safety: the loop thread only.
#include <sys/socket.h>

#include "gateway/http_loop.hpp"
#include "net/text.hpp"
#include "sshpool/ssh/http_framing.hpp"

namespace sshpool::gateway {

namespace {

/// After our FIN, how long input is read and discarded before closing anyway.
constexpr std::chrono::seconds linger_timeout{2};

/// Whether the client has the whole response although its exchange did not end yet: all
/// of it was sent and either it was finished (the end is only waiting for the next
/// service pass) or its framing is complete (no body, or all of a Content-Length body;
/// `finish` has not come yet). A client that read it all and closed is not a client that
/// left early. (The exchange itself ends only after `finish`, so that the next request
/// on the connection starts once the upstream's end, and its lease, came back.)
bool delivered(const connection& c) {
  if (c.cut || c.unsent() != 0)
    return false;
  if (c.ph == phase::flushing)
    return true;
  return c.ph == phase::streaming &&
         (c.frame == framing::none || (c.frame == framing::length && c.remaining == 0));
}

} // namespace

void http_server::loop::respond(std::uint64_t exchange, response_head head, std::string body) {
  connection* c = find_exchange(exchange);
  if (c == nullptr || c->ph != phase::handling)
    return;
  head.content_length = body.size();
  bool has_body = !c->head_request && !head.no_body;
  write_head(*c, head);
  if (has_body)
    append_out(*c, body);
  c->ph = phase::flushing;
  mark(*c);
}

void http_server::loop::send_head(std::uint64_t exchange, response_head head) {
  connection* c = find_exchange(exchange);
  if (c == nullptr || c->ph != phase::handling)
    return;
  write_head(*c, head);
  c->ph = phase::streaming;
  mark(*c);
}

void http_server::loop::send_body(std::uint64_t exchange, std::string data) {
  connection* c = find_exchange(exchange);
  if (c == nullptr || c->ph != phase::streaming || data.empty())
    return;
  std::size_t size = data.size();
  switch (c->frame) {
  case framing::none:
    break; // nothing may follow this head: the piece is dropped (and acknowledged)
  case framing::length:
    if (size > c->remaining) {
      c->cut = true;
      size = static_cast<std::size_t>(c->remaining);
      data.resize(size);
    }
    c->remaining -= size;
    append_out(*c, data);
    break;
  case framing::chunked: {
    std::string prefix;
    net::append_number(prefix, size, 16);
    prefix += "\r\n";
    append_out(*c, prefix);
    append_out(*c, data);
    append_out(*c, "\r\n");
    break;
  }
  case framing::close:
    append_out(*c, data);
    break;
  }
  c->acks.emplace_back(c->queued_total, data.size());
  if (c->cut) {
    c->close_after = true;
    c->ph = phase::flushing;
  }
  if (c->unsent() > opts_.max_unsent_bytes)
    c->overflow = true;
  mark(*c);
}

void http_server::loop::finish(std::uint64_t exchange, bool complete) {
  connection* c = find_exchange(exchange);
  if (c == nullptr || (c->ph != phase::streaming && c->ph != phase::handling))
    return;
  if (c->ph == phase::handling || (c->frame == framing::length && c->remaining != 0))
    complete = false;
  if (complete && c->frame == framing::chunked)
    append_out(*c, "0\r\n\r\n");
  if (!complete) {
    c->cut = true;
    c->close_after = true;
  }
  c->ph = phase::flushing;
  mark(*c);
}

void http_server::loop::append_out(connection& c, std::string_view data) {
  if (c.unsent() == 0)
    c.last_write_progress = steady::now();
  c.out.append(data);
  c.queued_total += data.size();
}

void http_server::loop::write_head(connection& c, const response_head& head) {
  if (head.close || !c.keep_alive || stopping_)
    c.close_after = true;
  std::string h = "HTTP/1.1 ";
  net::append_number(h, static_cast<std::uint64_t>(head.status));
  h += ' ';
  h += head.reason.empty() ? net::reason_phrase(head.status) : head.reason;
  h += "\r\n";
  for (auto& [name, value] : head.headers) {
    h += name;
    h += ": ";
    h += value;
    h += "\r\n";
  }
  bool bodyless = head.no_body || has_no_body(c.head_request, head.status);
  if (head.content_length && head.status != 204 && head.status / 100 != 1) {
    h += "Content-Length: ";
    net::append_number(h, *head.content_length);
    h += "\r\n";
  }
  if (bodyless) {
    c.frame = framing::none;
  } else if (head.content_length) {
    c.frame = framing::length;
    c.remaining = *head.content_length;
  } else if (!c.http10) {
    c.frame = framing::chunked;
    h += "Transfer-Encoding: chunked\r\n";
  } else {
    c.frame = framing::close;
    c.close_after = true;
  }
  if (c.close_after)
    h += "Connection: close\r\n";
  else if (c.http10)
    h += "Connection: keep-alive\r\n";
  h += "\r\n";
  append_out(c, h);
}

void http_server::loop::pump(connection& c) {
  if (c.handshaking())
    return; // output (a 503 refusal) waits for the handshake
  std::size_t sent = 0;
  bool alive = transmit(c, sent);
  if (sent > 0) {
    c.sent_total += sent;
    owner_.counters_.bytes_sent.fetch_add(sent);
    c.last_write_progress = steady::now();
  }
  if (!alive) {
    drop(c);
    return;
  }
  net::compact(c.out, c.out_off, read_chunk);
  std::size_t acked = 0;
  while (!c.acks.empty() && c.acks.front().first <= c.sent_total) {
    acked += c.acks.front().second;
    c.acks.pop_front();
  }
  if (acked > 0 && c.exchange != 0)
    handler_.on_body_sent(c.exchange, acked);
  if (c.ph == phase::flushing && c.unsent() == 0)
    end_exchange(c);
}

void http_server::loop::end_exchange(connection& c) {
  auto ex = std::exchange(c.exchange, 0);
  exchanges_.erase(ex);
  c.acks.clear();
  bool complete = !c.cut;
  handler_.on_done(ex, complete, c.sent_total - c.exchange_start);
  if (c.close_after || c.cut || stopping_) {
    begin_linger(c);
  } else {
    c.ph = phase::reading;
    c.last_input = steady::now();
  }
}

void http_server::loop::begin_linger(connection& c) {
  if (c.tls)
    c.tls->shutdown();
  ::shutdown(c.fd.get(), SHUT_WR);
  c.ph = phase::lingering;
  c.input_closed = true;
  c.in.clear();
  c.in_off = 0;
  c.linger_deadline = steady::now() + linger_timeout;
}

void http_server::loop::update_interest(connection& c) {
  std::uint32_t want = EPOLLRDHUP;
  // A handshake reads whatever else the connection waits for (a refusal's 503 goes out
  // once it completes).
  if (wants_input(c) || c.tls_wants_read || c.handshaking())
    want |= EPOLLIN;
  if ((c.unsent() > 0 && c.ph != phase::lingering && !c.handshaking()) || c.tls_wants_write)
    want |= EPOLLOUT;
  if (want != c.events) {
    c.events = want;
    if (!loop_.modify(c.fd.get(), want, c.id))
      drop(c);
  }
}

void http_server::loop::drop(connection& c) {
  if (!c.fd)
    return;
  if (c.exchange != 0) {
    auto ex = std::exchange(c.exchange, 0);
    exchanges_.erase(ex);
    handler_.on_done(ex, delivered(c), c.sent_total - c.exchange_start);
  }
  loop_.remove(c.fd.get());
  c.tls.reset();
  c.fd.reset();
  owner_.counters_.open_connections.fetch_sub(1);
  release_slot(c);
  connections_.retire(c.id); // destroyed after the current event
  if (!stopping_)
    loop_.resume_accepting();
}

} // namespace sshpool::gateway
