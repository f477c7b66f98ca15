// Test harness for sshpool-demo: runs the real binary as a child process (its stdout and
// stderr captured, so tests wait for events such as the "listening" line instead of
// sleeping), writes its config file for a private sshd and in-process backends, and talks
// to it with a small blocking HTTP/1.1 client that records when each body chunk arrived.
// Every wait is bounded.
//
// Thread-safety: each object is used by the test thread that made it; a child_process reads
// its child's output on a thread of its own, behind a mutex.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/test_sshd.hpp"
#include "support/timing.hpp"

namespace sshpool::test {

using steady = std::chrono::steady_clock;

/// A running sshpool-demo (or any program) with captured output. Killed if still running
/// when destroyed. Its stdout and stderr are read as they come, on a thread of this object:
/// a child that writes more than a pipe holds (a gateway logs every request) never blocks
/// on a pipe the test is not reading while it does something else.
class child_process {
public:
  /// Starts `args[0]` with `args` and the current environment changed by `env`: NAME=VALUE
  /// sets a variable, a bare NAME unsets it. Standard input is /dev/null.
  child_process(const std::vector<std::string>& args, const std::vector<std::string>& env = {});
  ~child_process();

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const { return pid_; }

  /// Waits until `pattern` appears in stdout (or stderr with `from_stderr`), the child
  /// closes its output, or `limit` passes; true if it appeared.
  bool wait_for_output(const std::string& pattern, std::chrono::milliseconds limit,
                       bool from_stderr = false);

  /// Waits until the child closes its output (bounded), then reaps it. Returns the exit
  /// code, or -1 (killed by a signal, or still running at the limit: then killed).
  int wait_exit(std::chrono::milliseconds limit);

  /// Sends a signal.
  void signal(int sig) const;

  /// What the child wrote to stdout so far.
  std::string out() const;
  /// What the child wrote to stderr so far.
  std::string err() const;

  /// The port of the "sshpool-demo listening on ADDR:PORT" line (0 if absent).
  std::uint16_t listening_port() const;

  /// The agent listener's port, from the "sshpool-demo agents dial in on port PORT" line
  /// (0 if absent).
  std::uint16_t agent_port() const;

  /// The admin listener's port, from the "admin endpoints on ADDR:PORT" line (0 if absent).
  std::uint16_t admin_port() const;

  /// Resident set size of the child in bytes (from /proc/PID/statm).
  std::size_t rss_bytes() const;

private:
  /// The reader thread: appends what comes on both pipes until the child closes them or
  /// the destructor writes to stop_fd_.
  void read_output();

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  /// An eventfd that stops the reader (a grandchild may keep the pipes open).
  int stop_fd_ = -1;
  bool exited_ = false;
  int status_ = 0;
  mutable std::mutex mutex_;
  /// Signalled when output comes and when both pipes are closed.
  std::condition_variable changed_;
  std::string out_;
  std::string err_;
  /// Whether a pipe is still open (the reader still reads).
  bool reading_ = true;
  std::thread reader_;
};

/// One user of a config file: the sshd's endpoint, forwarding to `target_port`.
struct test_user {
  std::string name;
  std::uint16_t target_port = 0;
};

/// A config file for `users` on `sshd` (server_nodelay off, like the fixture's endpoints),
/// listening on 127.0.0.1:0, plus `extra` top-level members (e.g. `"request_timeout":500`).
std::string make_config(const test_sshd& sshd, const std::vector<test_user>& users,
                        const std::string& extra = {});

/// Starts sshpool-demo with `config_file` and `env`, waits for its listening line and
/// fails the test (REQUIRE) if it does not come.
struct running_gateway {
  child_process proc;
  std::uint16_t port = 0;
  running_gateway(const std::string& config_file, const std::vector<std::string>& env = {},
                  const std::vector<std::string>& extra_args = {});
};

/// A response as the client saw it.
struct http_response {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  /// Transfer-Encoding: chunked.
  bool chunked = false;
  /// Each body piece (decoded chunk, or each read) and when it arrived.
  std::vector<std::pair<steady::time_point, std::string>> pieces;
  /// The server closed the connection before the body ended (or on a timeout).
  bool truncated = false;

  /// The first header named `name` (case-insensitive), or "" if none.
  std::string header(const std::string& name) const;
};

/// A blocking client connection to 127.0.0.1:port with bounded reads.
class http_client {
public:
  explicit http_client(std::uint16_t port, int receive_buffer = 0);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  /// Sends raw bytes.
  void send_raw(const std::string& bytes);

  /// Sends a request with `headers` and `body` (Content-Length if a body is given).
  void send_request(const std::string& method, const std::string& target,
                    const std::vector<std::pair<std::string, std::string>>& headers = {},
                    const std::string& body = {});

  /// Reads one response (head and whole body), within `limit`.
  http_response read_response(std::chrono::milliseconds limit = std::chrono::seconds(20));

  /// Reads only the head of a response; the body is left for `read_body`.
  http_response read_head(std::chrono::milliseconds limit = std::chrono::seconds(20));

  /// Reads the body of `res` (whose head `read_head` gave).
  void read_body(http_response& res, std::chrono::milliseconds limit = std::chrono::seconds(20));

  /// Bytes received by the socket and not read yet (FIONREAD).
  std::size_t pending_bytes() const;

  /// True if the server closed the connection (EOF within `limit`).
  bool closed_by_server(std::chrono::milliseconds limit);

  void close();

private:
  /// Reads more bytes into buffer_ before `deadline`; false on EOF or timeout.
  bool fill(steady::time_point deadline);
  bool read_line(std::string& line, steady::time_point deadline);

  int fd_ = -1;
  std::string buffer_;
};

/// One request on a fresh connection.
http_response fetch(std::uint16_t port, const std::string& method, const std::string& target,
                    const std::vector<std::pair<std::string, std::string>>& headers = {},
                    const std::string& body = {});

/// The value of the Prometheus sample `name{labels}` ("" if absent) in `text`.
std::string metric_value(const std::string& text, const std::string& name_and_labels);

/// The value of the sample `name{labels}` in the /metrics of 127.0.0.1:`port` (-1 if absent).
double metric(std::uint16_t port, const std::string& name_and_labels);

/// Checks `text` with `promtool check metrics` (written to a file in `dir`): no complaint
/// (CHECK). Without promtool (Debian package prometheus) it only warns.
void check_promtool(const temp_dir& dir, const std::string& text);

} // namespace sshpool::test
