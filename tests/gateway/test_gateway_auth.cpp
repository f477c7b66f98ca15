// sshpool-demo's client authentication through the real binary (issue #16, item 1): API keys
// and JWTs (RSA, EC and Ed25519 keys of a JWKS generated at test time) decide the user;
// 401 bodies that do not depend on the user named; 403 for another user's prefix or
// X-User-Id; the Authorization header kept from the upstream unless the user's entry
// forwards it; failures counted by reason and limited per source (429); and the refusal to
// serve a non-loopback address without authentication.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "backend/http_backend.hpp"
#include "gateway/gateway_harness.hpp"
#include "support/jwt_mint.hpp"
#include "support/netns.hpp"
#include "support/test_sshd.hpp"

using namespace sshpool::test;
using namespace std::chrono_literals;
using sshpool::demo::http_backend;
using json = nlohmann::json;

namespace {

/// SHA-256 (hex) of the test's API keys, computed by the sha256sum tool.
std::string sha256_hex(const std::string& key) {
  temp_dir dir;
  auto in = dir.write("key", key);
  std::string command = "sha256sum '" + in + "' > '" + in + ".sum'";
  REQUIRE(std::system(command.c_str()) == 0);
  std::ifstream sum{in + ".sum"};
  std::string hex;
  sum >> hex;
  REQUIRE(hex.size() == 64);
  return hex;
}

/// A config for alice (one API key) and bob (one API key, his Authorization forwarded),
/// with JWTs of `jwks_file`, and `extra` top-level members.
std::string auth_config(const test_sshd& sshd, std::uint16_t backend_port,
                        const std::string& jwks_file, const std::string& extra = {}) {
  auto cfg =
      json::parse(make_config(sshd, {{"alice", backend_port}, {"bob", backend_port}}, extra));
  cfg["users"]["alice"]["api_keys_sha256"] = {sha256_hex("alice-secret-key")};
  cfg["users"]["bob"]["api_keys_sha256"] = {sha256_hex("bob-secret-key")};
  cfg["users"]["bob"]["forward_authorization"] = true;
  if (!jwks_file.empty())
    cfg["jwt"] = {
        {"public_key_file", jwks_file}, {"issuer", "https://id.example"}, {"audience", "sshpool"}};
  return cfg.dump();
}

std::string claims(const std::string& sub, long long exp_in = 300) {
  return json{
      {"sub", sub}, {"iss", "https://id.example"}, {"aud", "sshpool"}, {"exp", unix_now() + exp_in}}
      .dump();
}

std::string jwt_for(const signing_key& key, const std::string& kid, const std::string& sub,
                    long long exp_in = 300) {
  return make_jwt(json{{"alg", key.alg()}, {"kid", kid}}.dump(), claims(sub, exp_in), key);
}

using headers = std::vector<std::pair<std::string, std::string>>;

headers bearer(const std::string& token, headers more = {}) {
  more.emplace_back("Authorization", "Bearer " + token);
  return more;
}

/// The headers the backend's /info saw (a JSON object).
json seen_headers(const http_response& res) {
  auto doc = json::parse(res.body, nullptr, false);
  REQUIRE(doc.is_object());
  return doc["headers"];
}

double auth_failures(std::uint16_t port, const std::string& reason) {
  return metric(port, "sshpool_gateway_auth_failures_total{reason=\"" + reason + "\"}");
}

} // namespace

