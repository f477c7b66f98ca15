// sshpool-demo with TLS on its front end and with an admin listener, through the real binary:
// curl with --cacert (keep-alive, a streamed response, ALPN), TLS 1.1 refused, plain HTTP to
// the TLS port closed cleanly, the certificate reloaded on SIGHUP without dropping a kept-alive
// connection (and a bad pair refused), a flood of connections that never finish their
// handshake while a normal client is served, and the operational endpoints served only by
// the admin listener. A CA and server certificates are made by the openssl CLI in a temp dir
// for each test; the test's own TLS client uses OpenSSL.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <csignal>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/http_backend.hpp"
#include "gateway/gateway_harness.hpp"
#include "support/pki.hpp"
#include "support/slow_flood.hpp"
#include "support/test_sshd.hpp"
#include "support/timing.hpp"

using namespace sshpool::test;
using namespace std::chrono_literals;
using sshpool::demo::http_backend;

namespace {

/// A CA and server certificates it signs (support/pki.hpp), and the files the gateway reads.
struct test_pki : test_ca {
  using test_ca::test_ca;

  /// Copies NAME.pem / NAME.key over the files the gateway reads (live.pem / live.key).
  void install(const std::string& cert_name, const std::string& key_name) const {
    auto copy = [&](const std::string& from, const std::string& to) {
      std::ifstream in{dir.path() + "/" + from, std::ios::binary};
      std::ofstream out{dir.path() + "/" + to, std::ios::binary | std::ios::trunc};
      out << in.rdbuf();
      REQUIRE(out.good());
    };
    copy(cert_name + ".pem", "live.pem");
    copy(key_name + ".key", "live.key");
  }

  /// The config's "tls" member for live.pem / live.key.
  std::string config_member() const {
    return R"("tls":{"cert_file":")" + dir.path() + R"(/live.pem","key_file":")" + dir.path() +
           R"(/live.key"})";
  }
};

/// alice's sshd and backend, a temporary directory, and a PKI whose certificate "one" (for
/// localhost) is the one the gateway's config names.
struct tls_setup {
  test_sshd sshd;
  http_backend backend{http_backend::options{}};
  temp_dir dir;
  test_pki pki{dir};

  tls_setup() {
    pki.issue("one", "localhost");
    pki.install("one", "one");
  }

  /// config.json for alice with TLS, then `extra` (members, each after a comma).
  std::string config(const std::string& extra = "") const {
    return dir.write("config.json",
                     make_config(sshd, {{"alice", backend.port()}}, pki.config_member() + extra));
  }
};

/// A blocking TLS 1.2+ client of 127.0.0.1:port that verifies the server as "localhost"
/// against the test CA and offers ALPN http/1.1 (or exactly `version` when given).
class tls_client {
public:
  tls_client(std::uint16_t port, const std::string& ca_file, int version = 0) {
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    REQUIRE(ctx_);
    SSL_CTX_load_verify_locations(ctx_.get(), ca_file.c_str(), nullptr);
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
    if (version != 0) {
      SSL_CTX_set_security_level(ctx_.get(), 0); // lets the library offer old versions
      version_ok_ = SSL_CTX_set_min_proto_version(ctx_.get(), version) == 1 &&
                    SSL_CTX_set_max_proto_version(ctx_.get(), version) == 1;
    }
    static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(ctx_.get(), alpn, sizeof alpn);
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    ssl_.reset(SSL_new(ctx_.get()));
    SSL_set_fd(ssl_.get(), fd_);
    SSL_set_tlsext_host_name(ssl_.get(), "localhost");
    SSL_set1_host(ssl_.get(), "localhost");
  }

  ~tls_client() {
    ssl_.reset();
    ::close(fd_);
  }

  tls_client(const tls_client&) = delete;
  tls_client& operator=(const tls_client&) = delete;

  /// Whether the requested protocol version could be set (the library may lack it).
  bool version_ok() const { return version_ok_; }

  /// The handshake; on failure `why` holds OpenSSL's reason code (ERR_GET_REASON).
  bool handshake(int& why) {
    ERR_clear_error();
    bool ok = SSL_connect(ssl_.get()) == 1;
    why = ok ? 0 : ERR_GET_REASON(ERR_peek_last_error());
    ERR_clear_error();
    return ok;
  }

