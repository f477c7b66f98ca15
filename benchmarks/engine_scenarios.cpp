// sshpool-bench-engine: the engine-only scenarios of ./benchmarks/run.sh, each against a
// private sshd (and nginx) that run.sh starts, each printing a table with its reference from
// the same run and the ratio, and appending CSV rows to --csv:
//   cold-start  N users' first requests at once: time until all answered, handshakes/s,
//               errors, sshd refusals, lease (handshake) p50/p95 against one handshake alone
//   footprint   N idle connections (one per user) held: RSS per connection, threads
//   pool-ops    lease + release pairs with no I/O on a warm connection (facade from 1 and 8
//               threads, typed actor interface with many in flight) against bare CAF round
//               trips
//   bulk        one large streamed response through one channel against the same download
//               through OpenSSH `ssh -L` (same cipher) and from nginx directly; then N
//               concurrent streams over one engine connection and over three, against N
//               downloads at once through `ssh -L` (one connection)
// No CAF in this file: the actor drivers are in fleet.cpp and pool_ops.cpp.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "bulk.hpp"
#include "fleet.hpp"
#include "pool_ops.hpp"
#include "report.hpp"
#include "sshpool/sshpool.hpp"

namespace sshpool::bench {

namespace {

const char* usage_text = R"(usage: sshpool-bench-engine SCENARIO [options]
scenarios: cold-start, footprint, pool-ops, bulk
  --sshd-port P       the sshd the engine connects to (127.0.0.1)
  --sshd-user U       its user
  --identity FILE     private key for that user
  --known-hosts FILE  known_hosts holding the sshd's host key
  --target-port P     nginx on 127.0.0.1 (100-byte body on /, files under /files/)
  --csv FILE          append the results as CSV rows to FILE
  --users N           cold-start, footprint: users, one connection each (default 1000)
  --connectors N      cold-start, footprint: engine connector_threads (default: engine's)
  --handshake-rate N  cold-start, footprint: max_handshakes_per_second (default: engine's)
  --sshd-log FILE     cold-start: sshd's log, where its refusals (MaxStartups) are counted
  --steps N           footprint: connections are opened in N steps (default 10)
  --duration S        pool-ops: seconds per case (default 5)
  --in-flight N       pool-ops: pairs in flight through the actor interface (default 64)
  --bytes N           bulk: size of the download (default 104857600)
  --file PATH         bulk: its path on nginx (default /files/bulk)
  --ssh-l-port P      bulk: an OpenSSH `ssh -L` forward to nginx
  --streams N         bulk: concurrent streams of the second part (default 8)
  --stream-file PATH  bulk: what each of them downloads (default /files/bulk-10m)
  --stream-bytes N    bulk: its size (default 10485760)
  --cipher NAME       bulk: the engine's cipher (default aes128-gcm@openssh.com)
  --rounds N          bulk: interleaved rounds, the median is reported (default 3)
)";

const command_line cli{"sshpool-bench-engine", usage_text};

[[noreturn]] void usage_error(const std::string& what) {
  cli.fail(what);
}

struct options {
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

std::uint64_t parse_number(const std::string& flag, const std::string& text, std::uint64_t min,
                           std::uint64_t max) {
  return cli.number(flag, text, min, max);
}

options parse_options(int argc, char** argv) {
  options opts;
  if (argc < 2)
    usage_error("no scenario");
  opts.scenario = argv[1];
  if (opts.scenario == "--help" || opts.scenario == "-h") {
    std::cout << usage_text;
    std::exit(0);
  }
  if (opts.scenario != "cold-start" && opts.scenario != "footprint" &&
      opts.scenario != "pool-ops" && opts.scenario != "bulk")
    usage_error("unknown scenario '" + opts.scenario + "'");
  opts.ep.host = "127.0.0.1";
  opts.ep.target_host = "127.0.0.1";
  opts.ep.port = 0;
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc)
      usage_error("unknown option or missing value: " + flag);
    std::string value = argv[++i];
    if (flag == "--sshd-port") {
      opts.ep.port = static_cast<std::uint16_t>(parse_number(flag, value, 1, 65535));
    } else if (flag == "--sshd-user") {
      opts.ep.username = value;
    } else if (flag == "--identity") {
      opts.ep.identity_file = value;
    } else if (flag == "--known-hosts") {
      opts.ep.known_hosts_file = value;
    } else if (flag == "--target-port") {
      opts.ep.target_port = static_cast<std::uint16_t>(parse_number(flag, value, 1, 65535));
    } else if (flag == "--csv") {
      opts.csv = value;
    } else if (flag == "--users") {
      opts.users = parse_number(flag, value, 1, 10000);
    } else if (flag == "--connectors") {
      opts.connectors = parse_number(flag, value, 1, 64);
    } else if (flag == "--handshake-rate") {
      opts.handshake_rate = parse_number(flag, value, 1, 100000);
    } else if (flag == "--sshd-log") {
      opts.sshd_log = value;
    } else if (flag == "--steps") {
      opts.steps = parse_number(flag, value, 1, 100);
    } else if (flag == "--duration") {
      char* end = nullptr;
      opts.duration_s = std::strtod(value.c_str(), &end);
      if (end == value.c_str() || *end != '\0' || !(opts.duration_s > 0) || opts.duration_s > 600)
        usage_error("--duration wants seconds in (0, 600], not '" + value + "'");
    } else if (flag == "--in-flight") {
      opts.in_flight = parse_number(flag, value, 1, 4096);
    } else if (flag == "--bytes") {
      opts.bytes = parse_number(flag, value, 1, std::uint64_t{1} << 34);
    } else if (flag == "--file") {
      opts.file = value;
    } else if (flag == "--streams") {
      opts.streams = parse_number(flag, value, 1, 64);
    } else if (flag == "--stream-file") {
      opts.stream_file = value;
    } else if (flag == "--stream-bytes") {
      opts.stream_bytes = parse_number(flag, value, 1, std::uint64_t{1} << 32);
    } else if (flag == "--ssh-l-port") {
      opts.ssh_l_port = static_cast<std::uint16_t>(parse_number(flag, value, 1, 65535));
    } else if (flag == "--cipher") {
      opts.ep.ciphers = value;
    } else if (flag == "--rounds") {
      opts.rounds = parse_number(flag, value, 1, 100);
    } else {
      usage_error("unknown option: " + flag);
    }
  }
  if (opts.ep.port == 0 || opts.ep.username.empty() || opts.ep.identity_file.empty() ||
      opts.ep.known_hosts_file.empty() || opts.ep.target_port == 0)
    usage_error("needs --sshd-port, --sshd-user, --identity, --known-hosts and --target-port");
  return opts;
}

// -- measuring the process ------------------------------------------------------------------

std::uint64_t rss_kib() {
  std::ifstream statm{"/proc/self/statm"};
  std::uint64_t size = 0;
  std::uint64_t resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE)) / 1024;
}

