// sshpool-bench: requests/s and latency of one closed-loop load (32 requests in flight by
// default) on every path to the same nginx, in one run, interleaved so that a noisy machine
// hurts every path alike:
//   direct        HTTP/1.1 keep-alive client -> nginx
//   ssh-N-L       same client -> OpenSSH `ssh -N -L` (sshd leaves Nagle on)
//   ssh-L-exec    same client -> OpenSSH `ssh -L` whose session exec'd (sshd sets NODELAY)
//   engine        a CAF driver actor -> sshpool engine (typed actor handles) -> sshd -> nginx
//   engine-facade threads calling the blocking connection::forward -> same engine
//   engine-async  one thread keeping requests in flight with connection::forward_async ->
//                 same engine
//   node-ssh2     same client -> the original's stack: Node http + the ssh2 package, a
//                 forwardOut channel per request (benchmarks/peers/ssh2-forward.js);
//                 only when named in --paths
//   ssh-R         same client -> the port sshd listens on for an OpenSSH `ssh -N -R` (reverse
//                 mode's OpenSSH equivalent); only when named in --paths
//   engine-agent  a CAF driver actor -> a second engine in reverse mode -> the agent (the
//                 stock `ssh -N -R`, started here, dialed in to its agent listener) -> nginx;
//                 only when named in --paths
// The engine's requests go round robin to --users users (each with its own pool and SSH
// connections, all to the same sshd and nginx); --channel-reuse off makes every request open
// its own channel. Each round runs every path for --duration; the report shows every round and, per
// path, the median round (by req/s; the lower one of two), with ratios against the OpenSSH paths.
// Every response must be a 200 with the expected body; any failure makes the run say so
// loudly and exit 1. Beside req/s and latency, each run reports the CPU it cost: this
// process's per request (the load driver runs in-process, see cpu_meter.hpp) and, with
// --sshd-pid, the sshd's share of a core. ./benchmarks/run.sh sets up nginx, sshd and the
// tunnels.
#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <numeric>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cpu_meter.hpp"
#include "endpoint_flags.hpp"
#include "engine_load.hpp"
#include "http_load.hpp"
#include "report.hpp"

