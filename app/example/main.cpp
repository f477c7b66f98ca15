// sshpool-example: a service that embeds the engine. For each user it leases a connection,
// forwards real HTTP requests through SSH to the service on that user's side (one plain,
// then a batch of concurrent ones on the same connection, as the seed's batch pattern),
// releases it, and prints responses, connection, pool and cleanup statistics.
// With --serve it then keeps forwarding from several threads until SIGTERM/SIGINT, drains
// (a second signal cuts at once) and prints the shutdown report.
//
// usage: sshpool-example --port P --login USER --identity KEY --known-hosts FILE
//                        USER=TARGET_PORT [USER=TARGET_PORT...]
//        [--host 127.0.0.1] [--batch 20] [--path /api/chat]
//        [--serve [--load-path /slow/200] [--load-threads 8] [--grace-ms 30000]]
#include <sshpool/sshpool.hpp>

#include <atomic>
#include <cstdlib>
#include <future>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace {

struct options {
  sshpool::endpoint base;
  std::vector<std::pair<std::string, std::uint16_t>> users;
  int batch = 20;
  std::string path = "/api/chat";
  bool serve = false;
  std::string load_path = "/slow/200";
  int load_threads = 8;
  int grace_ms = 30000;
};

[[noreturn]] void usage(const char* why) {
  std::cerr
      << "sshpool-example: " << why << "\n"
      << "usage: sshpool-example --port P --login USER --identity KEY --known-hosts FILE\n"
         "                       USER=TARGET_PORT [USER=TARGET_PORT...]\n"
         "                       [--host H] [--batch N] [--path P]\n"
         "                       [--serve [--load-path P] [--load-threads N] [--grace-ms N]]\n";
  std::exit(2);
}

options parse(int argc, char** argv) {
  options opts;
  opts.base.host = "127.0.0.1";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        usage(("missing value for " + arg).c_str());
      return argv[++i];
    };
    if (arg == "--host")
      opts.base.host = value();
    else if (arg == "--port")
      opts.base.port = static_cast<std::uint16_t>(std::stoi(value()));
    else if (arg == "--login")
      opts.base.username = value();
    else if (arg == "--identity")
      opts.base.identity_file = value();
    else if (arg == "--known-hosts")
      opts.base.known_hosts_file = value();
    else if (arg == "--batch")
      opts.batch = std::stoi(value());
    else if (arg == "--path")
      opts.path = value();
    else if (arg == "--serve")
      opts.serve = true;
    else if (arg == "--load-path")
      opts.load_path = value();
    else if (arg == "--load-threads")
      opts.load_threads = std::stoi(value());
    else if (arg == "--grace-ms")
      opts.grace_ms = std::stoi(value());
    else if (auto eq = arg.find('='); eq != std::string::npos && arg[0] != '-')
      opts.users.emplace_back(arg.substr(0, eq),
                              static_cast<std::uint16_t>(std::stoi(arg.substr(eq + 1))));
    else
      usage(("unknown argument " + arg).c_str());
  }
  if (opts.base.port == 0 || opts.base.username.empty() || opts.base.identity_file.empty() ||
      opts.base.known_hosts_file.empty() || opts.users.empty())
    usage("missing arguments");
  return opts;
}

std::string shorten(const std::string& body) {
  auto text = body.size() > 160 ? body.substr(0, 160) + "..." : body;
  for (auto& ch : text)
    if (ch == '\n')
      ch = ' ';
  return text;
}

/// Forwards from `load_threads` threads until a signal starts the drain, then prints the
/// report. True if the drain completed (forced or not) and no request failed before it.
bool serve(sshpool::engine& engine, const options& opts) {
  engine.handle_signals();
  std::atomic<long> ok{0};
  std::atomic<long> failed_before_drain{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < opts.load_threads; ++t)
    workers.emplace_back([&, t] {
      auto& [user, port] = opts.users[static_cast<std::size_t>(t) % opts.users.size()];
      for (long i = 0; !engine.is_shutting_down(); ++i) {
        auto conn = engine.pool().get_connection(user);
        if (!conn)
          continue; // shutting_down once the drain started
        sshpool::request req;
        req.id = user + "-load-" + std::to_string(t) + "-" + std::to_string(i);
        req.path = opts.load_path;
        auto res = conn->forward(req);
        if (res && res->status == 200)
          ++ok;
        else if (!engine.is_shutting_down())
          ++failed_before_drain;
        engine.pool().release_connection(user, *conn);
      }
    });
  std::cout << "serving: " << opts.load_threads << " threads forwarding " << opts.load_path
            << " until SIGTERM/SIGINT (a second signal cuts at once)" << std::endl;
  auto report = engine.wait_for_shutdown();
  for (auto& w : workers)
    w.join();
  std::cout << "shutdown report: duration_ms=" << report.duration.count()
            << " connections_closed=" << report.connections_closed
            << " in_flight_at_start=" << report.in_flight_at_start
            << " completed_during_drain=" << report.completed_during_drain << " cut=" << report.cut
            << " forced=" << (report.forced ? "true" : "false") << " requests_ok=" << ok.load()
            << std::endl;
  return failed_before_drain.load() == 0;
}

} // namespace