std::size_t thread_count() {
  std::error_code ec;
  auto it = std::filesystem::directory_iterator{"/proc/self/task", ec};
  return ec ? 0
            : static_cast<std::size_t>(std::distance(it, std::filesystem::directory_iterator{}));
}

/// Lines of sshd's log that say it refused or dropped a connection before authentication.
std::uint64_t sshd_refusals(const std::string& log) {
  std::ifstream in{log};
  std::uint64_t n = 0;
  for (std::string line; std::getline(in, line);)
    if (line.find("drop connection") != std::string::npos ||
        line.find("MaxStartups") != std::string::npos ||
        line.find("Connection reset") != std::string::npos)
      ++n;
  return n;
}

/// The upper bound of the histogram bucket holding the `p` quantile of the observations
/// between two snapshots (seconds; +Inf as 0).
double histogram_quantile_bound(const histogram_snapshot& before, const histogram_snapshot& after,
                                double p) {
  auto total = after.count - before.count;
  if (total == 0)
    return 0;
  for (std::size_t i = 0; i < after.bounds.size(); ++i) {
    auto below = after.counts[i] - (i < before.counts.size() ? before.counts[i] : 0);
    if (static_cast<double>(below) >= p * static_cast<double>(total))
      return after.bounds[i];
  }
  return 0;
}

// -- reporting ------------------------------------------------------------------------------

/// One line of a scenario's table: a measured figure, its reference (from the same run, or a
/// target), and how they compare.
struct row {
  std::string what;
  std::string value;
  std::string reference;
  std::string ratio;
};

void print_rows(const std::string& title, const std::vector<row>& rows) {
  std::cout << "\n"
            << title << "\n"
            << pad("", 2) << pad("measured", 44, true) << pad("value", 16) << pad("reference", 34)
            << pad("ratio", 14) << "\n";
  for (auto& r : rows)
    std::cout << pad("", 2) << pad(r.what, 44, true) << pad(r.value, 16) << pad(r.reference, 34)
              << pad(r.ratio, 14) << "\n";
}

