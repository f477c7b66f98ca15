// What the scenarios of sshpool-bench-engine share (engine_scenarios.cpp holds the program,
// scenario_*.cpp the scenarios): their command line's settings, the table each prints, the
// CSV rows each appends, and the engines they measure. No CAF here.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "report.hpp"
#include "sshpool/sshpool.hpp"

namespace sshpool::bench {

/// sshpool-bench-engine's command line (see its usage text).
struct scenario_options {
  std::string scenario;
  endpoint ep;
  std::string csv;
  std::size_t users = 1000;
  std::size_t connectors = 0;
  std::size_t handshake_rate = 0;
  std::string sshd_log;
  std::size_t steps = 10;
  double duration_s = 5;
  std::size_t in_flight = 64;
  std::uint64_t bytes = std::uint64_t{100} << 20;
  std::string file = "/files/bulk";
  std::uint16_t ssh_l_port = 0;
  std::size_t rounds = 3;
  std::size_t streams = 8;
  std::string stream_file = "/files/bulk-10m";
  std::uint64_t stream_bytes = std::uint64_t{10} << 20;
};

/// One line of a scenario's table: a measured figure, its reference (from the same run, or a
/// target), and how they compare.
struct row {
  std::string what;
  std::string value;
  std::string reference;
  std::string ratio;
};

/// Prints a scenario's table under `title` to stdout.
void print_rows(const std::string& title, const std::vector<row>& rows);

/// Ends a scenario: appends `lines` to the --csv file (if one was given; a new file gets the
/// context columns and `columns` as its header) and returns the exit code, 0 if the run was
/// `clean` and the file written.
int finish(const scenario_options& opts, const std::string& columns,
           const std::vector<std::string>& lines, bool clean);

/// "0.123 ms" or "12.3 ms".
std::string ms(double x);

/// x / y as "1.23x", "-" if y is not positive.
std::string ratio(double x, double y);

/// `d` in seconds.
double seconds(std::chrono::nanoseconds d);

/// prefix + from, ..., prefix + (from + n - 1).
std::vector<std::string> user_names(const std::string& prefix, std::size_t from, std::size_t n);

/// An engine (logging warnings and worse, leases waited for up to 120 s, --connectors and
/// --handshake-rate applied) whose users get `connections_per_user` connections at most.
std::unique_ptr<engine> make_engine(const scenario_options& opts, engine_config cfg,
                                    std::size_t connections_per_user = 1);

/// Sets --sshd-port's endpoint for each of `users`; throws std::runtime_error if refused.
void set_endpoints(engine& e, const scenario_options& opts, const std::vector<std::string>& users);

/// The body nginx answers on / (what run_first_requests expects).
constexpr std::size_t body_bytes = 100;
/// How long a fleet of first requests may take.
constexpr auto fleet_limit = std::chrono::seconds(120);

/// The scenarios, each printing its table and returning the program's exit code.
int cold_start(const scenario_options& opts, const machine_context& ctx);
int footprint(const scenario_options& opts, const machine_context& ctx);
int pool_ops(const scenario_options& opts, const machine_context& ctx);
int bulk(const scenario_options& opts, const machine_context& ctx);

} // namespace sshpool::bench
