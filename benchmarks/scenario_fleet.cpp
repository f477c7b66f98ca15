// The cold-start and footprint scenarios of sshpool-bench-engine: many users' first
// requests at once, and many idle connections held (see engine_scenarios.cpp).
#include <algorithm>
#include <atomic>
#include <fstream>
#include <iostream>
#include <thread>

#include "fleet.hpp"
#include "scenario.hpp"
#include "support/process_info.hpp"

namespace sshpool::bench {

namespace {

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

} // namespace

int cold_start(const scenario_options& opts, const machine_context& ctx) {
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
  const std::string columns = ",users,connector_threads,handshakes_per_s_cap,seconds,handshakes,"
                              "handshakes_per_s,ok,errors,failed_handshakes,sshd_refusals,"
                              "lease_p50_ms,lease_p95_ms,lease_max_ms,handshake_hist_p95_le_ms,"
                              "alone_p50_ms";
  auto line = context_csv(ctx) + ',' + std::to_string(opts.users) + ',' +
              std::to_string(cfg.connector_threads) + ',' +
              std::to_string(cfg.pool.max_handshakes_per_second) + ',' + fixed(total_s, 3) + ',' +
              std::to_string(handshakes) + ',' + fixed(rate, 1) + ',' + std::to_string(r.ok) + ',' +
              std::to_string(r.errors) + ',' + std::to_string(failed_handshakes) + ',' +
              std::to_string(refusals) + ',' + fixed(lease_p50, 2) + ',' + fixed(lease_p95, 2) +
              ',' + fixed(percentile_ms(r.lease_latencies, 1.0), 2) + ',' +
              fixed(hist_p95 * 1000, 1) + ',' + fixed(alone_p50, 2);
  return finish(opts, columns, {line}, r.errors == 0);
}

int footprint(const scenario_options& opts, const machine_context& ctx) {
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
  auto rss_before = test::rss_bytes() / 1024;
  auto cores = std::thread::hardware_concurrency();
  std::cout << "footprint: " << opts.users << " idle connections (one per user) in " << opts.steps
            << " steps; RSS before: " << with_commas(rss_before) << " KiB, " << test::thread_count()
            << " threads\n";
  struct step {
    std::size_t connections;
    std::uint64_t rss;
    std::size_t threads;
  };
  std::vector<step> steps{{0, rss_before, test::thread_count()}};
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
      steps.push_back({to, test::rss_bytes() / 1024, test::thread_count()});
    }
    // Held idle for a while: the connections' keepalive and cleanup ticks run.
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
  auto stats = e->pool().get_pool_stats();
  auto rss_after = test::rss_bytes() / 1024;
  auto threads = test::thread_count();
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
  return finish(opts, ",connections,rss_kib,threads,final_kib_per_connection", lines,
                errors == 0 && stats.total_connections >= opts.users);
}

} // namespace sshpool::bench
