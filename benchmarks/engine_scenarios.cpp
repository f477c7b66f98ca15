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
// The program: its command line and the choice of scenario, and what the scenarios share
// (scenario.hpp); the scenarios are in scenario_fleet.cpp (cold-start, footprint),
// scenario_pool_ops.cpp and scenario_bulk.cpp. No CAF in these files: the actor drivers are
// in fleet.cpp and pool_ops.cpp.
#include <cstdlib>
#include <iostream>
#include <stdexcept>

#include "endpoint_flags.hpp"
#include "scenario.hpp"

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

scenario_options parse_options(int argc, char** argv) {
  scenario_options opts;
  if (argc < 2)
    cli.fail("no scenario");
  opts.scenario = argv[1];
  if (opts.scenario == "--help" || opts.scenario == "-h")
    cli.help();
  if (opts.scenario != "cold-start" && opts.scenario != "footprint" &&
      opts.scenario != "pool-ops" && opts.scenario != "bulk")
    cli.fail("unknown scenario '" + opts.scenario + "'");
  opts.ep = loopback_endpoint();
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc)
      cli.fail("unknown option or missing value: " + flag);
    std::string value = argv[++i];
    if (endpoint_flag(cli, flag, value, opts.ep))
      continue;
    if (flag == "--csv") {
      opts.csv = value;
    } else if (flag == "--users") {
      opts.users = cli.number(flag, value, 1, 10000);
    } else if (flag == "--connectors") {
      opts.connectors = cli.number(flag, value, 1, 64);
    } else if (flag == "--handshake-rate") {
      opts.handshake_rate = cli.number(flag, value, 1, 100000);
    } else if (flag == "--sshd-log") {
      opts.sshd_log = value;
    } else if (flag == "--steps") {
      opts.steps = cli.number(flag, value, 1, 100);
    } else if (flag == "--duration") {
      opts.duration_s = cli.seconds(flag, value, 600);
    } else if (flag == "--in-flight") {
      opts.in_flight = cli.number(flag, value, 1, 4096);
    } else if (flag == "--bytes") {
      opts.bytes = cli.number(flag, value, 1, std::uint64_t{1} << 34);
    } else if (flag == "--file") {
      opts.file = value;
    } else if (flag == "--streams") {
      opts.streams = cli.number(flag, value, 1, 64);
    } else if (flag == "--stream-file") {
      opts.stream_file = value;
    } else if (flag == "--stream-bytes") {
      opts.stream_bytes = cli.number(flag, value, 1, std::uint64_t{1} << 32);
    } else if (flag == "--ssh-l-port") {
      opts.ssh_l_port = static_cast<std::uint16_t>(cli.number(flag, value, 1, 65535));
    } else if (flag == "--cipher") {
      opts.ep.ciphers = value;
    } else if (flag == "--rounds") {
      opts.rounds = cli.number(flag, value, 1, 100);
    } else {
      cli.fail("unknown option: " + flag);
    }
  }
  if (!endpoint_complete(opts.ep))
    cli.fail("needs --sshd-port, --sshd-user, --identity, --known-hosts and --target-port");
  return opts;
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

void print_rows(const std::string& title, const std::vector<row>& rows) {
  std::cout << "\n"
            << title << "\n"
            << pad("", 2) << pad("measured", 44, true) << pad("value", 16) << pad("reference", 34)
            << pad("ratio", 14) << "\n";
  for (auto& r : rows)
    std::cout << pad("", 2) << pad(r.what, 44, true) << pad(r.value, 16) << pad(r.reference, 34)
              << pad(r.ratio, 14) << "\n";
}

int finish(const scenario_options& opts, const std::string& columns,
           const std::vector<std::string>& lines, bool clean) {
  if (opts.csv.empty())
    return clean ? 0 : 1;
  auto out = open_append(opts.csv, std::string{context_csv_header} + columns);
  for (auto& l : lines)
    out << l << '\n';
  out.close();
  if (!out) {
    std::cerr << "sshpool-bench-engine: cannot write " << opts.csv << "\n";
    return 1;
  }
  return clean ? 0 : 1;
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

std::unique_ptr<engine> make_engine(const scenario_options& opts, engine_config cfg,
                                    std::size_t connections_per_user) {
  cfg.log_level = "warn";
  if (opts.connectors > 0)
    cfg.connector_threads = opts.connectors;
  if (opts.handshake_rate > 0)
    cfg.pool.max_handshakes_per_second = opts.handshake_rate;
  cfg.pool.max_connections_per_user = connections_per_user;
  cfg.pool.acquire_timeout = std::chrono::seconds(120);
  return std::make_unique<engine>(cfg);
}

void set_endpoints(engine& e, const scenario_options& opts, const std::vector<std::string>& users) {
  for (auto& u : users)
    if (auto ok = e.set_endpoint(u, opts.ep); !ok)
      throw std::runtime_error{"set_endpoint: " + ok.error().to_string()};
}

} // namespace sshpool::bench

int main(int argc, char** argv) {
  return sshpool::bench::run(argc, argv);
}
