// The facade snippet of the README (and of issue #2), verbatim: it must compile against
// the installed package. Run as is, set_endpoint reports the missing key file as
// invalid_argument.
#include <iostream>
#include <sshpool/sshpool.hpp>

int main() {
  sshpool::engine_config cfg;
  cfg.pool.max_connections_per_user = 3;
  cfg.pool.max_channels_per_connection = 10;
  cfg.pool.max_idle_time = std::chrono::minutes(5);
  cfg.pool.cleanup_interval = std::chrono::seconds(30);
  cfg.pool.acquire_timeout = std::chrono::seconds(5);
  sshpool::engine engine{cfg}; // owns its caf::actor_system

  sshpool::endpoint ep; // how user123's machine is reached
  ep.host = "127.0.0.1";
  ep.port = 2222;
  ep.username = "tunnel";
  ep.identity_file = "/path/to/id_ed25519";
  ep.known_hosts_file = "/path/to/known_hosts";
  ep.target_host = "127.0.0.1"; // the service on the user's side
  ep.target_port = 11434;
  if (auto set = engine.set_endpoint("user123", ep); !set) { // loads the key: invalid_argument
    std::cerr << sshpool::to_string(set.error().code()) << ": " << set.error().message() << "\n";
    return 1;
  }

  auto& pool = engine.pool();
  sshpool::expected<sshpool::connection> conn = pool.get_connection("user123");
  if (!conn) {
    std::cerr << sshpool::to_string(conn.error().code()) << ": " << conn.error().message() << "\n";
    return 1;
  }
  sshpool::request req;
  req.id = "req1";
  req.method = "POST";
  req.path = "/api/chat";
  req.headers = {{"content-type", "application/json"}};
  req.body = R"({"message":"Hello"})";
  sshpool::expected<sshpool::response> res = conn->forward(req); // optional 2nd arg: deadline
  if (res)
    std::cout << res->status << " " << res->body << "\n";
  pool.release_connection("user123", *conn);
  sshpool::pool_stats stats = pool.get_pool_stats();
  std::cout << stats.total_connections << " connections, " << stats.user_count << " users\n";
  std::cout << (conn->is_healthy() ? "healthy" : "unhealthy") << " "
            << conn->get_stats().channel_count << " channels\n";
  pool.close_connection("user123");
} // the engine's destructor drains and stops everything