TEST_CASE("with authentication, the credential decides the user", "[gateway][auth]") {
  test_sshd sshd;
  http_backend backend{http_backend::options{}};
  temp_dir dir;
  signing_key rsa{signing_key::kind::rsa};
  signing_key ec{signing_key::kind::ec};
  signing_key ed{signing_key::kind::ed25519};
  auto jwks = dir.write("jwks.json", "{\"keys\":[" + rsa.jwk("r") + "," + ec.jwk("e") + "," +
                                         ed.jwk("d") + "]}");
  auto cfg = dir.write("config.json", auth_config(sshd, backend.port(), jwks));
  running_gateway gw{cfg};

  SECTION("API keys: the right one, a wrong one, another user's") {
    auto res = fetch(gw.port, "GET", "/api/tags", bearer("alice-secret-key"));
    CHECK(res.status == 200);
    CHECK(res.body.find("demo-llm") != std::string::npos);
    // The path travels as it is; the prefix of the key's own user is allowed and stripped.
    res = fetch(gw.port, "GET", "/u/alice/info", bearer("alice-secret-key"));
    REQUIRE(res.status == 200);
    CHECK(json::parse(res.body)["path"] == "/info");
    CHECK(fetch(gw.port, "GET", "/info", bearer("alice-secret-key", {{"X-User-Id", "alice"}}))
              .status == 200);

    res = fetch(gw.port, "GET", "/api/tags", bearer("wrong-key"));
    CHECK(res.status == 401);
    CHECK(res.header("WWW-Authenticate") == "Bearer realm=\"sshpool\", error=\"invalid_token\"");
    CHECK(json::parse(res.body)["code"] == "unauthorized");

    res = fetch(gw.port, "GET", "/u/bob/api/tags", bearer("alice-secret-key"));
    CHECK(res.status == 403);
    CHECK(json::parse(res.body)["code"] == "forbidden");
    CHECK(fetch(gw.port, "GET", "/api/tags", bearer("alice-secret-key", {{"X-User-Id", "bob"}}))
              .status == 403);
    CHECK(auth_failures(gw.port, "forbidden_user") == 2);
    CHECK(auth_failures(gw.port, "unknown_api_key") == 1);
  }

  SECTION("401 bodies are the same whether or not the named user exists") {
    auto ask = [&](const std::string& target, headers h) {
      h.emplace_back("X-Request-Id", "fixed-id");
      auto res = fetch(gw.port, "GET", target, h);
      CHECK(res.status == 401);
      return res;
    };
    for (const headers& credential :
         {headers{}, bearer("wrong-key"), bearer(jwt_for(ed, "d", "alice", -600))}) {
      auto known = ask("/u/alice/api/tags", credential);
      auto unknown = ask("/u/nobody-here/api/tags", credential);
      auto by_header = ask("/api/tags", headers{{"X-User-Id", "nobody-here"}});
      CHECK(known.body == unknown.body);
      CHECK(known.header("WWW-Authenticate") == unknown.header("WWW-Authenticate"));
      CHECK(by_header.body == known.body);
    }
    CHECK(ask("/api/tags", {}).header("WWW-Authenticate") == "Bearer realm=\"sshpool\"");
    CHECK(auth_failures(gw.port, "missing") >= 5);
    CHECK(auth_failures(gw.port, "expired") == 2);
  }

  SECTION("Authorization goes upstream only when the user's entry says so") {
    auto res = fetch(gw.port, "GET", "/info", bearer("alice-secret-key"));
    REQUIRE(res.status == 200);
    CHECK_FALSE(seen_headers(res).contains("Authorization"));
    res = fetch(gw.port, "GET", "/info", bearer("bob-secret-key"));
    REQUIRE(res.status == 200);
    CHECK(seen_headers(res)["Authorization"] == "Bearer bob-secret-key");
  }

  SECTION("JWTs signed by each key of the JWKS; refused ones") {
    for (const signing_key* key : {&rsa, &ec, &ed}) {
      INFO(key->alg());
      const char* kid = key == &rsa ? "r" : key == &ec ? "e" : "d";
      auto res = fetch(gw.port, "GET", "/info", bearer(jwt_for(*key, kid, "alice")));
      REQUIRE(res.status == 200);
      CHECK_FALSE(seen_headers(res).contains("Authorization"));
      // The token of bob's machine names bob: his prefix is his own.
      CHECK(fetch(gw.port, "GET", "/u/bob/info", bearer(jwt_for(*key, kid, "bob"))).status == 200);
    }
    // A valid token for a user this gateway does not serve: 403, to its holder only.
    auto res = fetch(gw.port, "GET", "/info", bearer(jwt_for(ed, "d", "carol")));
    CHECK(res.status == 403);
    CHECK(auth_failures(gw.port, "unknown_user") == 1);
    // Signed by a key the JWKS does not hold, under a kid it does; an unknown kid.
    signing_key other{signing_key::kind::ed25519};
    CHECK(fetch(gw.port, "GET", "/info", bearer(jwt_for(other, "d", "alice"))).status == 401);
    CHECK(fetch(gw.port, "GET", "/info", bearer(jwt_for(ed, "nope", "alice"))).status == 401);
    // alg none, and HS256 with a public key as the secret.
    auto none = base64url(R"({"alg":"none","kid":"d"})") + "." + base64url(claims("alice")) + ".";
    CHECK(fetch(gw.port, "GET", "/info", bearer(none)).status == 401);
    auto hs = make_hs256_jwt(R"({"alg":"HS256","kid":"d"})", claims("alice"), ed.jwk("d"));
    CHECK(fetch(gw.port, "GET", "/info", bearer(hs)).status == 401);
    CHECK(auth_failures(gw.port, "bad_signature") == 1);
    CHECK(auth_failures(gw.port, "unknown_key") == 1);
    CHECK(auth_failures(gw.port, "bad_algorithm") == 1);
    CHECK(auth_failures(gw.port, "malformed") == 1);
    auto stats = json::parse(fetch(gw.port, "GET", "/stats").body);
    CHECK(stats["gateway"]["auth_failures"]["bad_signature"] == 1);
  }
}