namespace sshpool::bench {

namespace {

/// The default paths; `node-ssh2` runs only when asked for.
const std::vector<std::string> all_paths = {"direct", "ssh-N-L",       "ssh-L-exec",
                                            "engine", "engine-facade", "engine-async"};
const std::vector<std::string> known_paths = {"direct",    "ssh-N-L",       "ssh-L-exec",
                                              "engine",    "engine-facade", "engine-async",
                                              "node-ssh2", "ssh-R",         "engine-agent"};

struct options {
  double duration_s = 10;
  std::size_t rounds = 2;
  load_options load;
  std::vector<std::string> paths = all_paths;
  std::uint16_t direct_port = 0;
  std::uint16_t ssh_n_port = 0;
  std::uint16_t node_ssh2_port = 0;
  std::uint16_t ssh_r_port = 0;
  /// The private sshd's listener (0: its CPU share is not reported).
  pid_t sshd_pid = 0;
  /// One tunnel per user being simulated; the client's connections are spread over them.
  std::vector<std::uint16_t> ssh_exec_ports;
  engine_target engine;
  std::string csv;
  std::string cdf;
};

const char* usage_text = R"(usage: sshpool-bench [options]
  --duration S        seconds per path and round (default 10)
  --rounds N          rounds of all paths (default 2); the median round is reported
  --concurrency N     requests in flight (default 32)
  --max-requests N    cap on the requests of one path and round (default 10000000)
  --paths LIST        comma-separated, of direct,ssh-N-L,ssh-L-exec,engine,engine-facade,
                      engine-async (the default), node-ssh2, ssh-R and engine-agent
  --body-bytes N      expected body size of every response (default 100)
  --direct-port P     nginx on 127.0.0.1 (also the engine's target unless --target-port)
  --ssh-n-port P      the `ssh -N -L` forwarded port
  --node-ssh2-port P  the port of benchmarks/peers/ssh2-forward.js (path node-ssh2)
  --ssh-r-port P      the port sshd listens on for an `ssh -N -R` to nginx (path ssh-R)
  --ssh-exec-port P[,P...]  the `ssh -L ... sleep` forwarded port(s); with several (one
                      tunnel per user), the client's connections are spread over them
  --sshd-port P       the sshd the engine connects to (127.0.0.1)
  --sshd-pid PID      that sshd's listener: report the CPU of it and every process below it
                      (the connections' processes) during each run, in % of a core
  --sshd-user U       its user
  --identity FILE     private key for that user
  --known-hosts FILE  known_hosts holding the sshd's host key
  --target-port P     nginx as the sshd sees it (default: --direct-port); engine-agent:
                      nginx as its agent sees it, and the port the agent gives to -R
  --connections N     engine: max_connections_per_user (default 1)
  --channels N        engine: max_channels_per_connection (default 32)
  --users N           engine: requests spread round robin over N users (default 1), each
                      with its own pool, all on the same sshd and nginx (engine-agent: each
                      with its own agent)
  --channel-reuse on|off  off: every request says `Connection: close`, so each engine
                      request opens (and closes) its own direct-tcpip channel, and each
                      client request its own TCP connection (and, through ssh -L, its own
                      channel) (default on)
  --reactors N        engine: reactor threads (default: the engine's, half the cores)
  --csv FILE          also write every run as CSV rows to FILE (appended if it exists)
  --cdf FILE          write the latency CDF of every path's median round to FILE (CSV:
                      path,percentile,latency_ms; appended if it exists)
)";

const command_line cli{"sshpool-bench", usage_text};

std::uint16_t parse_port(const std::string& flag, const std::string& text) {
  return static_cast<std::uint16_t>(cli.number(flag, text, 1, 65535));
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::stringstream in{text};
  for (std::string part; std::getline(in, part, sep);)
    parts.push_back(part);
  return parts;
}

/// The paths of the dial-mode engine (engine-agent has an engine of its own).
bool is_engine_path(const std::string& path) {
  return path == "engine" || path == "engine-facade" || path == "engine-async";
}

options parse_options(int argc, char** argv) {
  options opts;
  opts.engine.ep = loopback_endpoint();
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h")
      cli.help();
    if (i + 1 >= argc)
      cli.fail("unknown option or missing value: " + flag);
    std::string value = argv[++i];
    if (endpoint_flag(cli, flag, value, opts.engine.ep))
      continue;
    if (flag == "--duration") {
      opts.duration_s = cli.seconds(flag, value, 3600);
    } else if (flag == "--rounds") {
      opts.rounds = cli.number(flag, value, 1, 100);
    } else if (flag == "--concurrency") {
      opts.load.concurrency = cli.number(flag, value, 1, 4096);
    } else if (flag == "--max-requests") {
      opts.load.max_requests = cli.number(flag, value, 1, UINT64_MAX);
    } else if (flag == "--paths") {
      opts.paths = split(value, ',');
      for (auto& p : opts.paths)
        if (std::find(known_paths.begin(), known_paths.end(), p) == known_paths.end())
          cli.fail("unknown path '" + p + "'");
    } else if (flag == "--body-bytes") {
      opts.load.body_bytes = cli.number(flag, value, 0, 1u << 30);
    } else if (flag == "--direct-port") {
      opts.direct_port = parse_port(flag, value);
    } else if (flag == "--ssh-n-port") {
      opts.ssh_n_port = parse_port(flag, value);
    } else if (flag == "--node-ssh2-port") {
      opts.node_ssh2_port = parse_port(flag, value);
    } else if (flag == "--ssh-r-port") {
      opts.ssh_r_port = parse_port(flag, value);
    } else if (flag == "--ssh-exec-port") {
      for (auto& port : split(value, ','))
        opts.ssh_exec_ports.push_back(parse_port(flag, port));
    } else if (flag == "--sshd-pid") {
      opts.sshd_pid = static_cast<pid_t>(cli.number(flag, value, 1, INT32_MAX));
    } else if (flag == "--connections") {
      opts.engine.connections = cli.number(flag, value, 1, 1000);
    } else if (flag == "--channels") {
      opts.engine.channels = cli.number(flag, value, 1, 1000);
    } else if (flag == "--users") {
      opts.engine.users = cli.number(flag, value, 1, 10000);
    } else if (flag == "--channel-reuse") {
      if (value != "on" && value != "off")
        cli.fail("--channel-reuse wants on or off, not '" + value + "'");
      opts.engine.channel_reuse = value == "on";
      opts.load.connection_close = !opts.engine.channel_reuse;
    } else if (flag == "--reactors") {
      opts.engine.reactors = cli.number(flag, value, 1, 64);
    } else if (flag == "--csv") {
      opts.csv = value;
    } else if (flag == "--cdf") {
      opts.cdf = value;
    } else {
      cli.fail("unknown option: " + flag);
    }
  }
  opts.load.duration = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(opts.duration_s));
  if (opts.engine.ep.target_port == 0)
    opts.engine.ep.target_port = opts.direct_port;
  for (auto& p : opts.paths) {
    if (p == "direct" && opts.direct_port == 0)
      cli.fail("path direct needs --direct-port");
    if (p == "ssh-N-L" && opts.ssh_n_port == 0)
      cli.fail("path ssh-N-L needs --ssh-n-port");
    if (p == "node-ssh2" && opts.node_ssh2_port == 0)
      cli.fail("path node-ssh2 needs --node-ssh2-port");
    if (p == "ssh-R" && opts.ssh_r_port == 0)
      cli.fail("path ssh-R needs --ssh-r-port");
    if (p == "engine-agent" && opts.engine.ep.target_port == 0)
      cli.fail("path engine-agent needs --direct-port or --target-port");
    if (p == "ssh-L-exec" && opts.ssh_exec_ports.empty())
      cli.fail("path ssh-L-exec needs --ssh-exec-port");
    if (is_engine_path(p) && !endpoint_complete(opts.engine.ep))
      cli.fail("path " + p +
               " needs --sshd-port, --sshd-user, --identity, --known-hosts and "
               "--direct-port or --target-port");
  }
  return opts;
}

// -- reporting ------------------------------------------------------------------------------

/// One path in one round, reduced to the reported figures.
struct run_summary {
  std::string path;
  std::size_t round = 0;
  std::uint64_t ok = 0;
  std::uint64_t errors = 0;
  double seconds = 0;
  double rps = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
  bool aborted = false;
  std::string first_error;
  /// Every latency, sorted (nanoseconds).
  std::vector<std::int64_t> latencies;
  /// Engine paths: channels open per connection at the end (none: not an engine path).
  std::size_t connections = 0;
  std::uint32_t channels_min = 0;
  double channels_mean = 0;
  std::uint32_t channels_max = 0;
  /// What the timed phase cost (none if it never started).
  std::optional<cpu_figures> cpu;
};

run_summary summarize(const std::string& path, std::size_t round, load_result r,
                      std::optional<cpu_figures> cpu) {
  run_summary s;
  s.cpu = cpu;
  s.path = path;
  s.round = round;
  s.ok = r.ok;
  s.errors = r.errors;
  s.aborted = r.aborted;
  s.first_error = std::move(r.first_error);
  s.seconds = std::chrono::duration<double>(r.elapsed).count();
  s.rps = s.seconds > 0 ? static_cast<double>(r.ok) / s.seconds : 0;
  std::sort(r.latencies.begin(), r.latencies.end());
  s.p50_ms = percentile_ms(r.latencies, 0.50);
  s.p99_ms = percentile_ms(r.latencies, 0.99);
  s.max_ms = r.latencies.empty() ? 0 : static_cast<double>(r.latencies.back()) / 1e6;
  s.latencies = std::move(r.latencies);
  auto& ch = r.channels_per_connection;
  if (!ch.empty()) {
    s.connections = ch.size();
    s.channels_min = *std::min_element(ch.begin(), ch.end());
    s.channels_max = *std::max_element(ch.begin(), ch.end());
    s.channels_mean = static_cast<double>(std::accumulate(ch.begin(), ch.end(), std::uint64_t{0})) /
                      static_cast<double>(ch.size());
  }
  return s;
}

void print_table(const std::vector<run_summary>& runs, bool with_round) {
  std::cout << pad("path", 15, true) << (with_round ? pad("round", 6) : "") << pad("req/s", 10)
            << pad("p50 ms", 9) << pad("p99 ms", 9) << pad("max ms", 9) << pad("requests", 12)
            << pad("errors", 8) << pad("cpu us/req", 12) << pad("sshd %", 8) << "\n";
  for (auto& s : runs) {
    std::cout << pad(s.path, 15, true) << (with_round ? pad(std::to_string(s.round), 6) : "")
              << pad(s.aborted ? "ABORTED" : with_commas(static_cast<std::uint64_t>(s.rps)), 10)
              << pad(fixed(s.p50_ms, 2), 9) << pad(fixed(s.p99_ms, 2), 9)
              << pad(fixed(s.max_ms, 2), 9) << pad(with_commas(s.ok + s.errors), 12)
              << pad(with_commas(s.errors), 8)
              << pad(s.cpu ? fixed(s.cpu->us_per_request, 1) : "-", 12)
              << pad(s.cpu && s.cpu->sshd_watched ? fixed(s.cpu->sshd_percent, 0) : "-", 8) << "\n";
  }
}

const run_summary* find_run(const std::vector<run_summary>& runs, const std::string& path) {
  for (auto& s : runs)
    if (s.path == path)
      return &s;
  return nullptr;
}

void print_ratios(const std::vector<run_summary>& medians) {
  std::cout << "\nratios (median rounds):\n";
  const std::vector<std::string> forward_refs = {"ssh-N-L", "ssh-L-exec", "node-ssh2", "direct"};
  // The facade paths also against the actor interface (target: 0.95x).
  const std::vector<std::string> facade_refs = {"engine", "ssh-N-L", "ssh-L-exec", "node-ssh2",
                                                "direct"};
  const std::vector<std::pair<std::string, std::vector<std::string>>> comparisons = {
      {"engine", forward_refs},
      {"engine-facade", facade_refs},
      {"engine-async", facade_refs},
      {"engine-agent", {"ssh-R", "engine", "direct"}}};
  bool any = false;
  for (const auto& [subject, refs] : comparisons) {
    auto* x = find_run(medians, subject);
    if (x == nullptr || x->aborted)
      continue;
    for (const auto& ref : refs) {
      auto* y = find_run(medians, ref);
      if (y == nullptr || y->aborted || y->rps <= 0)
        continue;
      any = true;
      std::cout << "  " << pad(subject + "/" + ref, 26, true) << " req/s "
                << fixed(x->rps / y->rps, 2);
      if (ref != "direct" && y->p99_ms > 0)
        std::cout << "   p99 " << fixed(x->p99_ms, 2) << " vs " << fixed(y->p99_ms, 2) << " ms (x"
                  << fixed(x->p99_ms / y->p99_ms, 2) << ")";
      std::cout << "\n";
    }
  }
  if (!any)
    std::cout << "  (needs an engine path and a reference path)\n";
}

/// The reading of the sshd's CPU share for each dial-mode engine path (engine-agent's peers are
/// its agents, not the sshd): sshd serves a connection in one single-threaded process, so at
/// ~100 % of a core per connection no client gets more through that connection.
void print_sshd_reading(const std::vector<run_summary>& medians) {
  bool header = false;
  for (auto& s : medians) {
    if (s.path.rfind("engine", 0) != 0 || s.path == "engine-agent" || s.aborted || !s.cpu ||
        !s.cpu->sshd_watched || s.connections == 0)
      continue;
    if (!header)
      std::cout << "\nsshd's CPU share (a connection is one single-threaded sshd process: at "
                   "~100 % of a core\nper connection, the engine is at the ceiling of its "
                   "connections):\n";
    header = true;
    auto per_connection = s.cpu->sshd_percent / static_cast<double>(s.connections);
    std::cout << "  " << pad(s.path, 14, true) << " sshd at " << fixed(s.cpu->sshd_percent, 0)
              << " % of a core over " << s.connections << " connection(s), "
              << fixed(per_connection, 0) << " % each: "
              << (per_connection >= 90 ? "at the ceiling of one connection"
                                       : "below the ceiling of one connection")
              << "\n";
  }
}

bool write_csv(const std::string& file, const machine_context& ctx, const options& opts,
               const std::vector<run_summary>& runs, const std::vector<run_summary>& medians) {
  auto header =
      std::string{context_csv_header} +
      ",path,round,median_round,concurrency,connections,channels,users,"
      "ssh_exec_tunnels,channel_reuse,duration_s,requests,errors,aborted,seconds,req_per_s,p50_ms,"
      "p99_ms,max_ms,engine_connections,channels_min,channels_mean,channels_max,cpu_us_per_req,"
      "sshd_cpu_pct";
  auto out = open_append(file, header);
  for (auto& s : runs) {
    auto* m = find_run(medians, s.path);
    bool is_median = m != nullptr && m->round == s.round;
    out << context_csv(ctx) << ',' << s.path << ',' << s.round << ',' << (is_median ? 1 : 0) << ','
        << opts.load.concurrency << ',' << opts.engine.connections << ',' << opts.engine.channels
        << ',' << opts.engine.users << ',' << opts.ssh_exec_ports.size() << ','
        << (opts.engine.channel_reuse ? "on" : "off") << ',' << opts.duration_s << ','
        << (s.ok + s.errors) << ',' << s.errors << ',' << (s.aborted ? 1 : 0) << ','
        << fixed(s.seconds, 3) << ',' << fixed(s.rps, 0) << ',' << fixed(s.p50_ms, 3) << ','
        << fixed(s.p99_ms, 3) << ',' << fixed(s.max_ms, 3) << ',';
    if (s.connections > 0)
      out << s.connections << ',' << s.channels_min << ',' << fixed(s.channels_mean, 1) << ','
          << s.channels_max;
    else
      out << ",,,";
    out << ',' << (s.cpu ? fixed(s.cpu->us_per_request, 2) : "") << ',';
    if (s.cpu && s.cpu->sshd_watched)
      out << fixed(s.cpu->sshd_percent, 1);
    out << '\n';
  }
  out.close();
  return static_cast<bool>(out);
}

/// The latency CDF of each median round, 1,000 points per path (every 0.1 %).
bool write_cdf(const std::string& file, const std::vector<run_summary>& medians) {
  auto out = open_append(file, "path,percentile,latency_ms");
  for (auto& s : medians) {
    if (s.aborted || s.latencies.empty())
      continue;
    for (int permille = 1; permille <= 1000; ++permille)
      out << s.path << ',' << fixed(permille / 10.0, 1) << ','
          << fixed(percentile_ms(s.latencies, permille / 1000.0), 4) << '\n';
  }
  out.close();
  return static_cast<bool>(out);
}

// -- running --------------------------------------------------------------------------------

load_result run_path(const std::string& path, const options& opts, engine_load* engine,
                     engine_load* agent_engine, const load_options& load) {
  if (path == "direct")
    return run_http_load({opts.direct_port}, load);
  if (path == "ssh-N-L")
    return run_http_load({opts.ssh_n_port}, load);
  if (path == "node-ssh2")
    return run_http_load({opts.node_ssh2_port}, load);
  if (path == "ssh-R")
    return run_http_load({opts.ssh_r_port}, load);
  if (path == "engine-agent")
    return agent_engine->run_actor(load);
  if (path == "ssh-L-exec")
    return run_http_load(opts.ssh_exec_ports, load);
  if (path == "engine")
    return engine->run_actor(load);
  if (path == "engine-async")
    return engine->run_async(load);
  return engine->run_facade(load);
}

int run(int argc, char** argv) {
  auto opts = parse_options(argc, argv);
  auto ctx = read_context(argc, argv);
  print_context("sshpool-bench", ctx);
  std::cout << "load: closed loop, " << opts.load.concurrency << " requests in flight, "
            << opts.duration_s << " s per path and round, " << opts.rounds
            << " rounds; engine: " << opts.engine.users << " user(s), " << opts.engine.connections
            << " connection(s) per user x " << opts.engine.channels << " channels, channel reuse "
            << (opts.engine.channel_reuse ? "on" : "off") << "\n"
            << "cpu us/req: this process's CPU (user + system) per request over the timed phase; "
               "the load\ndriver runs in it (engine paths: driver and engine; the others: the "
               "HTTP client alone,\nnot the ssh client or nginx). sshd %: the sshd's processes' "
               "CPU over the same time,\nin % of one core"
            << (opts.sshd_pid > 0 ? "" : " (not measured: no --sshd-pid)") << ".\n\n";
  std::unique_ptr<engine_load> engine;
  if (std::any_of(opts.paths.begin(), opts.paths.end(), is_engine_path)) {
    try {
      engine = std::make_unique<engine_load>(opts.engine);
    } catch (const std::exception& ex) {
      std::cerr << "sshpool-bench: cannot build the engine: " << ex.what() << "\n";
      return 1;
    }
  }
  std::unique_ptr<engine_load> agent_engine;
  if (std::find(opts.paths.begin(), opts.paths.end(), "engine-agent") != opts.paths.end()) {
    auto target = opts.engine;
    target.agents = true;
    try {
      agent_engine = std::make_unique<engine_load>(target);
    } catch (const std::exception& ex) {
      std::cerr << "sshpool-bench: cannot build the reverse-mode engine and its agents: "
                << ex.what() << "\n";
      return 1;
    }
  }
  std::vector<run_summary> runs;
  for (std::size_t round = 1; round <= opts.rounds; ++round) {
    for (auto& path : opts.paths) {
      std::atomic<std::uint64_t> completed{0};
      auto load = opts.load;
      load.completed = &completed;
      cpu_meter meter{opts.sshd_pid};
      load.started = [&meter] { meter.mark_start(); };
      auto label = "round " + std::to_string(round) + "/" + std::to_string(opts.rounds) + "  " +
                   pad(path, 13, true);
      load_result result;
      {
        progress_line progress{label, completed};
        result = run_path(path, opts, engine.get(), agent_engine.get(), load);
      }
      auto cpu = meter.stop(result.ok + result.errors);
      auto s = summarize(path, round, std::move(result), cpu);
      std::cerr << "  " << label << "  "
                << (s.aborted ? "ABORTED"
                              : with_commas(static_cast<std::uint64_t>(s.rps)) + " req/s")
                << ", p99 " << fixed(s.p99_ms, 2) << " ms, " << with_commas(s.errors)
                << " errors\n";
      runs.push_back(std::move(s));
    }
  }
  engine.reset();
  agent_engine.reset();

  std::vector<run_summary> medians;
  for (auto& path : opts.paths) {
    std::vector<run_summary> of_path;
    for (auto& s : runs)
      if (s.path == path)
        of_path.push_back(s);
    std::sort(of_path.begin(), of_path.end(),
              [](const run_summary& x, const run_summary& y) { return x.rps < y.rps; });
    medians.push_back(of_path[(of_path.size() - 1) / 2]);
  }

  std::cout << "every round:\n";
  print_table(runs, true);
  std::cout << "\nmedian round per path (lower middle by req/s):\n";
  print_table(medians, false);
  print_ratios(medians);
  print_sshd_reading(medians);
  for (auto& m : medians)
    if (m.connections > 0)
      std::cout << "  " << m.path
                << ": channels open per connection at the end of its median round: "
                << "min " << m.channels_min << ", mean " << fixed(m.channels_mean, 1) << ", max "
                << m.channels_max << " (" << m.connections << " connections)\n";

  bool clean = true;
  for (auto& s : runs)
    if (s.errors > 0 || s.aborted) {
      clean = false;
      std::cout << "\n!!! " << s.path << " round " << s.round << ": "
                << (s.aborted ? "ABORTED" : with_commas(s.errors) + " FAILED REQUESTS")
                << "; first: " << s.first_error;
    }
  if (!clean)
    std::cout << "\n!!! THIS RUN HAD ERRORS: its figures are not valid.\n";

  if (!opts.csv.empty()) {
    if (write_csv(opts.csv, ctx, opts, runs, medians)) {
      std::cout << "\ncsv: " << opts.csv << "\n";
    } else {
      std::cerr << "sshpool-bench: cannot write " << opts.csv << "\n";
      return 1;
    }
  }
  if (!opts.cdf.empty() && !write_cdf(opts.cdf, medians)) {
    std::cerr << "sshpool-bench: cannot write " << opts.cdf << "\n";
    return 1;
  }
  return clean ? 0 : 1;
}

} // namespace

} // namespace sshpool::bench

int main(int argc, char** argv) {
  return sshpool::bench::run(argc, argv);
}