/// Appends `lines` (after `header` if the file is new) to `file`.
bool append_csv(const std::string& file, const std::string& header,
                const std::vector<std::string>& lines) {
  if (file.empty())
    return true;
  auto out = open_append(file, header);
  for (auto& l : lines)
    out << l << '\n';
  out.close();
  if (!out)
    std::cerr << "sshpool-bench-engine: cannot write " << file << "\n";
  return static_cast<bool>(out);
}

std::string ms(double x) {
  return fixed(x, x < 1 ? 3 : 1) + " ms";
}

std::string ratio(double x, double y) {
  return y > 0 ? fixed(x / y, 2) + "x" : "-";
}

double seconds(std::chrono::nanoseconds d) {
  return std::chrono::duration<double>(d).count();
}

std::vector<std::string> user_names(const std::string& prefix, std::size_t from, std::size_t n) {
  std::vector<std::string> names;
  names.reserve(n);
  for (std::size_t i = from; i < from + n; ++i)
    names.push_back(prefix + std::to_string(i));
  return names;
}

/// An engine whose users get `connections_per_user` connections at most.
std::unique_ptr<engine> make_engine(const options& opts, engine_config cfg,
                                    std::size_t connections_per_user = 1) {
  cfg.log_level = "warn";
  if (opts.connectors > 0)
    cfg.connector_threads = opts.connectors;
  if (opts.handshake_rate > 0)
    cfg.pool.max_handshakes_per_second = opts.handshake_rate;
  cfg.pool.max_connections_per_user = connections_per_user;
  cfg.pool.acquire_timeout = std::chrono::seconds(120);
  return std::make_unique<engine>(cfg);
}

void set_endpoints(engine& e, const options& opts, const std::vector<std::string>& users) {
  for (auto& u : users)
    if (auto ok = e.set_endpoint(u, opts.ep); !ok)
      throw std::runtime_error{"set_endpoint: " + ok.error().to_string()};
}

constexpr std::size_t body_bytes = 100;
constexpr auto fleet_limit = std::chrono::seconds(120);

// -- cold-start -----------------------------------------------------------------------------

