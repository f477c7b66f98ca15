// The POSIX chores the test servers, fixtures and tests share: a private temporary directory,
// reads and writes of files and pipes, and child processes with their output redirected.
//
// Thread-safety: reentrant; each call works on its own files and processes. Failures throw
// std::system_error naming what failed.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace sshpool::test {

/// Throws std::system_error for the current errno.
[[noreturn]] void throw_errno(const std::string& what);

/// A fresh private directory `prefix`-XXXXXX under $TMPDIR (or /tmp, if unset or empty).
std::string make_temp_dir(const std::string& prefix);

/// A fresh private directory (as make_temp_dir), removed with its content when destroyed.
class temp_dir {
public:
  explicit temp_dir(const std::string& prefix = "sshpool-test");
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const noexcept { return path_; }
  /// Writes `content` to path()/name; returns the full path.
  std::string write(const std::string& name, const std::string& content) const;

private:
  std::string path_;
};

/// The whole content of `path`, read as bytes.
std::string read_file(const std::string& path);

/// Reads what `fd` has (one read(2), retried on EINTR) and appends it to `out`; false at EOF
/// or on an error.
bool read_some(int fd, std::string& out);

/// Writes `content` to `path`, created (with `mode`) or truncated.
void write_file(const std::string& path, const std::string& content, mode_t mode = 0644);

/// Spawns `argv` (looked up in PATH) with stdin from /dev/null, stdout and stderr to `out_fd`,
/// no other fd inherited, default signal dispositions and an empty signal mask.
pid_t spawn(const std::vector<std::string>& argv, int out_fd);

/// Waits for the child `pid` (retrying on EINTR) and returns its wait status.
int wait_child(pid_t pid);

} // namespace sshpool::test
