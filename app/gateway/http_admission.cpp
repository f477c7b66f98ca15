// The front end's client slots (see http_loop.hpp and http_server.hpp's options): a new
// connection is admitted while there is room, takes the slot of the longest-waiting
// connection without an exchange when the server or its source is full (the first of an
// order kept as connections are serviced: wait_order.hpp), or is answered 503 when every
// slot carries an exchange; heads must arrive within `header_timeout`, requests
// and writes make progress within `client_timeout`. Contention is logged at most once per
// period (each event at debug level; the counters are metrics).
//
// Thread-safety: the loop thread only.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <optional>

#include "gateway/auth.hpp"
#include "gateway/http_loop.hpp"
#include "gateway/logging.hpp"

namespace sshpool::gateway {

namespace {

/// Connections admitted over `max_clients` only to be answered 503 (then closed): bounds
/// the descriptors that refusals hold while they linger.
constexpr std::size_t refusal_slots = 64;
/// Shortest period between two warnings that clients were shed or refused.
constexpr std::chrono::seconds admission_warn_period{10};

/// "ip:port" of `addr`.
std::string peer_name(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  std::uint16_t port = 0;
  if (addr.ss_family == AF_INET) {
    auto& in = reinterpret_cast<const sockaddr_in&>(addr);
    ::inet_ntop(AF_INET, &in.sin_addr, host, sizeof host);
    port = ntohs(in.sin_port);
  } else if (addr.ss_family == AF_INET6) {
    auto& in6 = reinterpret_cast<const sockaddr_in6&>(addr);
    ::inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof host);
    port = ntohs(in6.sin6_port);
  }
  return std::string{host} + ":" + std::to_string(port);
}

/// Since when `c` waits without an exchange (the longer, the sooner it is shed), or nothing
/// if it has one (or output still to send). A connection that was answered and only waits
/// for the peer's FIN goes first; one in the middle of a request head or body counts from
/// its first byte (a dripping client is not made younger by its drips); an idle one from
/// its last input or the end of its last exchange.
std::optional<steady::time_point> waiting_since(const connection& c) {
  if (c.ph == phase::lingering)
    return steady::time_point::min();
  if (c.ph != phase::reading || c.exchange != 0 || c.unsent() > 0)
    return std::nullopt;
  return c.reader.in_message() ? c.reader.started() : c.last_input;
}

} // namespace

bool http_server::loop::has_room() const {
  return connections_.size() < opts_.max_clients + refusal_slots;
}

void http_server::loop::admit(net::unique_fd fd, const sockaddr_storage& addr) {
  auto c = std::make_unique<connection>(opts_.max_header_bytes, opts_.max_body_bytes);
  std::uint64_t key = connections_.next_key();
  c->id = key;
  c->fd = std::move(fd);
  c->peer = peer_name(addr);
  // One host: an IPv4 address, or an IPv6 /64 (a host can take any address in its /64).
  c->source = auth_source(c->peer);
  c->events = EPOLLIN | EPOLLRDHUP;
  c->accepted = c->last_input = c->last_write_progress = steady::now();
  bool admitted = make_room(c->source);
  if (!attach_tls(*c) || !loop_.add(c->fd.get(), c->events, key))
    return;
  owner_.counters_.connections_accepted.fetch_add(1);
  owner_.counters_.open_connections.fetch_add(1);
  ++per_source_[c->source].open;
  connection& added = connections_.insert(key, std::move(c));
  if (!admitted) {
    owner_.counters_.refused_connections.fetch_add(1);
    reject(added, 503, "too many client connections; try again later");
    mark(added);
  }
  update_waiting(added);
}

bool http_server::loop::make_room(const std::string& source) {
  auto slots = per_source_.find(source);
  bool source_full = opts_.max_clients_per_source != 0 && slots != per_source_.end() &&
                     slots->second.open >= opts_.max_clients_per_source;
  if (!source_full && connections_.size() < opts_.max_clients)
    return true;
  auto oldest = [&] { return source_full ? slots->second.order.oldest() : waiting_.oldest(); };
  connection* victim = oldest();
  // Input read since a connection was last serviced may have made it younger (or started
  // an exchange): such a one is put in its place and the head looked at again.
  while (victim != nullptr) {
    auto since = waiting_since(*victim);
    if (since && *since == victim->waiting.since)
      break;
    update_waiting(*victim);
    victim = oldest();
  }
  if (victim == nullptr)
    return false;
  owner_.counters_.shed_connections.fetch_add(1);
  log_event(spdlog::level::debug, "client_shed",
            {field("peer", victim->peer), field("reason", source_full ? "source_full" : "full")});
  drop(*victim);
  return true;
}