int main(int argc, char** argv) {
  auto opts = parse(argc, argv);

  sshpool::engine_config cfg;
  cfg.pool.max_connections_per_user = 3;
  cfg.pool.max_channels_per_connection = 10;
  cfg.pool.max_idle_time = std::chrono::minutes(5);
  cfg.pool.cleanup_interval = std::chrono::seconds(30);
  cfg.pool.acquire_timeout = std::chrono::seconds(5);
  cfg.pool.shutdown_grace_period = std::chrono::milliseconds(opts.grace_ms);
  cfg.log_level = "warn";
  sshpool::engine engine{cfg}; // owns its caf::actor_system

  for (auto& [user, target_port] : opts.users) {
    sshpool::endpoint ep = opts.base; // how this user's machine is reached
    ep.target_host = "127.0.0.1";     // the service on the user's side
    ep.target_port = target_port;
    if (auto ok = engine.set_endpoint(user, ep); !ok) {
      std::cerr << sshpool::to_string(ok.error().code()) << ": " << ok.error().message() << "\n";
      return 1;
    }
  }

  auto& pool = engine.pool();
  int failures = 0;
  for (auto& [user, target_port] : opts.users) {
    std::cout << "== user " << user << " (service on its side: 127.0.0.1:" << target_port << ")\n";
    sshpool::expected<sshpool::connection> conn = pool.get_connection(user);
    if (!conn) {
      std::cerr << sshpool::to_string(conn.error().code()) << ": " << conn.error().message()
                << "\n";
      ++failures;
      continue;
    }
    sshpool::request req;
    req.id = user + "-req1";
    req.method = "POST";
    req.path = opts.path;
    req.headers = {{"content-type", "application/json"}};
    req.body =
        R"({"model":"demo-llm","stream":false,"messages":[{"role":"user","content":"Hello"}]})";
    sshpool::expected<sshpool::response> res = conn->forward(req);
    if (res) {
      auto backend = res->header("x-backend");
      std::cout << res->id << " -> " << res->status << " from " << (backend ? *backend : "?")
                << ": " << shorten(res->body) << "\n";
    } else {
      std::cerr << res.error().to_string() << "\n";
      ++failures;
    }

    // The seed's batch pattern: many concurrent forwards on one leased connection.
    std::vector<std::future<sshpool::expected<sshpool::response>>> batch;
    for (int i = 0; i < opts.batch; ++i)
      batch.push_back(std::async(std::launch::async, [&conn, &user = user, i] {
        sshpool::request r;
        r.id = user + "-batch" + std::to_string(i);
        r.method = "GET";
        r.path = "/api/tags";
        return conn->forward(r);
      }));
    int ok = 0;
    for (auto& f : batch) {
      auto r = f.get();
      if (r && r->status == 200)
        ++ok;
      else
        ++failures;
    }
    std::cout << "batch: " << ok << "/" << opts.batch << " concurrent GET /api/tags answered 200\n";

    auto stats = conn->get_stats();
    std::cout << "connection #" << stats.id << ": "
              << (conn->is_healthy() ? "healthy" : "unhealthy") << ", " << stats.channel_count
              << " channels open, " << stats.requests << " requests, " << stats.bytes_out
              << " bytes out, " << stats.bytes_in << " bytes in\n";
    if (auto released = pool.release_connection(user, *conn); !released)
      std::cerr << released.error().to_string() << "\n";
  }

  sshpool::pool_stats stats = pool.get_pool_stats();
  std::cout << "== pool: " << stats.total_connections << " connections, " << stats.user_count
            << " users, " << stats.leases << " leases, " << stats.waiters << " waiting\n";
  // The first user's connections are closed explicitly; the rest go with the shutdown.
  if (auto closed = pool.close_connection(opts.users.front().first); closed)
    std::cout << "== closed " << *closed << " connection(s) of " << opts.users.front().first
              << "\n";
  auto cleanup = engine.cleanup().get_stats();
  std::cout << "== cleanup: " << (cleanup.is_running ? "running" : "stopped") << ", every "
            << cleanup.config.cleanup_interval.count() << " ms closes connections idle for "
            << cleanup.config.max_idle_time.count() << " ms; " << cleanup.runs << " runs, "
            << cleanup.cleanup_count << " closed\n";
  if (opts.serve)
    return serve(engine, opts) && failures == 0 ? 0 : 1;
  auto report = engine.shutdown(); // drains; returns at once when nothing is in flight
  std::cout << "== shutdown: " << report.duration.count() << " ms, " << report.connections_closed
            << " connections closed, " << report.in_flight_at_start << " requests in flight, "
            << report.cut << " cut\n";
  return failures == 0 ? 0 : 1;
} // the engine's destructor drains and stops everything
