// The setting of most engine tests: an SSH server (test_sshd or fault_sshd), a backend behind
// it and an engine whose user "alice" reaches that backend through the server; and
// neighbours, other users of the same engine with a server and a backend of their own.
// Header-only (templates over the server type); for Catch2 test cases, which it REQUIREs in.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <utility>

#include "backend/http_backend.hpp"
#include "sshpool/sshpool.hpp"

namespace sshpool::test {

/// An engine configuration for tests: warnings and errors only in the log, and the given
/// acquire and request timeouts.
inline engine_config quiet_config(std::chrono::milliseconds acquire_timeout,
                                  std::chrono::milliseconds request_timeout) {
  engine_config cfg;
  cfg.log_level = "warn";
  cfg.pool.acquire_timeout = acquire_timeout;
  cfg.pool.request_timeout = request_timeout;
  return cfg;
}

/// A server, the backend "backend-a" behind it and an engine whose user "alice" reaches that
/// backend. The server and the backend outlive the engine (declared first).
template <class Server>
struct basic_world {
  Server sshd;
  demo::http_backend backend{demo::http_backend::options{"backend-a"}};
  engine eng;

  /// The server is built from `server_args`.
  template <class... ServerArgs>
  explicit basic_world(engine_config cfg, ServerArgs&&... server_args)
      : sshd(std::forward<ServerArgs>(server_args)...), eng(std::move(cfg)) {
    REQUIRE(eng.set_endpoint("alice", sshd.make_endpoint(backend.port())));
  }

  /// A lease on a connection of `user`, which must be granted.
  expected<connection> lease(const std::string& user) {
    auto conn = eng.pool().get_connection(user);
    INFO(user << ": " << (conn ? "leased" : conn.error().to_string()));
    REQUIRE(conn);
    return conn;
  }
};

/// Another user of `eng`, reaching a backend of their own named `backend_name` through a
/// server of their own.
template <class Server>
struct neighbour {
  Server sshd;
  demo::http_backend backend;

  neighbour(engine& eng, const std::string& user, std::string backend_name)
      : backend(demo::http_backend::options{std::move(backend_name)}) {
    REQUIRE(eng.set_endpoint(user, sshd.make_endpoint(backend.port())));
  }
};

} // namespace sshpool::test
