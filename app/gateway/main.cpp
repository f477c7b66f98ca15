// sshpool-demo: the HTTP gateway in front of an sshpool engine (see gateway/gateway.hpp).
//
// Reads its configuration (file < environment < flags; exit code 2 and a message naming the
// setting if anything is invalid), sets up logging before the engine exists (so the
// engine's lines share the format), starts the gateway and prints one line to stdout once
// it listens (preceded, in reverse mode, by one for the agent listener):
//
//   sshpool-demo agents dial in on port 2222 (host key SHA256:...)
//   sshpool-demo admin endpoints on 127.0.0.1:9090
//   sshpool-demo listening on 127.0.0.1:8080
//
// SIGHUP re-reads the configuration from the same sources (file, environment, flags) and
// applies its users (gateway::reload); an invalid one is logged and changes nothing.
//
// Then it serves until SIGTERM/SIGINT: /readyz turns 503, new requests get 503, streams in
// flight finish (within SHUTDOWN_GRACE_PERIOD; a second signal cuts them), and it prints
// the drain's report as one key=value line to stdout and exits 0:
//
//   shutdown report: duration_ms=12 connections_closed=3 in_flight_at_start=1 ...
#include <csignal>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "gateway/gateway.hpp"
#include "gateway/logging.hpp"
#include "gateway/reload_signal.hpp"
#include "gateway/settings.hpp"

int main(int argc, char** argv) {
  using namespace sshpool::gateway;
  // Before any thread starts (they inherit the mask): SIGHUP is taken by the reload thread.
  hangup_signal hup;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto env = [](const char* name) { return std::getenv(name); };
  auto loaded = load_config(args, env);
  if (!loaded) {
    std::cerr << "sshpool-demo: " << loaded.error().message() << "\n";
    return 2;
  }
  if (loaded->action == config_action::help) {
    std::cout << usage_text();
    return 0;
  }
  if (loaded->action == config_action::check) {
    // The agent listener's host key is created now if missing, so that the operator can
    // give its fingerprint to the users before the first start.
    std::optional<sshpool::ssh::host_key_identity> host_key;
    if (const auto& agents = loaded->config.engine.agents; !agents.listen.empty()) {
      auto identity = sshpool::ssh::load_host_key_identity(agents.host_key_file);
      if (!identity) {
        std::cerr << "sshpool-demo: agent_host_key: " << identity.error().message() << "\n";
        return 2;
      }
      host_key = *identity;
    }
    std::cout << describe(loaded->config, host_key ? &*host_key : nullptr) << "\n";
    return 0;
  }
  auto& cfg = loaded->config;
  setup_logging(cfg.log_level, cfg.format);
  // TLS writes go through OpenSSL's socket BIO (write(2), no MSG_NOSIGNAL): a client gone
  // mid-response must be an EPIPE error, not a fatal signal.
  std::signal(SIGPIPE, SIG_IGN);
  if (cfg.users.empty())
    log_event(spdlog::level::warn, "no_users",
              {field("hint", "list users in the config file: every request will get 404")});
  try {
    gateway gw{cfg};
    gw.handle_signals();
    gw.handle_reload([&args, &env]() -> sshpool::expected<gateway_config> {
      auto again = load_config(args, env);
      if (!again)
        return again.error();
      return std::move(again->config);
    });
    if (auto agents = gw.agent_listener())
      std::cout << "sshpool-demo agents dial in on port " << agents->port << " (host key "
                << agents->fingerprint << ")" << std::endl;
    if (auto admin = gw.admin_port()) {
      bool admin_v6 = cfg.admin_listen_host.find(':') != std::string::npos;
      std::cout << "sshpool-demo admin endpoints on "
                << (admin_v6 ? "[" + cfg.admin_listen_host + "]" : cfg.admin_listen_host) << ":"
                << *admin << std::endl;
    }
    bool v6 = cfg.listen_host.find(':') != std::string::npos;
    std::cout << "sshpool-demo listening on "
              << (v6 ? "[" + cfg.listen_host + "]" : cfg.listen_host) << ":" << gw.port()
              << std::endl;
    auto report = gw.wait();
    std::cout << "shutdown report: duration_ms=" << report.duration.count()
              << " connections_closed=" << report.connections_closed
              << " in_flight_at_start=" << report.in_flight_at_start
              << " completed_during_drain=" << report.completed_during_drain
              << " cut=" << report.cut << " forced=" << (report.forced ? "true" : "false")
              << std::endl;
  } catch (const std::invalid_argument& e) {
    flush_logs(std::chrono::seconds(2)); // the log's lines first, whole
    std::cerr << "sshpool-demo: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    flush_logs(std::chrono::seconds(2));
    std::cerr << "sshpool-demo: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
