// The gateway's log output: lines are appended to a bounded buffer and written to a file
// descriptor (stderr) by a thread of its own, so that no thread that logs ever waits on
// whatever reads the output.
//
//                 append: room in the buffer
//   a line ───────────────────────────────────► pending ── the writer thread, within
//     │                                                    `batch_window` (at once once
//     │ append: the buffer holds `max_pending` bytes       `batch_bytes` are pending) ──► fd
//     ▼
//   dropped, counted; once the writer has room again it writes one notice line (made by
//   `notice`) saying how many were dropped
//
// A reader that stalls (a full pipe, journald behind) therefore costs lines, counted in
// `dropped()` and in the notice, instead of freezing the gateway: with spdlog's own stderr
// sink every thread that logs waits in write(2), holding the sink's lock, until the reader
// reads again. Lines are written whole and in the order appended. At low rates a line is
// written at once; under load the writer wakes once per `batch_window`, not once per line.
//
// The destructor writes what is pending, waiting at most `close_wait` for the reader; lines
// still pending then are lost. A process that crashes loses what is pending: the last batch
// window's lines when the reader keeps up, up to `max_pending` bytes when it does not. A
// write that fails inside a line (a full disk) loses the rest of it; the next line starts on
// a line of its own.
//
// Thread-safety: `append`, `dropped` and `drain` from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace sshpool::gateway {

class log_writer {
public:
  struct options {
    /// Bytes appended but not yet written beyond which lines are dropped.
    std::size_t max_pending = 4 << 20;
    /// Pending bytes that wake the writer before its batch window ends.
    std::size_t batch_bytes = 64 << 10;
    /// How long the writer gathers lines, once one is pending, before it writes them.
    std::chrono::milliseconds batch_window{10};
    /// How long the destructor waits for the reader to take what is pending.
    std::chrono::milliseconds close_wait{2000};
  };

  /// The line (newline included) that reports `lines` dropped lines.
  using notice_fn = std::function<std::string(std::uint64_t lines)>;

  /// Writes to `fd` (not owned, not closed).
  log_writer(int fd, notice_fn notice, options opts);
  log_writer(int fd, notice_fn notice) : log_writer(fd, std::move(notice), options{}) {}
  ~log_writer();

  log_writer(const log_writer&) = delete;
  log_writer& operator=(const log_writer&) = delete;

  /// Queues `line` (whole lines, newline included); never waits for the reader. A line
  /// that does not fit under `max_pending` is dropped and counted.
  void append(std::string_view line);

  /// Waits, at most `limit`, until every line appended so far is written (or lost); false
  /// if some still wait for the reader.
  bool drain(std::chrono::milliseconds limit);

  /// Lines dropped so far because the reader did not keep up (or the fd failed).
  std::uint64_t dropped() const;

  struct state;

private:
  std::shared_ptr<state> state_;
};

} // namespace sshpool::gateway
