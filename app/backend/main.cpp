// sshpool-backend: runs the demo/test HTTP/1.1 backend (sshpool::demo::http_backend) as a
// standalone process, so the demo, the benchmarks and manual experiments have a real
// service to forward to.
//
// Prints exactly one line, "sshpool-backend <name> listening on <addr>:<port>", once the
// socket listens (scripts wait for it and read the port from it), then serves until SIGINT
// or SIGTERM and exits 0. The signals are blocked in every thread and taken with sigwait, so
// no work happens in a signal handler.
#include <chrono>
#include <cstdint>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>

#include "backend/http_backend.hpp"
#include "net/stop_signals.hpp"
#include "net/text.hpp"

namespace {

constexpr std::string_view usage =
    "usage: sshpool-backend [--bind ADDR] [--port N] [--name NAME] [--token-delay-ms N]\n"
    "                       [--tokens N] [--help]\n"
    "\n"
    "A small HTTP/1.1 server standing in for the service on a user's machine.\n"
    "\n"
    "  --bind ADDR          address to listen on (default 127.0.0.1)\n"
    "  --port N             TCP port, 0 for an ephemeral one (default 0)\n"
    "  --name NAME          name reported in X-Backend and JSON bodies (default backend)\n"
    "  --token-delay-ms N   interval between /api/chat token lines (default 50)\n"
    "  --tokens N           token lines per /api/chat answer (default 12)\n"
    "  --help               print this text and exit\n";

/// Parses the command line into `opts`; returns false after printing why on stderr.
bool parse_args(int argc, char** argv, sshpool::demo::http_backend::options& opts, bool& help) {
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      help = true;
      return true;
    }
    std::string_view value;
    bool has_value = false;
    if (auto eq = flag.find('='); flag.substr(0, 2) == "--" && eq != std::string_view::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_value = true;
    }
    if (flag != "--bind" && flag != "--name" && flag != "--port" && flag != "--token-delay-ms" &&
        flag != "--tokens") {
      std::cerr << "sshpool-backend: unknown argument " << flag << "\n";
      return false;
    }
    if (!has_value) {
      if (i + 1 == argc) {
        std::cerr << "sshpool-backend: " << flag << " needs a value\n";
        return false;
      }
      value = argv[++i];
    }
    auto n = sshpool::net::parse_unsigned(value);
    if (flag == "--bind") {
      opts.bind = std::string(value);
    } else if (flag == "--name") {
      opts.name = std::string(value);
    } else if (flag == "--port" && n && *n <= 65535) {
      opts.port = static_cast<std::uint16_t>(*n);
    } else if (flag == "--token-delay-ms" && n && *n <= 86'400'000) {
      opts.token_delay = std::chrono::milliseconds(*n);
    } else if (flag == "--tokens" && n && *n <= 1'000'000) {
      opts.tokens = static_cast<std::size_t>(*n);
    } else {
      std::cerr << "sshpool-backend: invalid value for " << flag << ": '" << value << "'\n";
      return false;
    }
  }
  return true;
}

} // namespace

int main(int argc, char** argv) {
  sshpool::demo::http_backend::options opts;
  bool help = false;
  if (!parse_args(argc, argv, opts, help)) {
    std::cerr << "try 'sshpool-backend --help'\n";
    return 2;
  }
  if (help) {
    std::cout << usage;
    return 0;
  }

  // Blocked before the server thread exists, so it inherits the mask and only the wait
  // below receives the signals.
  const sshpool::net::stop_signals stop;

  try {
    sshpool::demo::http_backend backend(opts);
    std::cout << "sshpool-backend " << opts.name << " listening on " << opts.bind << ":"
              << backend.port() << std::endl;
    stop.wait();
  } catch (const std::exception& e) {
    std::cerr << "sshpool-backend: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
