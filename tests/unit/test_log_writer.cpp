// The gateway's log output (log_writer): lines go out whole and in order; a reader that
// stalls or leaves costs lines, counted and told in a notice, and never blocks the thread
// that logs.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "gateway/log_writer.hpp"

using sshpool::gateway::log_writer;

namespace {

struct pipe_fds {
  int read = -1;
  int write = -1;
  pipe_fds() {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    read = fds[0];
    write = fds[1];
  }
  ~pipe_fds() {
    close_read();
    close_write();
  }
  void close_read() {
    if (read >= 0)
      ::close(read);
    read = -1;
  }
  void close_write() {
    if (write >= 0)
      ::close(write);
    write = -1;
  }
};

/// Everything until the write end closes.
std::string read_all(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0)
      out.append(buf, static_cast<std::size_t>(n));
    else if (n == 0 || errno != EINTR)
      return out;
  }
}

log_writer::notice_fn notice() {
  return [](std::uint64_t lines) { return "dropped " + std::to_string(lines) + "\n"; };
}

std::string numbered(std::size_t i) {
  return "line " + std::to_string(i) + " " + std::string(90, 'x') + "\n";
}

} // namespace

TEST_CASE("a line is written while the writer runs, without a flush", "[log_writer]") {
  pipe_fds p;
  log_writer w{p.write, notice()};
  w.append("one line\n");
  char buf[64];
  ssize_t n = ::read(p.read, buf, sizeof buf); // waits for it: a hang fails on ctest's timeout
  CHECK(std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0) == "one line\n");
  CHECK(w.dropped() == 0);
}

TEST_CASE("a reader that stalls costs whole lines, counted and told, and never blocks append",
          "[log_writer]") {
  pipe_fds p;
  log_writer::options opts;
  opts.max_pending = 64 << 10;
  opts.batch_bytes = 8 << 10;
  auto w = std::make_unique<log_writer>(p.write, notice(), opts);
  // The pipe (64 KiB) and the buffer (64 KiB) hold ~1,300 lines of 100 bytes: most of these
  // 20,000 are dropped, and append returns for each although nothing reads.
  constexpr std::size_t total = 20000;
  for (std::size_t i = 0; i < total; ++i)
    w->append(numbered(i));
  const auto dropped_while_stalled = w->dropped();
  CHECK(dropped_while_stalled > total / 2);
  // The reader comes back: what was kept is written, then the notice.
  std::string out;
  std::thread reader{[&] { out = read_all(p.read); }};
  w.reset();
  p.close_write();
  reader.join();

  std::size_t next = 0;
  std::size_t written = 0;
  std::uint64_t told = 0;
  std::size_t start = 0;
  for (std::size_t end; (end = out.find('\n', start)) != std::string::npos; start = end + 1) {
    std::string line = out.substr(start, end + 1 - start);
    if (line.rfind("dropped ", 0) == 0) {
      told += std::stoull(line.substr(8));
      continue;
    }
    // In order, whole, each at most once.
    std::size_t i = std::stoull(line.substr(5));
    REQUIRE(i >= next);
    REQUIRE(line == numbered(i));
    next = i + 1;
    ++written;
  }
  CHECK(start == out.size()); // no partial line at the end
  CHECK(told == dropped_while_stalled);
  CHECK(written + told == total);
}

TEST_CASE("a reader that is gone: lines are counted as dropped, nothing blocks", "[log_writer]") {
  std::signal(SIGPIPE, SIG_IGN);
  pipe_fds p;
  p.close_read();
  log_writer::options opts;
  opts.close_wait = std::chrono::seconds(10); // the writer finishes: EPIPE, not a wait
  auto w = std::make_unique<log_writer>(p.write, notice(), opts);
  for (int i = 0; i < 100; ++i)
    w->append(numbered(static_cast<std::size_t>(i)));
  // Every line is accounted for once the writer has given up on each batch.
  while (w->dropped() < 100)
    std::this_thread::yield();
  CHECK(w->dropped() == 100);
}

TEST_CASE("the destructor waits a bounded time for a reader that does not read; what it "
          "left pending is written when the reader comes back",
          "[log_writer]") {
  pipe_fds p;
  REQUIRE(::fcntl(p.write, F_SETPIPE_SZ, 4096) > 0);
  log_writer::options opts;
  opts.close_wait = std::chrono::milliseconds(50);
  {
    log_writer w{p.write, notice(), opts};
    for (std::size_t i = 0; i < 1000; ++i) // 100 KB: more than the pipe holds
      w.append(numbered(i));
  } // returns after close_wait (a hang fails on ctest's timeout)
  // The writer's thread, left behind, writes the rest as the reader reads.
  std::string out;
  char buf[65536];
  while (out.find(numbered(999)) == std::string::npos) {
    ssize_t n = ::read(p.read, buf, sizeof buf);
    REQUIRE(n > 0);
    out.append(buf, static_cast<std::size_t>(n));
  }
  std::string all;
  for (std::size_t i = 0; i < 1000; ++i)
    all += numbered(i);
  CHECK(out == all);
}

TEST_CASE("drain returns once every line appended is written", "[log_writer]") {
  pipe_fds p;
  log_writer w{p.write, notice()};
  std::string all;
  for (std::size_t i = 0; i < 100; ++i) {
    w.append(numbered(i));
    all += numbered(i);
  }
  REQUIRE(w.drain(std::chrono::seconds(10)));
  // Everything is in the pipe now: a non-blocking read takes it all.
  REQUIRE(::fcntl(p.read, F_SETFL, O_NONBLOCK) == 0);
  std::string out;
  char buf[65536];
  for (ssize_t n; (n = ::read(p.read, buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<std::size_t>(n));
  CHECK(out == all);
}

TEST_CASE("a drop with nothing else to write is still told, at the end", "[log_writer]") {
  pipe_fds p;
  log_writer::options opts;
  opts.max_pending = 100;
  auto w = std::make_unique<log_writer>(p.write, notice(), opts);
  w->append(std::string(200, 'x') + "\n"); // over max_pending: dropped, nothing pending
  CHECK(w->dropped() == 1);
  w.reset();
  p.close_write();
  CHECK(read_all(p.read) == "dropped 1\n");
}