  /// The server certificate's common name.
  std::string peer_cn() const {
    std::unique_ptr<X509, decltype(&X509_free)> cert{SSL_get1_peer_certificate(ssl_.get()),
                                                     &X509_free};
    char cn[256] = "";
    if (cert)
      X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof cn);
    return cn;
  }

  std::string alpn() const {
    const unsigned char* name = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl_.get(), &name, &len);
    return name == nullptr ? "" : std::string(reinterpret_cast<const char*>(name), len);
  }

  /// Sends raw bytes.
  void send(const std::string& bytes) {
    REQUIRE(SSL_write(ssl_.get(), bytes.data(), static_cast<int>(bytes.size())) ==
            static_cast<int>(bytes.size()));
  }

  /// GET `target` (keep-alive) and its response (Content-Length bodies only): status, body.
  std::pair<int, std::string> get(const std::string& target) {
    send("GET " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
    std::string in;
    std::size_t head_end = std::string::npos;
    while ((head_end = in.find("\r\n\r\n")) == std::string::npos)
      if (!read_more(in))
        return {0, in};
    auto length_at = in.find("Content-Length: ");
    REQUIRE(length_at < head_end);
    std::size_t length = std::stoul(in.substr(length_at + 16));
    while (in.size() < head_end + 4 + length)
      if (!read_more(in))
        return {0, in};
    return {std::stoi(in.substr(9, 3)), in.substr(head_end + 4, length)};
  }

private:
  bool read_more(std::string& in) {
    char buf[16384];
    int n = SSL_read(ssl_.get(), buf, sizeof buf);
    if (n <= 0)
      return false;
    in.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  struct ctx_free {
    void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
  };
  struct ssl_free {
    void operator()(SSL* s) const { SSL_free(s); }
  };
  std::unique_ptr<SSL_CTX, ctx_free> ctx_;
  std::unique_ptr<SSL, ssl_free> ssl_;
  int fd_ = -1;
  bool version_ok_ = true;
};

/// curl's result: exit code, stdout, stderr (-v).
struct curl_result {
  int code = -1;
  std::string out;
  std::string err;
};

curl_result curl(const std::vector<std::string>& args) {
  std::vector<std::string> all = {"/usr/bin/curl", "-sS", "-v"};
  all.insert(all.end(), args.begin(), args.end());
  child_process p{all};
  curl_result r;
  r.code = p.wait_exit(30s);
  r.out = p.out();
  r.err = p.err();
  return r;
}

} // namespace

TEST_CASE("TLS: curl with --cacert, keep-alive, a stream, ALPN; TLS 1.1 and plain HTTP refused",
          "[gateway][tls]") {
  tls_setup t;
  auto cfg = t.config(R"(,"admin_listen":"127.0.0.1:0")");
  running_gateway gw{cfg};
  auto admin = gw.proc.admin_port();
  REQUIRE(admin != 0);
  auto base = "https://localhost:" + std::to_string(gw.port);

  // Two requests on one connection; curl offers h2 and http/1.1, the gateway picks http/1.1.
  auto two = curl({"--cacert", t.pki.ca, base + "/u/alice/echo", base + "/u/alice/echo"});
  INFO("curl stderr: " << two.err);
  CHECK(two.code == 0);
  CHECK(two.err.find("ALPN: server accepted http/1.1") != std::string::npos);
  CHECK(two.err.find("Re-using existing connection") != std::string::npos);
  CHECK(two.err.find("TLSv1.3") != std::string::npos);

  // A streamed (chunked) response of 40 chunks arrives whole.
  auto stream = curl({"--cacert", t.pki.ca, "-o", t.dir.path() + "/stream.bin", "-w",
                      "%{size_download} %{http_code}", base + "/u/alice/chunked/40/5000"});
  INFO("curl stderr: " << stream.err);
  CHECK(stream.code == 0);
  CHECK(stream.out == "200000 200");
  CHECK(stream.err.find("Transfer-Encoding: chunked") != std::string::npos);

  // Plain HTTP to the TLS port: the connection is closed, no HTTP answer.
  auto failures = metric(admin, "sshpool_gateway_tls_handshake_failures_total");
  auto plain = fetch(gw.port, "GET", "/u/alice/echo");
  CHECK(plain.status == 0);
  CHECK(eventually([&] {
    return metric(admin, "sshpool_gateway_tls_handshake_failures_total") == failures + 1;
  }));

  // Without the CA the certificate is not trusted.
  CHECK(curl({base + "/u/alice/echo"}).code != 0);

  // TLS 1.1: the server answers with a protocol_version alert.
  tls_client old{gw.port, t.pki.ca, TLS1_1_VERSION};
  int why = 0;
  if (!old.version_ok()) {
    WARN("this OpenSSL cannot offer TLS 1.1: the TLS 1.1 refusal is not checked");
  } else if (!old.handshake(why) && why == SSL_R_NO_PROTOCOLS_AVAILABLE) {
    WARN("this OpenSSL refuses to offer TLS 1.1 at all: the TLS 1.1 refusal is not checked");
  } else {
    CHECK(why == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);
  }
  tls_client tls12{gw.port, t.pki.ca, TLS1_2_VERSION};
  REQUIRE(tls12.handshake(why));
  CHECK(tls12.alpn() == "http/1.1");
  CHECK(tls12.get("/u/alice/echo").first == 200);
  CHECK(metric(admin, "sshpool_gateway_tls_handshakes_total") >= 3);
}

