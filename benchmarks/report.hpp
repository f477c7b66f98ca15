// What every sshpool benchmark program shares: its command line's usage errors and bounded
// numbers, what a timed run counted, the machine it ran on, number formatting, percentiles, CSV
// quoting and appending, and the live progress line on stderr. No CAF here.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace sshpool::bench {

/// A program's command line: how it reports a bad argument.
struct command_line {
  const char* program;
  const char* usage_text;

  /// Prints "program: what" and the usage text to stderr, then exits with 2.
  [[noreturn]] void fail(const std::string& what) const;

  /// Prints the usage text to stdout, then exits with 0 (the answer to --help).
  [[noreturn]] void help() const;

  /// `text` as a whole decimal number in [min, max]; else `fail`s naming `flag`.
  std::uint64_t number(const std::string& flag, const std::string& text, std::uint64_t min,
                       std::uint64_t max) const;

  /// `text` as a number of seconds in (0, max]; else `fail`s naming `flag`.
  double seconds(const std::string& flag, const std::string& text, double max) const;
};

/// What a timed run counted: the operations that succeeded, those that failed (the first
/// failure described) and how long the run took.
struct run_counts {
  std::uint64_t ok = 0;
  std::uint64_t errors = 0;
  std::chrono::nanoseconds elapsed{0};
  /// The first failure, for the report (empty if none).
  std::string first_error;

  /// Counts a failed operation and keeps the first description.
  void fail(std::string what) {
    ++errors;
    if (first_error.empty())
      first_error = std::move(what);
  }

  /// Adds the counts of `part` (one thread's share of this run); keeps the first failure.
  void add(const run_counts& part) {
    ok += part.ok;
    errors += part.errors;
    if (first_error.empty())
      first_error = part.first_error;
  }
};

/// Opens `file` for appending; `header` is written first if the file is new or empty.
std::ofstream open_append(const std::string& file, const std::string& header);

/// Where and when a benchmark ran, for the report header and every CSV row.
struct machine_context {
  std::string date;
  std::string cpu;
  long nproc = 0;
  std::string kernel;
  std::string command;
};

/// Reads the date (UTC), CPU model, core count and kernel; `command` is argv, shell-quoted.
machine_context read_context(int argc, char** argv);

/// Prints the header lines (program, date, machine, command) to stdout.
void print_context(const std::string& program, const machine_context& ctx);

/// Nearest-rank percentile of sorted nanosecond values, in milliseconds (0 if empty).
double percentile_ms(const std::vector<std::int64_t>& sorted, double p);

/// 1234567 -> "1,234,567".
std::string with_commas(std::uint64_t n);

/// `x` with `decimals` digits after the point.
std::string fixed(double x, int decimals);

/// `s` padded with spaces to `width`, on the left (right-aligned) unless `left`.
std::string pad(const std::string& s, std::size_t width, bool left = false);

/// `s` as one CSV field (quoted if it holds a comma, a quote or a newline).
std::string csv_field(const std::string& s);

/// The CSV columns that describe the run's context, and their values for `ctx`.
extern const char* const context_csv_header; // "date,cpu,nproc,kernel"
std::string context_csv(const machine_context& ctx);

/// The live line on stderr while a load runs (elapsed time, completed operations, current
/// rate), rewritten in place with \r every 250 ms; only on a terminal, so that CI logs stay
/// readable. Cleared when destroyed.
class progress_line {
public:
  progress_line(std::string label, const std::atomic<std::uint64_t>& completed,
                std::string unit = "req");
  ~progress_line();

  progress_line(const progress_line&) = delete;
  progress_line& operator=(const progress_line&) = delete;

private:
  void loop();

  std::string label_;
  const std::atomic<std::uint64_t>& completed_;
  std::string unit_;
  std::chrono::steady_clock::time_point started_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

} // namespace sshpool::bench
