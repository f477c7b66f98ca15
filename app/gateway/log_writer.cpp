// See log_writer.hpp.
#include "gateway/log_writer.hpp"

#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace sshpool::gateway {

struct log_writer::state {
  int fd;
  notice_fn notice;
  options opts;
  std::mutex mutex;
  std::condition_variable wake;
  /// Signalled after each batch written, and when the thread ends.
  std::condition_variable written;
  std::string pending;
  std::atomic<std::uint64_t> dropped{0};
  bool urgent = false;
  bool stop = false;
  /// A batch is being written (pending is not all there is).
  bool writing = false;
  bool finished = false;
  std::thread thread;
};

namespace {

using clock = std::chrono::steady_clock;

/// Writes all of `data` to `fd`, waiting for it as long as it takes (this thread is the
/// only one that waits on the reader); the bytes not written if the fd fails.
std::string_view write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { // a non-blocking fd
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, -1) >= 0 || errno == EINTR)
        continue;
    }
    break;
  }
  return data;
}

void run(log_writer::state& s) {
  pthread_setname_np(pthread_self(), "sshpool.log");
  std::string batch;
  clock::time_point last_write{};
  std::uint64_t noticed = 0; // drops told in a notice so far
  bool last_ok = true;       // the last batch was written whole
  bool torn = false;         // ... or it failed inside a line: the next starts a new one
  std::unique_lock<std::mutex> lock{s.mutex};
  for (;;) {
    s.wake.wait(lock, [&s] { return s.stop || !s.pending.empty(); });
    // At low rates a line goes out at once; under load once per batch window.
    auto due = last_write + s.opts.batch_window;
    if (!s.stop && !s.urgent && clock::now() < due)
      s.wake.wait_until(
          lock, due, [&s] { return s.stop || s.urgent || s.pending.size() >= s.opts.batch_bytes; });
    s.urgent = false;
    // Stopping with nothing pending: done, once the drops are told (unless the fd failed).
    if (s.pending.empty() && (s.dropped.load() == noticed || !last_ok))
      break;
    batch.clear();
    batch.swap(s.pending);
    s.writing = true;
    lock.unlock();
    const bool lead = torn; // a newline that only ends the torn line
    if (lead)
      batch.insert(0, 1, '\n');
    // The drops so far are told at the end of the batch, and told again if it is lost.
    std::uint64_t told = s.dropped.load() - noticed;
    if (told != 0)
      batch += s.notice(told);
    std::string_view lost = write_all(s.fd, batch);
    last_write = clock::now();
    last_ok = lost.empty();
    if (std::size_t out = batch.size() - lost.size(); out != 0)
      torn = batch[out - 1] != '\n';
    if (last_ok) {
      noticed += told;
    } else {
      // Lines lost, not counting the notice (its newline ends the batch) nor the newline
      // that was to end a torn line.
      auto lines = static_cast<std::uint64_t>(std::count(lost.begin(), lost.end(), '\n'));
      lines -= told != 0 ? 1 : 0;
      lines -= lead && lost.size() == batch.size() ? 1 : 0;
      s.dropped += lines;
    }
    lock.lock();
    s.writing = false;
    s.written.notify_all();
  }
  s.finished = true;
  s.written.notify_all();
}

} // namespace

log_writer::log_writer(int fd, notice_fn notice, options opts) : state_(std::make_shared<state>()) {
  state_->fd = fd;
  state_->notice = std::move(notice);
  state_->opts = opts;
  // The thread holds the state too: one left behind by the destructor never outlives it.
  state_->thread = std::thread([s = state_] { run(*s); });
}

log_writer::~log_writer() {
  std::unique_lock<std::mutex> lock{state_->mutex};
  state_->stop = true;
  state_->wake.notify_one();
  bool done =
      state_->written.wait_for(lock, state_->opts.close_wait, [this] { return state_->finished; });
  lock.unlock();
  if (done)
    state_->thread.join();
  else // blocked on a reader that does not read: the process may exit without it
    state_->thread.detach();
}

void log_writer::append(std::string_view line) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> guard{state_->mutex};
    auto& pending = state_->pending;
    if (pending.size() + line.size() > state_->opts.max_pending) {
      ++state_->dropped;
      return;
    }
    std::size_t before = pending.size();
    pending.append(line);
    wake = before == 0 ||
           (before < state_->opts.batch_bytes && pending.size() >= state_->opts.batch_bytes);
  }
  if (wake)
    state_->wake.notify_one();
}

bool log_writer::drain(std::chrono::milliseconds limit) {
  std::unique_lock<std::mutex> lock{state_->mutex};
  state_->urgent = true;
  state_->wake.notify_one();
  return state_->written.wait_for(lock, limit, [this] {
    return state_->finished || (state_->pending.empty() && !state_->writing);
  });
}

std::uint64_t log_writer::dropped() const {
  return state_->dropped.load();
}

} // namespace sshpool::gateway
