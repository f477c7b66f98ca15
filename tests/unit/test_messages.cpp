// errc names, configuration validation, the CAF error mapping and the ASCII text helpers.
#include <catch2/catch.hpp>

#include <caf/all.hpp>

#include "sshpool/messages.hpp"
#include "sshpool/text.hpp"

using namespace sshpool;

TEST_CASE("every errc has a distinct name that parses back", "[messages]") {
  std::set<std::string> names;
  for (int i = 0; i <= static_cast<int>(errc::internal); ++i) {
    auto code = static_cast<errc>(i);
    std::string name = to_string(code);
    CHECK(names.insert(name).second);
    errc back = errc::internal;
    CHECK(from_string(name, back));
    CHECK(back == code);
  }
  errc out = errc::none;
  CHECK_FALSE(from_string("no_such_code", out));
  CHECK(std::string{to_string(errc::pool_exhausted)} == "pool_exhausted");
}

TEST_CASE("validate names the offending setting", "[messages]") {
  engine_config cfg;
  CHECK(validate(cfg));
  cfg.pool.max_connections_per_user = 0;
  auto bad = validate(cfg);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code() == errc::invalid_argument);
  CHECK(bad.error().message().find("max_connections_per_user") != std::string::npos);
  cfg = {};
  cfg.pool.acquire_timeout = std::chrono::milliseconds(-1);
  auto neg = validate(cfg);
  REQUIRE_FALSE(neg);
  CHECK(neg.error().message().find("acquire_timeout") != std::string::npos);
  cfg = {};
  cfg.pool.stream_window_bytes = 0;
  auto no_window = validate(cfg);
  REQUIRE_FALSE(no_window);
  CHECK(no_window.error().message().find("stream_window_bytes") != std::string::npos);
  cfg = {};
  cfg.log_level = "loud";
  CHECK_FALSE(validate(cfg));
}

TEST_CASE("validate checks the cluster section and names its key", "[messages]") {
  engine_config cfg;
  auto& c = cfg.cluster;
  c.node_id = "n1";
  c.listen = "127.0.0.1:4100";
  c.peers = {"127.0.0.1:4101", "node-2.internal:4102", "[::1]:4103"};
  c.ca_file = "ca.pem";
  c.cert_file = "n1.pem";
  c.key_file = "n1.key";
  INFO((validate(cfg) ? std::string{"valid"} : validate(cfg).error().to_string()));
  REQUIRE(validate(cfg)); // the control
  auto refused = [&](auto change, const std::string& key) {
    auto bad = cfg;
    change(bad.cluster);
    auto res = validate(bad);
    INFO(key);
    REQUIRE_FALSE(res);
    CHECK(res.error().code() == errc::invalid_argument);
    INFO(res.error().message());
    CHECK(res.error().message().rfind(key, 0) == 0);
  };
  refused([](cluster_config& x) { x.node_id = "n 1"; }, "cluster.node_id");
  refused([](cluster_config& x) { x.node_id = std::string(65, 'n'); }, "cluster.node_id");
  refused([](cluster_config& x) { x.node_id = "n\x01"; }, "cluster.node_id");
  refused([](cluster_config& x) { x.listen.clear(); }, "cluster.listen");
  refused([](cluster_config& x) { x.listen = "localhost:4100"; }, "cluster.listen");
  refused([](cluster_config& x) { x.listen = "127.0.0.1:0"; }, "cluster.listen");
  refused([](cluster_config& x) { x.listen = "::1:4100"; }, "cluster.listen");
  refused([](cluster_config& x) { x.peers.push_back("127.0.0.1"); }, "cluster.peers");
  refused([](cluster_config& x) { x.peers.push_back("127.0.0.1:70000"); }, "cluster.peers");
  refused([](cluster_config& x) { x.peers.push_back(x.listen); }, "cluster.peers");
  refused([](cluster_config& x) { x.ca_file.clear(); }, "cluster.ca_file");
  refused([](cluster_config& x) { x.cert_file.clear(); }, "cluster.cert_file");
  refused([](cluster_config& x) { x.key_file.clear(); }, "cluster.key_file");
  refused([](cluster_config& x) { x.heartbeat_interval = std::chrono::milliseconds{0}; },
          "cluster.heartbeat_interval");
  refused([](cluster_config& x) { x.heartbeat_timeout = x.heartbeat_interval; },
          "cluster.heartbeat_timeout");
  refused([](cluster_config& x) { x.reconnect_backoff_base = std::chrono::milliseconds{-5}; },
          "cluster.reconnect_backoff_base");
  refused([](cluster_config& x) { x.reconnect_backoff_cap = x.reconnect_backoff_base / 2; },
          "cluster.reconnect_backoff_cap");
  refused(
      [](cluster_config& x) {
        x.node_id.clear();
        x.listen = "127.0.0.1:4100";
      },
      "cluster.node_id");
  // Off: nothing else is looked at.
  cfg.cluster = {};
  CHECK(validate(cfg));
  // host:port parsing on its own.
  auto v6 = parse_host_port("[fe80::1%eth0]:22");
  REQUIRE(v6);
  CHECK(v6->host == "fe80::1%eth0");
  CHECK(v6->port == 22);
  CHECK_FALSE(parse_host_port("[::1:22"));
  CHECK_FALSE(parse_host_port("host:22x"));
  CHECK_FALSE(parse_host_port(":22"));
}

TEST_CASE("sshpool errors survive the trip through caf::error", "[messages]") {
  auto err = make_caf_error(errc::host_key_mismatch, "key changed");
  CHECK(err.category() == caf::atom("sshpool"));
  auto back = from_caf_error(err, errc::internal);
  CHECK(back.code() == errc::host_key_mismatch);
  CHECK(back.message() == "key changed");
  auto timeout = from_caf_error(caf::make_error(caf::sec::request_timeout), errc::internal);
  CHECK(timeout.code() == errc::timeout);
  auto down = from_caf_error(caf::make_error(caf::sec::request_receiver_down), errc::shutting_down);
  CHECK(down.code() == errc::shutting_down);
  CHECK(from_caf_error(caf::error{}, errc::internal).code() == errc::none);
}

TEST_CASE("the error category renders through the actor system", "[messages]") {
  caf::actor_system_config cfg;
  detail::add_public_message_types(cfg);
  caf::actor_system sys{cfg};
  auto text = sys.render(make_caf_error(errc::pool_exhausted, "3/3 connections"));
  CHECK(text.find("pool_exhausted") != std::string::npos);
  CHECK(text.find("3/3 connections") != std::string::npos);
}

TEST_CASE("the text helpers fold ASCII case only and trim spaces and tabs", "[messages]") {
  CHECK(text::iequals("Content-Length", "content-LENGTH"));
  CHECK_FALSE(text::iequals("Host", "Hosts"));
  CHECK_FALSE(text::iequals("[", "{"));       // '[' + 32 is '{': only A-Z fold
  CHECK_FALSE(text::iequals("\xC4", "\xE4")); // bytes above ASCII are compared as they are
  CHECK(text::lower("Keep-Alive \xC4Z") == "keep-alive \xC4z");
  CHECK(text::trim(" \t close \t") == "close");
  CHECK(text::trim("\r\n x") == "\r\n x"); // OWS is SP and HTAB, nothing else
  CHECK(text::trim(" \t ").empty());
  auto res = response{};
  res.headers = {{"X-A", "1"}, {"x-a", "2"}};
  REQUIRE(res.header("X-a") != nullptr);
  CHECK(*res.header("X-a") == "1");
  CHECK(res.header("X-") == nullptr);
}
