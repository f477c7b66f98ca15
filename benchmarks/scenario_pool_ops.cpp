// The pool-ops scenario of sshpool-bench-engine: lease + release pairs with no I/O, from the
// facade and through the typed actor interface, against bare CAF round trips (see
// engine_scenarios.cpp; the actor drivers are in pool_ops.cpp).
#include <algorithm>
#include <atomic>
#include <iostream>
#include <thread>

#include "fleet.hpp"
#include "pool_ops.hpp"
#include "scenario.hpp"

namespace sshpool::bench {

namespace {

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
  s.per_s = r.elapsed.count() > 0 ? static_cast<double>(r.ok) / seconds(r.elapsed) : 0;
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
          out.fail(!conn ? conn.error().to_string() : released.error().to_string());
          continue;
        }
        ++out.ok;
        out.latencies.push_back((std::chrono::steady_clock::now() - sent_at).count());
        limits.completed->fetch_add(1, std::memory_order_relaxed);
      }
    });
  for (auto& t : pool)
    t.join();
  ops_result total;
  total.elapsed = std::chrono::steady_clock::now() - start;
  for (auto& o : outs) {
    total.add(o);
    total.latencies.insert(total.latencies.end(), o.latencies.begin(), o.latencies.end());
  }
  return total;
}

} // namespace

int pool_ops(const scenario_options& opts, const machine_context& ctx) {
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
    lines.push_back(context_csv(ctx) + ',' + csv_field(s.name) + ',' + std::to_string(s.raw.ok) +
                    ',' + std::to_string(s.raw.errors) + ',' + fixed(seconds(s.raw.elapsed), 3) +
                    ',' + fixed(s.per_s, 0) + ',' + latency_csv(s.p50_ms) + ',' +
                    latency_csv(s.p99_ms));
  }
  return finish(opts, ",case,ops,errors,seconds,ops_per_s,p50_ms,p99_ms", lines, clean);
}

} // namespace sshpool::bench
