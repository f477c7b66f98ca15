// sshpool-bench-slow: holds a slow-client flood against a server until SIGTERM or SIGINT, for
// benchmarks/run.sh's slow-clients scenario, which measures a normal client's latency (wrk)
// through sshpool-demo with and without it. The flood is the tests' (tests/support/
// slow_flood): connections that drip one head byte every --drip-ms (0: send nothing), from
// --sources loopback addresses, each reopened when the server closes it.
//
// Prints "holding N" once all N connections were opened (or exits 1 after 60 s), and at
// the end how many the server closed.
#include <cstdio>
#include <string>

#include "net/stop_signals.hpp"
#include "report.hpp"
#include "support/slow_flood.hpp"

namespace {

constexpr const char* usage =
    "usage: sshpool-bench-slow --port PORT [--connections N] [--drip-ms MS] [--sources N]\n";

} // namespace

int main(int argc, char** argv) {
  sshpool::bench::command_line cl{"sshpool-bench-slow", usage};
  sshpool::test::flood_options opts;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc)
      cl.fail("missing value after " + flag);
    std::string value = argv[++i];
    if (flag == "--port")
      opts.port = static_cast<std::uint16_t>(cl.number(flag, value, 1, 65535));
    else if (flag == "--connections")
      opts.connections = cl.number(flag, value, 1, 100000);
    else if (flag == "--drip-ms")
      opts.drip = std::chrono::milliseconds(cl.number(flag, value, 0, 3600000));
    else if (flag == "--sources")
      opts.sources = cl.number(flag, value, 1, 250);
    else
      cl.fail("unknown argument " + flag);
  }
  if (opts.port == 0)
    cl.fail("--port is required");
  auto limit = sshpool::test::raise_fd_limit();
  if (limit < opts.connections + 64) {
    std::fprintf(stderr, "sshpool-bench-slow: descriptor limit %zu is too low for %zu\n", limit,
                 opts.connections);
    return 1;
  }
  // SIGTERM and SIGINT are taken on this thread, once the flood holds.
  const sshpool::net::stop_signals stop;
  sshpool::test::slow_flood flood{opts};
  if (!flood.wait_established(std::chrono::seconds(60))) {
    std::fprintf(stderr, "sshpool-bench-slow: not all %zu connections opened within 60 s\n",
                 opts.connections);
    return 1;
  }
  std::printf("holding %zu\n", opts.connections);
  std::fflush(stdout);
  stop.wait();
  std::printf("closed by the server: %llu\n",
              static_cast<unsigned long long>(flood.closed_by_server()));
  return 0;
}
