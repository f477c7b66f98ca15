// The bulk scenario of sshpool-bench-engine: one large streamed response, then concurrent
// streams, through the engine against OpenSSH `ssh -L` and nginx directly (see
// engine_scenarios.cpp; the downloads are in bulk.cpp).
#include <algorithm>
#include <atomic>
#include <functional>
#include <iostream>

#include "bulk.hpp"
#include "fleet.hpp"
#include "scenario.hpp"

namespace sshpool::bench {

namespace {

/// Warms `user` of `e` up with `connections` connections (as many first requests at once).
bool warm_up(engine& e, const std::string& user, std::size_t connections) {
  std::vector<std::string> users(connections, user);
  auto r = run_first_requests(e, users, body_bytes, fleet_limit);
  if (r.ok == connections)
    return true;
  std::cerr << "sshpool-bench-engine: warm-up failed: " << r.first_error << "\n";
  return false;
}

} // namespace

int bulk(const scenario_options& opts, const machine_context& ctx) {
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
  compare("engine", "ssh-L", ", target 1.0x");
  compare("engine", "direct", "");
  compare("engine " + n + "x 1 conn", "ssh-L " + n + "x", ", target 0.9x");
  compare("engine " + n + "x 3 conns", "ssh-L " + n + "x", "");
  compare("engine " + n + "x 3 conns", "engine " + n + "x 1 conn", "");
  print_rows("bulk (MB/s of response bodies; ssh -L with the same cipher)", rows);
  bool clean = true;
  for (auto& p : paths)
    if (!p.error.empty()) {
      clean = false;
      std::cout << "  !!! " << p.name << ": " << p.error << "\n";
    }
  return finish(opts, ",path,round,bytes,pieces,seconds,mb_per_s,error", lines, clean);
}

} // namespace sshpool::bench