TEST_CASE("a request that will be refused is answered at its head: no 100 Continue, no body read",
          "[gateway][auth]") {
  test_sshd sshd;
  http_backend backend{http_backend::options{}};
  temp_dir dir;
  running_gateway gw{dir.write("config.json", auth_config(sshd, backend.port(), {}))};
  {
    http_client client{gw.port};
    client.send_raw("POST /u/alice/echo HTTP/1.1\r\nHost: gw\r\nContent-Length: 10000000\r\n"
                    "Expect: 100-continue\r\n\r\n");
    auto res = client.read_response(5s);
    CHECK(res.status == 401); // not 100 Continue
    CHECK(res.header("WWW-Authenticate").rfind("Bearer", 0) == 0);
  }
  {
    // Without Expect: answered as soon as the head is in, most of the body never sent.
    http_client client{gw.port};
    client.send_raw("POST /echo HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer wrong-key\r\n"
                    "Content-Length: 10000000\r\n\r\n" +
                    std::string(1000, 'x'));
    CHECK(client.read_response(5s).status == 401);
  }
  // With the right key a body is read and forwarded whole.
  std::string body(200000, 'b');
  http_client client{gw.port};
  client.send_request("POST", "/echo",
                      {{"Authorization", "Bearer alice-secret-key"}, {"Expect", "100-continue"}},
                      body);
  auto res = client.read_response(10s);
  CHECK(res.status == 200);
  CHECK(res.body.find(body) != std::string::npos);
  CHECK(auth_failures(gw.port, "missing") == 1);
  CHECK(auth_failures(gw.port, "unknown_api_key") == 1);
}

TEST_CASE("a source with too many failed authentications gets 429", "[gateway][auth]") {
  test_sshd sshd;
  http_backend backend{http_backend::options{}};
  temp_dir dir;
  auto cfg = dir.write("config.json", auth_config(sshd, backend.port(), {},
                                                  R"("auth_max_failures":3,)"
                                                  R"("auth_failure_window":60000)"));
  running_gateway gw{cfg};
  REQUIRE(fetch(gw.port, "GET", "/api/tags", bearer("alice-secret-key")).status == 200);
  for (int i = 0; i < 3; ++i)
    CHECK(fetch(gw.port, "GET", "/api/tags", bearer("guess-" + std::to_string(i))).status == 401);
  // Refused before any verification, the right key included.
  auto res = fetch(gw.port, "GET", "/api/tags", bearer("alice-secret-key"));
  CHECK(res.status == 429);
  CHECK(json::parse(res.body)["code"] == "too_many_auth_failures");
  auto retry = res.header("Retry-After");
  REQUIRE_FALSE(retry.empty());
  CHECK(std::stoi(retry) >= 1);
  CHECK(std::stoi(retry) <= 60);
  CHECK(auth_failures(gw.port, "unknown_api_key") == 3);
  CHECK(auth_failures(gw.port, "rate_limited") == 1);
}

