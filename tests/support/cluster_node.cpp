// sshpool-cluster-node: one engine running as a cluster node, for the cluster's
// multi-process tests (two actor systems in one process are not two CAF nodes).
//
//   sshpool-cluster-node --id ID --listen ADDR:PORT --ca CA.pem --cert CERT.pem --key KEY
//                        [--peer ADDR:PORT]... [--interval MS] [--timeout MS]
//
// Prints "ready" once the node listens, then, each time what it sees changes (it polls
// engine::cluster_status every poll_interval), "members A,B,C" and a line per peer: "peer ADDR ID
// up|down CONNECTS FAILURES" (ID "-" before the first connection). SIGTERM
// drains the engine (the node leaves the cluster first), prints "drained" and exits 0. A
// node that cannot start prints "error: ..." and exits 2.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>

#include "sshpool/engine.hpp"
#include "sshpool/text.hpp"
#include "support/timing.hpp"

namespace {

void usage() {
  std::cerr << "usage: sshpool-cluster-node --id ID --listen ADDR:PORT --ca CA --cert CERT "
               "--key KEY [--peer ADDR:PORT]... [--interval MS] [--timeout MS]\n";
}

} // namespace

int main(int argc, char** argv) {
  sshpool::engine_config cfg;
  cfg.log_level = "info";
  cfg.scheduler_threads = 2;
  cfg.reactor_threads = 1;
  cfg.connector_threads = 1;
  auto& c = cfg.cluster;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    std::string value = argv[i + 1];
    if (flag == "--id")
      c.node_id = value;
    else if (flag == "--listen")
      c.listen = value;
    else if (flag == "--ca")
      c.ca_file = value;
    else if (flag == "--cert")
      c.cert_file = value;
    else if (flag == "--key")
      c.key_file = value;
    else if (flag == "--peer")
      c.peers.push_back(value);
    else if (flag == "--interval")
      c.heartbeat_interval = std::chrono::milliseconds{std::stol(value)};
    else if (flag == "--timeout")
      c.heartbeat_timeout = std::chrono::milliseconds{std::stol(value)};
    else
      return usage(), 2;
  }
  if (argc % 2 != 1)
    return usage(), 2;
  c.reconnect_backoff_base = std::chrono::milliseconds{100};
  c.reconnect_backoff_cap = std::chrono::milliseconds{500};
  try {
    sshpool::engine e{cfg};
    e.handle_signals();
    std::cout << "ready" << std::endl;
    std::string last;
    while (!e.is_shutting_down()) {
      if (auto st = e.cluster_status()) {
        auto seen = "members " + sshpool::text::join(st->members, ",") + "\n";
        for (auto& p : st->peers)
          seen += "peer " + p.address + " " + (p.node_id.empty() ? "-" : p.node_id) + " " +
                  (p.up ? "up" : "down") + " " + std::to_string(p.connects) + " " +
                  std::to_string(p.failures) + "\n";
        if (seen != last)
          std::cout << seen << std::flush;
        last = std::move(seen);
      }
      // cluster_status() is a snapshot and membership changes announce themselves by no
      // event a caller can wait on: this process looks at the pace the tests poll at.
      std::this_thread::sleep_for(sshpool::test::poll_interval);
    }
    e.wait_for_shutdown();
    std::cout << "drained" << std::endl;
    return 0;
  } catch (const std::exception& ex) {
    std::cout << "error: " << ex.what() << std::endl;
    return 2;
  }
}