TEST_CASE("TLS: SIGHUP reloads the certificate; kept-alive connections go on; a bad pair is "
          "refused",
          "[gateway][tls]") {
  tls_setup t;
  t.pki.issue("two", "localhost-reloaded");
  auto cfg = t.config();
  child_process shown{{SSHPOOL_DEMO_BINARY, "--config", cfg, "--check-config"}};
  REQUIRE(shown.wait_exit(30s) == 0);
  auto effective = nlohmann::json::parse(shown.out(), nullptr, false);
  CHECK(effective["tls"]["cert_file"] == t.dir.path() + "/live.pem");
  CHECK(effective["tls"]["key_file"] == t.dir.path() + "/live.key");
  running_gateway gw{cfg};

  tls_client kept{gw.port, t.pki.ca};
  int why = 0;
  REQUIRE(kept.handshake(why));
  CHECK(kept.peer_cn() == "localhost");
  CHECK(kept.get("/u/alice/echo").first == 200);

  t.pki.install("two", "two");
  gw.proc.signal(SIGHUP);
  REQUIRE(gw.proc.wait_for_output("tls_reloaded", 10s, true));
  CHECK(kept.get("/u/alice/echo").first == 200); // the same connection, the old certificate
  tls_client fresh{gw.port, t.pki.ca};
  REQUIRE(fresh.handshake(why));
  CHECK(fresh.peer_cn() == "localhost-reloaded");
  CHECK(fresh.get("/u/alice/echo").first == 200);

  // A certificate with another certificate's key: the reload is refused (the configuration
  // is checked whole), the current pair stays.
  t.pki.install("one", "two");
  gw.proc.signal(SIGHUP);
  REQUIRE(gw.proc.wait_for_output("reload_refused", 10s, true));
  CHECK(gw.proc.err().find("tls: key_file") != std::string::npos);
  tls_client after{gw.port, t.pki.ca};
  REQUIRE(after.handshake(why));
  CHECK(after.peer_cn() == "localhost-reloaded");
  CHECK(after.get("/u/alice/echo").first == 200);
  CHECK(kept.get("/u/alice/echo").first == 200);

  // The same mismatch at start: exit code 2, naming the setting.
  child_process check{{SSHPOOL_DEMO_BINARY, "--config", cfg, "--check-config"}};
  CHECK(check.wait_exit(30s) == 2);
  CHECK(check.err().find("tls: key_file") != std::string::npos);

  // A drain with a kept-alive TLS connection open: a clean exit (under ASan, every SSL
  // object and context freed).
  gw.proc.signal(SIGTERM);
  CHECK(gw.proc.wait_exit(30s) == 0);
}

