// The epoll plumbing under the demo's two HTTP/1.1 servers (the mock backend and the
// gateway's front end), written once: a listening socket, an eventfd that wakes the loop
// from other threads, the epoll set over them and the connections (each under a key of its
// own), accepting with a budget per readiness event, and the table that owns the
// connections and defers their destruction to the end of the event being handled. Each
// server keeps its own phases, limits and policies; this is only the loop's machinery.
//
// Thread-safety: `wake` may be called from any thread; everything else belongs to the
// loop's thread (construction and destruction included, before and after it runs).
#pragma once

#include <sys/epoll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "net/net.hpp"

namespace sshpool::net {

/// A listening socket, a wake-up eventfd and the epoll set of one server thread.
class event_loop {
public:
  /// Connections accepted per readiness event of the listener (others are not starved).
  static constexpr int accept_budget = 64;
  /// The first key free for connections (the listener and the eventfd use those below).
  static constexpr std::uint64_t first_key = 2;

  /// Listens on `host`:`port` (port 0: ephemeral) and creates the eventfd and the epoll set.
  /// Throws std::system_error whose message starts with "`who`:".
  event_loop(const std::string& host, std::uint16_t port, const std::string& who);

  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;

  /// The port actually listened on.
  std::uint16_t port() const noexcept { return port_; }

  /// Makes `poll` report a wake-up (from any thread).
  void wake() const noexcept;
  /// Resets the eventfd after a wake-up was reported, so the next `wake` is seen again.
  void clear_wake() const noexcept;
  /// The eventfd (`wake` for code that holds only the descriptor).
  int wake_fd() const noexcept { return wake_.get(); }

  /// Registers `fd` under `key` for `events`; false (errno set) on failure.
  bool add(int fd, std::uint32_t events, std::uint64_t key) const;
  /// Changes the events of `fd`; false (errno set) on failure.
  bool modify(int fd, std::uint32_t events, std::uint64_t key) const;
  /// Unregisters `fd` (closing it does too).
  void remove(int fd) const;

  /// Waits at most `timeout_ms` (-1: no limit), then calls `on_wake()` for a wake-up,
  /// `on_listener()` when connections wait to be accepted and `on_ready(key, events)` for
  /// every other ready descriptor. False when epoll_wait failed (errno set; EINTR is none).
  template <class Wake, class Listener, class Ready>
  bool poll(int timeout_ms, Wake&& on_wake, Listener&& on_listener, Ready&& on_ready);

  /// Accepts up to `accept_budget` waiting connections, each non-blocking, close-on-exec and
  /// with TCP_NODELAY, and hands it to `admit(unique_fd, const sockaddr_storage&)`. Stops
  /// accepting (`pause_accepting`) when `has_room()` says false or descriptors run out.
  template <class Room, class Admit>
  void accept_pending(Room&& has_room, Admit&& admit);

  /// Stops polling the listener (it would stay readable and spin) until `resume_accepting`.
  void pause_accepting();
  /// Polls the listener again if it was paused (and is still open).
  void resume_accepting();
  /// Closes the listener for good (no connection is accepted any more).
  void close_listener();

private:
  static constexpr std::uint64_t listen_key = 0;
  static constexpr std::uint64_t wake_key = 1;

  /// The outcome of one accept4.
  enum class accepted { connection, retry, none };
  accepted accept_one(unique_fd& fd, sockaddr_storage& addr);

  unique_fd listen_;
  unique_fd epoll_;
  unique_fd wake_;
  std::uint16_t port_ = 0;
  bool accepting_ = true;
  std::array<epoll_event, 256> events_{};
};

/// The connections of one loop by key, owning them; a closed one is destroyed only by
/// `flush` (at the end of the event that closed it, so no reference dangles meanwhile).
template <class Conn>
class connection_table {
public:
  using map = std::unordered_map<std::uint64_t, std::unique_ptr<Conn>>;

  /// A key for a new connection (never used before in this table).
  std::uint64_t next_key() noexcept { return next_key_++; }

  /// Adds `c` under `key`.
  Conn& insert(std::uint64_t key, std::unique_ptr<Conn> c) {
    return *connections_.emplace(key, std::move(c)).first->second;
  }

  /// The connection under `key`, or nullptr.
  Conn* find(std::uint64_t key) const {
    auto it = connections_.find(key);
    return it == connections_.end() ? nullptr : it->second.get();
  }

  /// Removes the connection under `key` from the table; it lives until `flush`.
  void retire(std::uint64_t key) {
    auto it = connections_.find(key);
    if (it == connections_.end())
      return;
    closed_.push_back(std::move(it->second));
    connections_.erase(it);
  }

  /// Destroys the retired connections.
  void flush() noexcept { closed_.clear(); }

  std::size_t size() const noexcept { return connections_.size(); }
  typename map::const_iterator begin() const noexcept { return connections_.begin(); }
  typename map::const_iterator end() const noexcept { return connections_.end(); }

private:
  map connections_;
  std::vector<std::unique_ptr<Conn>> closed_;
  std::uint64_t next_key_ = event_loop::first_key;
};

template <class Wake, class Listener, class Ready>
bool event_loop::poll(int timeout_ms, Wake&& on_wake, Listener&& on_listener, Ready&& on_ready) {
  int n = ::epoll_wait(epoll_.get(), events_.data(), static_cast<int>(events_.size()), timeout_ms);
  if (n < 0)
    return errno == EINTR;
  for (int i = 0; i < n; ++i) {
    std::uint64_t key = events_[i].data.u64;
    if (key == wake_key)
      on_wake();
    else if (key == listen_key)
      on_listener();
    else
      on_ready(key, events_[i].events);
  }
  return true;
}

template <class Room, class Admit>
void event_loop::accept_pending(Room&& has_room, Admit&& admit) {
  for (int i = 0; i < accept_budget; ++i) {
    if (!has_room()) {
      pause_accepting();
      return;
    }
    unique_fd fd;
    sockaddr_storage addr{};
    switch (accept_one(fd, addr)) {
    case accepted::connection:
      admit(std::move(fd), addr);
      break;
    case accepted::retry:
      break;
    case accepted::none:
      return;
    }
  }
}

} // namespace sshpool::net