TEST_CASE("a non-loopback listen address needs authentication or allow_unauthenticated",
          "[gateway][auth]") {
  test_sshd sshd;
  temp_dir dir;
  auto open_cfg = dir.write("open.json", make_config(sshd, {{"alice", 9}}));
  auto run = [&](const std::string& file, std::vector<std::string> extra) {
    std::vector<std::string> args = {SSHPOOL_DEMO_BINARY, "--config", file, "--listen",
                                     "0.0.0.0:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<child_process>(args, std::vector<std::string>{"LISTEN"});
  };
  auto refused = run(open_cfg, {});
  CHECK(refused->wait_exit(20s) == 2);
  INFO("stderr: " << refused->err());
  CHECK(refused->err().find("listen: 0.0.0.0 is not a loopback address") != std::string::npos);
  CHECK(refused->err().find("allow_unauthenticated") != std::string::npos);

  // Loopback needs nothing; allow_unauthenticated or an API key lets 0.0.0.0 start.
  CHECK(fetch(running_gateway{open_cfg}.port, "GET", "/healthz").status == 200);
  auto allowed = run(open_cfg, {"--allow-unauthenticated", "true"});
  CHECK(allowed->wait_for_output("listening on 0.0.0.0:", 30s));
  auto keyed = run(dir.write("keyed.json", auth_config(sshd, 9, {})), {});
  CHECK(keyed->wait_for_output("listening on 0.0.0.0:", 30s));
}

TEST_CASE("without admin_listen, a listener facing the network shows /metrics and /stats to "
          "loopback clients only (network namespace)",
          "[gateway][auth]") {
  SSHPOOL_TEST_NETNS(ns)
  test_sshd sshd;
  temp_dir dir;
  running_gateway gw{
      dir.write("keyed.json", auth_config(sshd, 9, {})), {}, {"--listen", "0.0.0.0:0"}};
  CHECK(fetch(gw.port, "GET", "/stats").status == 200);
  CHECK(fetch(gw.port, "GET", "/metrics").status == 200);
  // From the namespace, through the test's end of the veth pair: not loopback.
  auto status_from_ns = [&](const std::string& path) {
    auto out = dir.path() + "/status";
    std::remove(out.c_str());
    auto cmd = "ip netns exec " + ns.name() + " curl -s -o /dev/null -w '%{http_code}' http://" +
               ns.host_address() + ":" + std::to_string(gw.port) + path + " > " + out;
    CHECK(std::system(cmd.c_str()) == 0);
    std::ifstream in{out};
    std::string status;
    std::getline(in, status);
    return status;
  };
  CHECK(status_from_ns("/healthz") == "200");
  CHECK(status_from_ns("/readyz") == "200");
  CHECK(status_from_ns("/stats") == "403");
  CHECK(status_from_ns("/metrics") == "403");
}

TEST_CASE("--check-config shows the authentication settings, hashes only", "[gateway][auth]") {
  test_sshd sshd;
  temp_dir dir;
  signing_key ec{signing_key::kind::ec};
  auto pem = dir.write("jwt.pem", ec.public_pem());
  auto cfg = dir.write("config.json", auth_config(sshd, 9, pem));
  child_process check{{SSHPOOL_DEMO_BINARY, "--config", cfg, "--check-config"}};
  REQUIRE(check.wait_exit(20s) == 0);
  auto shown = json::parse(check.out());
  CHECK(shown["jwt"] == json{{"public_key_file", pem},
                             {"issuer", "https://id.example"},
                             {"audience", "sshpool"},
                             {"leeway_seconds", 30}});
  CHECK(shown["users"]["alice"]["api_keys_sha256"] == json{sha256_hex("alice-secret-key")});
  CHECK_FALSE(shown["users"]["alice"].contains("forward_authorization"));
  CHECK(shown["users"]["bob"]["forward_authorization"] == true);
  CHECK(shown["allow_unauthenticated"] == "false");
  CHECK(shown["auth_max_failures"] == "20");
  CHECK(check.out().find("secret-key") == std::string::npos);
}