TEST_CASE("TLS: connections that never finish a handshake do not keep a normal client out",
          "[gateway][tls][slots]") {
  REQUIRE(raise_fd_limit() >= 16000);
  tls_setup t;
  auto cfg = t.config(R"(,"admin_listen":"127.0.0.1:0","header_timeout":1000)");
  running_gateway gw{cfg};
  auto admin = gw.proc.admin_port();
  REQUIRE(admin != 0);
  {
    tls_client warm{gw.port, t.pki.ca};
    int why = 0;
    REQUIRE(warm.handshake(why));
    REQUIRE(warm.get("/u/alice/echo").first == 200); // the SSH connection is up
  }

  // 800 connections that send nothing (reopened as soon as they are closed), and 100 that
  // stop in the middle of a ClientHello (a record header announcing 512 bytes, then 6 of
  // them): below max_clients, so that each one stays until its deadline (the shedding of
  // the longest-waiting connection when full is test_gateway_slots' subject).
  slow_flood idle{{gw.port, 800, 0ms, 32}};
  REQUIRE(idle.wait_established(30s));
  std::vector<int> partial;
  const std::string hello_start{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11};
  for (int i = 0; i < 100; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    partial.push_back(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(gw.port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::send(fd, hello_start.data(), hello_start.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(hello_start.size()));
  }

  // Each normal client, on a fresh connection, is served within 2 s.
  long long worst = 0;
  for (int i = 0; i < 10; ++i) {
    auto start = steady::now();
    tls_client client{gw.port, t.pki.ca};
    int why = 0;
    REQUIRE(client.handshake(why));
    CHECK(client.get("/u/alice/echo").first == 200);
    worst = std::max(worst, ms_since(start));
  }
  INFO("slowest normal request: " << worst << " ms");
  CHECK(worst < 2000);
  // Stuck handshakes end at the head deadline; a partial ClientHello is one of them.
  CHECK(eventually(
      [&] { return metric(admin, "sshpool_gateway_tls_handshake_timeouts_total") >= 100; }));
  char byte = 0;
  for (int fd : partial) {
    CHECK(::recv(fd, &byte, 1, 0) == 0); // closed by the gateway
    ::close(fd);
  }
  // A drain while the flood still holds its handshakes: a clean exit.
  gw.proc.signal(SIGTERM);
  CHECK(gw.proc.wait_exit(30s) == 0);
}

TEST_CASE("TLS: with every slot carrying a request, a newcomer's 503 comes after its handshake",
          "[gateway][tls][slots]") {
  tls_setup t;
  auto cfg = t.config(R"(,"max_clients":2,"admin_listen":"127.0.0.1:0")");
  running_gateway gw{cfg};
  int why = 0;
  std::vector<std::unique_ptr<tls_client>> busy;
  for (int i = 0; i < 2; ++i) {
    busy.push_back(std::make_unique<tls_client>(gw.port, t.pki.ca));
    REQUIRE(busy.back()->handshake(why));
    REQUIRE(busy.back()->get("/u/alice/echo").first == 200);
    busy.back()->send("GET /u/alice/hang HTTP/1.1\r\nHost: localhost\r\n\r\n");
  }
  auto admin = gw.proc.admin_port();
  REQUIRE(admin != 0);
  REQUIRE(eventually([&] { return metric(admin, "sshpool_gateway_forwards_in_flight") == 2; }));
  tls_client late{gw.port, t.pki.ca};
  REQUIRE(late.handshake(why));
  auto [status, body] = late.get("/u/alice/echo");
  CHECK(status == 503);
  CHECK(body.find("too_many_clients") != std::string::npos);
}

TEST_CASE("admin_listen: the operational endpoints are served there and nowhere else",
          "[gateway][admin]") {
  test_sshd sshd;
  http_backend backend{http_backend::options{}};
  temp_dir dir;
  auto cfg = dir.write("config.json", make_config(sshd, {{"alice", backend.port()}},
                                                  R"("admin_listen":"127.0.0.1:0")"));
  running_gateway gw{cfg};
  auto admin = gw.proc.admin_port();
  REQUIRE(admin != 0);
  REQUIRE(admin != gw.port);

  auto stats = fetch(admin, "GET", "/stats");
  CHECK(stats.status == 200);
  CHECK(nlohmann::json::parse(stats.body, nullptr, false).contains("pool"));
  CHECK(fetch(admin, "GET", "/healthz").status == 200);
  CHECK(fetch(admin, "GET", "/readyz").status == 200);
  CHECK(fetch(admin, "GET", "/metrics").body.find("sshpool_ready 1") != std::string::npos);

  // The public listener: no operational endpoint; without a user such a path is an error
  // like any other, with a user it is the user's own path.
  for (const char* path : {"/stats", "/metrics", "/healthz", "/readyz"}) {
    auto res = fetch(gw.port, "GET", path);
    INFO(path << ": " << res.status << " " << res.body);
    CHECK(res.status == 400);
    CHECK(res.body.find("\"pool\"") == std::string::npos);
  }
  auto forwarded = fetch(gw.port, "GET", "/u/alice/stats");
  CHECK(forwarded.status == 404); // the backend's own answer for its unknown /stats
  CHECK(forwarded.body.find("\"pool\"") == std::string::npos);
  CHECK(fetch(gw.port, "GET", "/u/alice/echo").status == 200);

  // The admin listener never forwards to a user.
  CHECK(fetch(admin, "GET", "/u/alice/echo").status == 404);
  auto named = fetch(admin, "GET", "/echo", {{"X-User-Id", "alice"}});
  CHECK(named.status == 404);
  CHECK(named.body.find("not_found") != std::string::npos);
  CHECK(metric(admin, "sshpool_gateway_requests_total{status=\"200\",code=\"ok\"}") >= 1);
}