int cold_start(const options& opts, const machine_context& ctx) {
  auto e = make_engine(opts, {});
  const auto& cfg = e->config();
  std::cout << "cold-start: " << opts.users << " users' first requests at once; engine "
            << cfg.connector_threads << " connector threads, max "
            << cfg.pool.max_handshakes_per_second << " handshakes/s\n";
  // Reference: one handshake alone, ten times in a row.
  auto refs = user_names("ref-", 0, 10);
  set_endpoints(*e, opts, refs);
  std::vector<std::int64_t> alone;
  for (auto& u : refs) {
    auto r = run_first_requests(*e, {u}, body_bytes, fleet_limit);
    if (r.ok != 1) {
      std::cerr << "sshpool-bench-engine: reference handshake failed: " << r.first_error << "\n";
      return 1;
    }
    alone.push_back(r.lease_latencies.front());
  }
  std::sort(alone.begin(), alone.end());
  auto alone_p50 = percentile_ms(alone, 0.5);

  auto users = user_names("user-", 0, opts.users);
  set_endpoints(*e, opts, users);
  auto before = e->metrics();
  std::atomic<std::uint64_t> answered{0};
  fleet_result r;
  {
    progress_line progress{"cold-start " + std::to_string(opts.users) + " users", answered,
                           "users"};
    r = run_first_requests(*e, users, body_bytes, fleet_limit, &answered);
  }
  auto after = e->metrics();
  std::sort(r.lease_latencies.begin(), r.lease_latencies.end());
  std::sort(r.request_latencies.begin(), r.request_latencies.end());
  auto total_s = seconds(r.elapsed);
  auto handshakes = after.handshakes_started - before.handshakes_started;
  auto failed_handshakes = after.handshakes_failed - before.handshakes_failed;
  auto refusals = opts.sshd_log.empty() ? 0 : sshd_refusals(opts.sshd_log);
  auto lease_p50 = percentile_ms(r.lease_latencies, 0.5);
  auto lease_p95 = percentile_ms(r.lease_latencies, 0.95);
  auto hist_p95 = histogram_quantile_bound(before.handshake_seconds, after.handshake_seconds, 0.95);
  auto hist_p50 = histogram_quantile_bound(before.handshake_seconds, after.handshake_seconds, 0.5);
  auto rate = total_s > 0 ? static_cast<double>(handshakes) / total_s : 0;

  print_rows(
      "cold-start (" + std::to_string(opts.users) + " users, one request each)",
      {{"time until all answered", fixed(total_s, 2) + " s", "target 10 s", ratio(total_s, 10)},
       {"handshakes / s", fixed(rate, 1), "1 / one alone: " + fixed(1000 / alone_p50, 1),
        ratio(rate, 1000 / alone_p50)},
       {"answered ok", with_commas(r.ok), with_commas(opts.users), ""},
       {"errors", with_commas(r.errors), "target 0", ""},
       {"failed handshakes (engine)", with_commas(failed_handshakes), "target 0", ""},
       {"sshd refusals (MaxStartups, resets)", with_commas(refusals), "target 0", ""},
       {"lease p50 (handshake + queueing)", ms(lease_p50), "one alone p50 " + ms(alone_p50),
        ratio(lease_p50, alone_p50)},
       {"lease p95 (handshake + queueing)", ms(lease_p95), "one alone p50 " + ms(alone_p50),
        ratio(lease_p95, alone_p50)},
       {"handshake p50 (engine histogram)", "<= " + ms(hist_p50 * 1000),
        "one alone p50 " + ms(alone_p50), ""},
       {"handshake p95 (engine histogram)", "<= " + ms(hist_p95 * 1000),
        "one alone p50 " + ms(alone_p50), ""},
       {"first response p95", ms(percentile_ms(r.request_latencies, 0.95)), "", ""}});
  if (!r.first_error.empty())
    std::cout << "  first error: " << r.first_error << "\n";
  auto header = std::string{context_csv_header} +
                ",users,connector_threads,handshakes_per_s_cap,seconds,handshakes,"
                "handshakes_per_s,ok,errors,failed_handshakes,sshd_refusals,lease_p50_ms,"
                "lease_p95_ms,lease_max_ms,handshake_hist_p95_le_ms,alone_p50_ms";
  auto line = context_csv(ctx) + ',' + std::to_string(opts.users) + ',' +
              std::to_string(cfg.connector_threads) + ',' +
              std::to_string(cfg.pool.max_handshakes_per_second) + ',' + fixed(total_s, 3) + ',' +
              std::to_string(handshakes) + ',' + fixed(rate, 1) + ',' + std::to_string(r.ok) + ',' +
              std::to_string(r.errors) + ',' + std::to_string(failed_handshakes) + ',' +
              std::to_string(refusals) + ',' + fixed(lease_p50, 2) + ',' + fixed(lease_p95, 2) +
              ',' + fixed(percentile_ms(r.lease_latencies, 1.0), 2) + ',' +
              fixed(hist_p95 * 1000, 1) + ',' + fixed(alone_p50, 2);
  if (!append_csv(opts.csv, header, {line}))
    return 1;
  return r.errors == 0 ? 0 : 1;
}

// -- footprint ------------------------------------------------------------------------------