void http_server::loop::update_waiting(connection& c) {
  auto since = waiting_since(c);
  if (since && c.waiting.linked && c.waiting.since == *since)
    return; // in its place
  if (!since && !c.waiting.linked)
    return; // out, and stays out
  // Every connection in the table counts in its source's slots (`admit`); without them it
  // is only taken out, so that `make_room` never meets it again.
  auto slots = per_source_.find(c.source);
  if (since && slots != per_source_.end()) {
    waiting_.place(c, *since);
    slots->second.order.place(c, *since);
    return;
  }
  waiting_.remove(c);
  if (slots != per_source_.end())
    slots->second.order.remove(c);
}

void http_server::loop::release_slot(connection& c) {
  waiting_.remove(c);
  auto slots = per_source_.find(c.source);
  if (slots == per_source_.end())
    return;
  slots->second.order.remove(c);
  if (--slots->second.open == 0)
    per_source_.erase(slots);
}

void http_server::loop::sweep(steady::time_point now) {
  std::vector<connection*> expired;
  std::vector<connection*> slow;
  std::vector<connection*> late_heads;
  for (auto& [id, c] : connections_) {
    if (c->handshaking()) {
      // A TLS handshake is part of the first head's deadline (even for a refusal waiting
      // to be sent): a stuck one is a slow client.
      if (now - c->accepted > opts_.header_timeout) {
        owner_.counters_.header_timeouts.fetch_add(1);
        owner_.counters_.tls_handshake_timeouts.fetch_add(1);
        expired.push_back(c.get());
      }
    } else if (c->ph == phase::lingering) {
      if (now >= c->linger_deadline)
        expired.push_back(c.get());
    } else if (c->unsent() > 0) {
      if (now - c->last_write_progress > opts_.client_timeout)
        expired.push_back(c.get());
    } else if (c->ph == phase::reading) {
      // A head is due: the first request's from the accept on, a later one's from its
      // first byte on.
      bool begun = c->reader.in_message();
      bool head_due = begun ? !c->reader.head_done() : c->requests == 0;
      auto head_since = begun ? c->reader.started() : c->accepted;
      if (head_due && now - head_since > opts_.header_timeout) {
        owner_.counters_.header_timeouts.fetch_add(1);
        (begun ? late_heads : expired).push_back(c.get());
      } else if (begun && now - c->reader.started() > opts_.client_timeout) {
        slow.push_back(c.get());
      } else if (!begun && now - c->last_input > opts_.client_timeout) {
        expired.push_back(c.get());
      }
    }
  }
  for (auto* c : expired)
    drop(*c);
  for (auto* c : late_heads) {
    reject(*c, 408,
           "request head not received within " + std::to_string(opts_.header_timeout.count()) +
               " ms");
    mark(*c);
  }
  warn_about_admission(now);
  // Out of descriptors with no client connection to close (the SSH sockets took them):
  // try again every sweep rather than waiting for a drop that may never come.
  if (!stopping_ && connections_.size() < opts_.max_clients)
    loop_.resume_accepting();
  for (auto* c : slow) {
    reject(*c, 408,
           "request not received within " + std::to_string(opts_.client_timeout.count()) + " ms");
    mark(*c);
  }
}

void http_server::loop::warn_about_admission(steady::time_point now) {
  if (now < next_admission_warn_)
    return;
  auto now_counts = owner_.counters();
  std::array<std::uint64_t, 3> counts{now_counts.shed_connections, now_counts.refused_connections,
                                      now_counts.header_timeouts};
  if (counts == warned_counts_)
    return;
  log_event(spdlog::level::warn, "client_slots_contended",
            {field("shed", counts[0] - warned_counts_[0]),
             field("refused_503", counts[1] - warned_counts_[1]),
             field("header_timeouts", counts[2] - warned_counts_[2]),
             field("open", std::uint64_t{connections_.size()}),
             field("max_clients", std::uint64_t{opts_.max_clients})});
  warned_counts_ = counts;
  next_admission_warn_ = now + admission_warn_period;
}

} // namespace sshpool::gateway