int footprint(const options& opts, const machine_context& ctx) {
  auto e = make_engine(opts, {});
  // One connection first, so that one-time costs (libssh and crypto initialisation, reactor
  // buffers) are not counted per connection.
  set_endpoints(*e, opts, {"warm"});
  if (auto r = run_first_requests(*e, {"warm"}, body_bytes, fleet_limit); r.ok != 1) {
    std::cerr << "sshpool-bench-engine: warm-up failed: " << r.first_error << "\n";
    return 1;
  }
  auto users = user_names("user-", 0, opts.users);
  set_endpoints(*e, opts, users);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto rss_before = rss_kib();
  auto cores = std::thread::hardware_concurrency();
  std::cout << "footprint: " << opts.users << " idle connections (one per user) in " << opts.steps
            << " steps; RSS before: " << with_commas(rss_before) << " KiB, " << thread_count()
            << " threads\n";
  struct step {
    std::size_t connections;
    std::uint64_t rss;
    std::size_t threads;
  };
  std::vector<step> steps{{0, rss_before, thread_count()}};
  std::atomic<std::uint64_t> answered{0};
  std::uint64_t errors = 0;
  std::string first_error;
  {
    progress_line progress{"footprint", answered, "conns"};
    for (std::size_t s = 0; s < opts.steps; ++s) {
      auto from = opts.users * s / opts.steps;
      auto to = opts.users * (s + 1) / opts.steps;
      std::vector<std::string> wave(users.begin() + static_cast<std::ptrdiff_t>(from),
                                    users.begin() + static_cast<std::ptrdiff_t>(to));
      auto r = run_first_requests(*e, wave, body_bytes, fleet_limit, &answered);
      errors += r.errors;
      if (first_error.empty())
        first_error = r.first_error;
      steps.push_back({to, rss_kib(), thread_count()});
    }
    // Held idle for a while: the connections' keepalive and cleanup ticks run.
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
  auto stats = e->pool().get_pool_stats();
  auto rss_after = rss_kib();
  auto threads = thread_count();
  auto per_conn = static_cast<double>(rss_after - std::min(rss_after, rss_before)) /
                  static_cast<double>(opts.users);
  auto thread_cap = 2 * cores + 4;
  print_rows(
      "footprint (" + std::to_string(opts.users) + " idle connections held)",
      {{"connections held (pool stats)", with_commas(stats.total_connections),
        with_commas(opts.users + 1) + " (with warm-up)", ""},
       {"RSS before -> after", with_commas(rss_before) + " -> " + with_commas(rss_after), "KiB",
        ""},
       {"RSS per connection", fixed(per_conn, 1) + " KiB", "target 100 KiB", ratio(per_conn, 100)},
       {"threads (main thread included)", std::to_string(threads),
        "target 2 x " + std::to_string(cores) + " + 4 = " + std::to_string(thread_cap),
        ratio(static_cast<double>(threads), static_cast<double>(thread_cap))},
       {"threads before connections", std::to_string(steps.front().threads), "", ""},
       {"errors", with_commas(errors), "target 0", ""}});
  if (!first_error.empty())
    std::cout << "  first error: " << first_error << "\n";
  std::cout << "\n  connections  RSS KiB  threads\n";
  std::vector<std::string> lines;
  for (auto& s : steps) {
    std::cout << pad(with_commas(s.connections), 13) << pad(with_commas(s.rss), 9)
              << pad(std::to_string(s.threads), 9) << "\n";
    lines.push_back(context_csv(ctx) + ',' + std::to_string(s.connections) + ',' +
                    std::to_string(s.rss) + ',' + std::to_string(s.threads) + ',' +
                    fixed(per_conn, 1));
  }
  if (!append_csv(opts.csv,
                  std::string{context_csv_header} +
                      ",connections,rss_kib,threads,final_kib_per_connection",
                  lines))
    return 1;
  return errors == 0 && stats.total_connections >= opts.users ? 0 : 1;
}

// -- pool-ops -------------------------------------------------------------------------------

/// A summary of one pool-ops case.
struct ops_summary {
  std::string name;
  double per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  ops_result raw;
};

ops_summary summarize(std::string name, ops_result r) {
  ops_summary s;
  s.name = std::move(name);
  s.per_s = r.elapsed.count() > 0 ? static_cast<double>(r.ops) / seconds(r.elapsed) : 0;
  std::sort(r.latencies.begin(), r.latencies.end());
  s.p50_ms = percentile_ms(r.latencies, 0.5);
  s.p99_ms = percentile_ms(r.latencies, 0.99);
  s.raw = std::move(r);
  return s;
}

/// `threads` threads each doing get_connection + release_connection pairs for `user`.
ops_result facade_pairs(engine& e, const std::string& user, std::size_t threads,
                        const ops_limits& limits) {
  std::vector<ops_result> outs(threads);
  std::atomic<std::uint64_t> issued{0};
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + limits.duration;
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      auto& out = outs[t];
      out.latencies.reserve(1u << 18);
      while (std::chrono::steady_clock::now() < deadline && issued.fetch_add(1) < limits.max_ops &&
             out.errors == 0) {
        auto sent_at = std::chrono::steady_clock::now();
        auto conn = e.pool().get_connection(user);
        auto released = conn ? e.pool().release_connection(user, *conn) : expected<void>{};
        if (!conn || !released) {
          ++out.errors;
          out.first_error = !conn ? conn.error().to_string() : released.error().to_string();
          continue;
        }
        ++out.ops;
        out.latencies.push_back((std::chrono::steady_clock::now() - sent_at).count());
        limits.completed->fetch_add(1, std::memory_order_relaxed);
      }
    });
  for (auto& t : pool)
    t.join();
  ops_result total;
  total.elapsed = std::chrono::steady_clock::now() - start;
  for (auto& o : outs) {
    total.ops += o.ops;
    total.errors += o.errors;
    if (total.first_error.empty())
      total.first_error = o.first_error;
    total.latencies.insert(total.latencies.end(), o.latencies.begin(), o.latencies.end());
  }
  return total;
}

int pool_ops(const options& opts, const machine_context& ctx) {
  engine_config cfg;
  // Leases, not channels, are what is counted here: room for every thread and pair in flight.
  cfg.pool.max_channels_per_connection = std::max<std::size_t>(opts.in_flight, 8);
  cfg.pool.max_waiters_per_user = 4 * opts.in_flight;
  auto e = make_engine(opts, cfg);
  const std::string user = "ops";
  set_endpoints(*e, opts, {user});
  if (auto r = run_first_requests(*e, {user}, body_bytes, fleet_limit); r.ok != 1) {
    std::cerr << "sshpool-bench-engine: warm-up failed: " << r.first_error << "\n";
    return 1;
  }
  ops_limits limits;
  limits.duration = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(opts.duration_s));
  limits.in_flight = opts.in_flight;
  std::cout << "pool-ops: " << opts.duration_s << " s per case, warm connection of one user, "
            << opts.in_flight << " in flight through the actor interface\n";
  std::vector<ops_summary> cases;
  auto measure = [&](const std::string& name, auto&& fn) {
    std::atomic<std::uint64_t> done{0};
    limits.completed = &done;
    ops_result r;
    {
      progress_line progress{pad(name, 40, true), done, "ops"};
      r = fn();
    }
    cases.push_back(summarize(name, std::move(r)));
    auto& s = cases.back();
    std::cerr << "  " << pad(name, 40, true) << with_commas(static_cast<std::uint64_t>(s.per_s))
              << " /s" << (s.raw.latencies.empty() ? "" : ", p50 " + fixed(s.p50_ms, 3) + " ms")
              << "\n";
  };
  auto in_flight_name = std::to_string(opts.in_flight) + " in flight";
  measure("caf: scoped_actor round trip",
          [&] { return run_scoped_round_trips(*e, false, limits); });
  measure("caf: new scoped_actor + round trip",
          [&] { return run_scoped_round_trips(*e, true, limits); });
  measure("caf: actor round trips, " + in_flight_name,
          [&] { return run_caf_round_trips(*e, true, limits); });
  measure("caf: same without timeouts", [&] { return run_caf_round_trips(*e, false, limits); });
  measure("facade pairs, 1 thread", [&] { return facade_pairs(*e, user, 1, limits); });
  measure("facade pairs, 8 threads", [&] { return facade_pairs(*e, user, 8, limits); });
  measure("actor pairs, " + in_flight_name,
          [&] { return run_actor_pairs(*e, user, false, limits); });
  measure("actor pairs, with CAF timeouts",
          [&] { return run_actor_pairs(*e, user, true, limits); });

  auto& scoped = cases[0];
  auto& scoped_new = cases[1];
  auto& caf_actor = cases[2];
  auto& caf_untimed = cases[3];
  auto& facade1 = cases[4];
  auto& facade8 = cases[5];
  auto& actor = cases[6];
  auto& actor_timed = cases[7];
  auto per_s = [](const ops_summary& s) {
    return with_commas(static_cast<std::uint64_t>(s.per_s)) + " /s";
  };
  print_rows(
      "pool-ops (lease + release pairs, no I/O; references: bare CAF round trips)",
      {{"facade 1 thread: pairs", per_s(facade1), "scoped_actor rt " + per_s(scoped),
        ratio(facade1.per_s, scoped.per_s)},
       {"facade 1 thread: p50 per pair", ms(facade1.p50_ms),
        "target 0.1 ms; rt " + ms(scoped.p50_ms), ratio(facade1.p50_ms, 0.1)},
       {"facade 1 thread: p99 per pair", ms(facade1.p99_ms), "rt " + ms(scoped.p99_ms),
        ratio(facade1.p99_ms, scoped.p99_ms)},
       {"facade 8 threads: pairs", per_s(facade8), "new scoped_actor " + per_s(scoped_new),
        ratio(facade8.per_s, scoped_new.per_s)},
       {"facade 8 threads: p50 per pair", ms(facade8.p50_ms), "target 0.1 ms",
        ratio(facade8.p50_ms, 0.1)},
       {"actor interface: pairs", per_s(actor), "target 500,000 /s", ratio(actor.per_s, 500000)},
       {"actor interface: pairs", per_s(actor), "caf actor rt " + per_s(caf_untimed),
        ratio(actor.per_s, caf_untimed.per_s)},
       {"actor pairs: with 10 s CAF timeouts", per_s(actor_timed), "without " + per_s(actor),
        ratio(actor_timed.per_s, actor.per_s)},
       {"caf actor rt: with 10 s timeouts", per_s(caf_actor), "without " + per_s(caf_untimed),
        ratio(caf_actor.per_s, caf_untimed.per_s)}});
  std::vector<std::string> lines;
  bool clean = true;
  for (auto& s : cases) {
    // Latencies are recorded per operation only by the blocking cases.
    auto latency_csv = [&s](double x) { return s.raw.latencies.empty() ? "" : fixed(x, 4); };
    if (s.raw.errors > 0) {
      clean = false;
      std::cout << "  !!! " << s.name << ": " << s.raw.errors << " errors, first "
                << s.raw.first_error << "\n";
    }
    lines.push_back(context_csv(ctx) + ',' + csv_field(s.name) + ',' + std::to_string(s.raw.ops) +
                    ',' + std::to_string(s.raw.errors) + ',' + fixed(seconds(s.raw.elapsed), 3) +
                    ',' + fixed(s.per_s, 0) + ',' + latency_csv(s.p50_ms) + ',' +
                    latency_csv(s.p99_ms));
  }
  if (!append_csv(opts.csv,
                  std::string{context_csv_header} +
                      ",case,ops,errors,seconds,ops_per_s,p50_ms,p99_ms",
                  lines))
    return 1;
  return clean ? 0 : 1;
}

// -- bulk -----------------------------------------------------------------------------------

/// Warms `user` of `e` up with `connections` connections (as many first requests at once).
bool warm_up(engine& e, const std::string& user, std::size_t connections) {
  std::vector<std::string> users(connections, user);
  auto r = run_first_requests(e, users, body_bytes, fleet_limit);
  if (r.ok == connections)
    return true;
  std::cerr << "sshpool-bench-engine: warm-up failed: " << r.first_error << "\n";
  return false;
}

int bulk(const options& opts, const machine_context& ctx) {
  auto ep_opts = opts;
  if (ep_opts.ep.ciphers.empty())
    ep_opts.ep.ciphers = "aes128-gcm@openssh.com";
  engine_config cfg;
  cfg.pool.max_response_bytes = std::max(opts.bytes, opts.stream_bytes) + (1u << 20);
  cfg.pool.max_channels_per_connection = std::max<std::size_t>(opts.streams, 10);
  // One user with one connection, one with three (for the concurrent streams).
  auto e1 = make_engine(ep_opts, cfg, 1);
  auto e3 = make_engine(ep_opts, cfg, 3);
  set_endpoints(*e1, ep_opts, {"bulk"});
  set_endpoints(*e3, ep_opts, {"bulk"});
  if (!warm_up(*e1, "bulk", 1) || !warm_up(*e3, "bulk", 3))
    return 1;
  auto n = std::to_string(opts.streams);
  std::cout << "bulk: " << with_commas(opts.bytes) << " bytes of " << opts.file
            << " through one channel; then " << n << " x " << with_commas(opts.stream_bytes)
            << " bytes of " << opts.stream_file << " at once; engine cipher " << ep_opts.ep.ciphers
            << ", " << opts.rounds << " interleaved rounds\n";
  struct path_runs {
    std::string name;
    std::function<bulk_result(std::atomic<std::uint64_t>&)> run;
    std::vector<double> mb_per_s;
    std::string error;
  };
  auto direct = ep_opts.ep.target_port;
  auto streams = opts.streams;
  std::vector<path_runs> paths;
  auto add = [&paths](std::string name,
                      std::function<bulk_result(std::atomic<std::uint64_t>&)> run) {
    paths.push_back(path_runs{std::move(name), std::move(run), {}, {}});
  };
  add("direct",
      [&](auto& progress) { return tcp_download(direct, opts.file, opts.bytes, progress); });
  if (opts.ssh_l_port != 0)
    add("ssh-L", [&](auto& progress) {
      return tcp_download(opts.ssh_l_port, opts.file, opts.bytes, progress);
    });
  add("engine", [&](auto& progress) {
    return engine_download(*e1, "bulk", opts.file, opts.bytes, progress);
  });
  if (opts.ssh_l_port != 0)
    add("ssh-L " + n + "x", [&](auto& progress) {
      return parallel_downloads(streams, [&] {
        return tcp_download(opts.ssh_l_port, opts.stream_file, opts.stream_bytes, progress);
      });
    });
  for (auto* e : {e1.get(), e3.get()})
    add("engine " + n + "x " + (e == e1.get() ? "1 conn" : "3 conns"), [&, e](auto& progress) {
      return parallel_downloads(streams, [&] {
        return engine_download(*e, "bulk", opts.stream_file, opts.stream_bytes, progress);
      });
    });
  std::vector<std::string> lines;
  for (std::size_t round = 1; round <= opts.rounds; ++round)
    for (auto& p : paths) {
      std::atomic<std::uint64_t> progress{0};
      bulk_result r;
      {
        progress_line line{"round " + std::to_string(round) + " " + pad(p.name, 18, true), progress,
                           "B"};
        r = p.run(progress);
      }
      auto rate = r.error.empty() ? static_cast<double>(r.bytes) / 1e6 / seconds(r.elapsed) : 0;
      if (!r.error.empty() && p.error.empty())
        p.error = r.error;
      p.mb_per_s.push_back(rate);
      std::cerr << "  round " << round << " " << pad(p.name, 18, true) << fixed(rate, 1)
                << " MB/s in " << with_commas(r.chunks) << " pieces"
                << (r.error.empty() ? "" : "  ERROR " + r.error) << "\n";
      lines.push_back(context_csv(ctx) + ',' + csv_field(p.name) + ',' + std::to_string(round) +
                      ',' + std::to_string(r.bytes) + ',' + std::to_string(r.chunks) + ',' +
                      fixed(seconds(r.elapsed), 4) + ',' + fixed(rate, 1) + ',' +
                      csv_field(r.error));
    }
  auto median_of = [&](const std::string& name) {
    for (auto& p : paths)
      if (p.name == name) {
        auto v = p.mb_per_s;
        std::sort(v.begin(), v.end());
        return v[(v.size() - 1) / 2];
      }
    return 0.0;
  };
  std::vector<row> rows;
  for (auto& p : paths)
    rows.push_back({p.name + " MB/s (median)", fixed(median_of(p.name), 1), "", ""});
  auto compare = [&](const std::string& x, const std::string& y, const std::string& target) {
    auto a = median_of(x);
    auto b = median_of(y);
    if (b > 0)
      rows.push_back({x + " / " + y, fixed(a, 1), y + " " + fixed(b, 1) + target, ratio(a, b)});
  };
  compare("engine", "ssh-L", ", target 0.8x");
  compare("engine", "direct", "");
  compare("engine " + n + "x 1 conn", "ssh-L " + n + "x", "");
  compare("engine " + n + "x 3 conns", "ssh-L " + n + "x", "");
  compare("engine " + n + "x 3 conns", "engine " + n + "x 1 conn", "");
  print_rows("bulk (MB/s of response bodies; ssh -L with the same cipher)", rows);
  bool clean = true;
  for (auto& p : paths)
    if (!p.error.empty()) {
      clean = false;
      std::cout << "  !!! " << p.name << ": " << p.error << "\n";
    }
  if (!append_csv(opts.csv,
                  std::string{context_csv_header} +
                      ",path,round,bytes,pieces,seconds,mb_per_s,error",
                  lines))
    return 1;
  return clean ? 0 : 1;
}

int run(int argc, char** argv) {
  auto opts = parse_options(argc, argv);
  auto ctx = read_context(argc, argv);
  print_context("sshpool-bench-engine", ctx);
  try {
    if (opts.scenario == "cold-start")
      return cold_start(opts, ctx);
    if (opts.scenario == "footprint")
      return footprint(opts, ctx);
    if (opts.scenario == "pool-ops")
      return pool_ops(opts, ctx);
    return bulk(opts, ctx);
  } catch (const std::exception& ex) {
    std::cerr << "sshpool-bench-engine: " << ex.what() << "\n";
    return 1;
  }
}

} // namespace

} // namespace sshpool::bench

int main(int argc, char** argv) {
  return sshpool::bench::run(argc, argv);
}
