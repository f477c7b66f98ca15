// Hostile key files against a real sshd ([security][keys], issue #12): known_hosts files
// with `@revoked` and `@cert-authority` lines, CRLF line ends and names hashed by
// `ssh-keygen -H`; private keys that cannot be used (encrypted with no passphrase, a wrong
// passphrase, a file that is not a private key), refused by engine::set_endpoint.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <sstream>
#include <string>

#include "backend/http_backend.hpp"
#include "sshpool/sshpool.hpp"
#include "support/os.hpp"
#include "support/quiet_config.hpp"
#include "support/test_sshd.hpp"

using namespace sshpool;
using namespace sshpool::test;
using namespace std::chrono_literals;
using sshpool::demo::http_backend;

namespace {

void shell(const std::string& command) {
  INFO(command);
  REQUIRE(std::system(("(" + command + ") </dev/null >/dev/null 2>&1").c_str()) == 0);
}

std::string with_crlf(const std::string& text) {
  std::string out;
  for (char c : text)
    out += c == '\n' ? std::string{"\r\n"} : std::string{c};
  return out;
}

/// A private sshd logging authentication attempts, a backend, and the sshd's host key line.
struct world {
  test_sshd sshd{[] {
    sshd_options o;
    o.log_level = "VERBOSE";
    return o;
  }()};
  http_backend backend{http_backend::options{"backend"}};
  endpoint ep = sshd.make_endpoint(backend.port());
  /// "ssh-ed25519 BASE64": the sshd's host key, from the fixture's files, without the
  /// comment (as ssh and ssh-keyscan write known_hosts lines: the key ends the line).
  std::string host_key = [this] {
    std::istringstream pub{read_file(sshd.dir() + "/ssh_host_ed25519_key.pub")};
    std::string type, blob;
    pub >> type >> blob;
    return type + " " + blob;
  }();
  /// "[127.0.0.1]:PORT ssh-ed25519 BASE64".
  std::string line = "[127.0.0.1]:" + std::to_string(sshd.port()) + " " + host_key;

  /// Writes a known_hosts file for the endpoint; returns its path.
  std::string known_hosts(const std::string& name, const std::string& content) {
    ep.known_hosts_file = sshd.dir() + "/" + name;
    write_file(ep.known_hosts_file, content);
    return ep.known_hosts_file;
  }

  /// `ssh-keygen -H` on the endpoint's known_hosts file (its .old copy removed).
  void hash_known_hosts() {
    shell("ssh-keygen -H -f '" + ep.known_hosts_file + "'");
    std::remove((ep.known_hosts_file + ".old").c_str());
    REQUIRE(read_file(ep.known_hosts_file).find("127.0.0.1") == std::string::npos);
  }

  /// A connection and one request through it, or the error of either.
  expected<void> use(engine& eng, const std::string& user) {
    if (auto ok = eng.set_endpoint(user, ep); !ok)
      return ok;
    auto conn = eng.pool().get_connection(user);
    if (!conn)
      return conn.error();
    request req;
    req.id = "r";
    req.method = "GET";
    req.path = "/echo";
    auto res = conn->forward(req);
    eng.pool().release_connection(user, *conn);
    if (!res)
      return res.error();
    return {};
  }

  bool sshd_saw_authentication() { return read_file(sshd.log_file()).find("publickey") != npos; }
  static constexpr auto npos = std::string::npos;
};

} // namespace

TEST_CASE("known_hosts: a @revoked host key is refused whatever other lines say, and never "
          "recorded",
          "[security][keys]") {
  world w;
  engine eng{quiet_config()};
  const auto revoked = "@revoked " + w.line + "\n";
  SECTION("@revoked before a plain line with the same key") {
    w.known_hosts("kh", revoked + w.line + "\n");
  }
  SECTION("@revoked after it") {
    w.known_hosts("kh", w.line + "\n" + revoked);
  }
  SECTION("@revoked for every host, plain line hashed by ssh-keygen -H") {
    w.known_hosts("kh", w.line + "\n");
    w.hash_known_hosts();
    write_file(w.ep.known_hosts_file,
               read_file(w.ep.known_hosts_file) + "@revoked * " + w.host_key + "\n");
  }
  SECTION("accept_new: a revoked key is not recorded") {
    w.ep.host_keys = host_key_policy::accept_new;
    w.known_hosts("kh", revoked);
  }
  const auto before = read_file(w.ep.known_hosts_file);
  auto used = w.use(eng, "alice");
  REQUIRE_FALSE(used);
  CHECK(used.error().code() == errc::host_key_revoked);
  CHECK(used.error().message().find("@revoked") != std::string::npos);
  CHECK(read_file(w.ep.known_hosts_file) == before);
  CHECK_FALSE(w.sshd_saw_authentication());
}

TEST_CASE("known_hosts: @cert-authority lines are not plain keys", "[security][keys]") {
  world w;
  engine eng{quiet_config()};
  w.known_hosts("kh", "@cert-authority " + w.line + "\n@cert-authority * " + w.host_key + "\n");
  auto strict = w.use(eng, "alice");
  REQUIRE_FALSE(strict);
  CHECK(strict.error().code() == errc::host_key_unknown);
  CHECK_FALSE(w.sshd_saw_authentication());
  // accept_new records the key on a line of its own; the key is then known.
  w.ep.host_keys = host_key_policy::accept_new;
  REQUIRE(w.use(eng, "bob"));
  CHECK(read_file(w.ep.known_hosts_file)
            .find("\n[127.0.0.1]:" + std::to_string(w.sshd.port()) + " ssh-ed25519 ") !=
        std::string::npos);
  w.ep.host_keys = host_key_policy::strict;
  CHECK(w.use(eng, "carol"));
}

TEST_CASE("known_hosts: CRLF line ends and trailing white space are read as OpenSSH reads "
          "them, hashed or not",
          "[security][keys]") {
  world w;
  engine eng{quiet_config()};
  SECTION("plain") {
    w.known_hosts("kh", with_crlf("# written on Windows\n\n" + w.line + "\n"));
  }
  SECTION("plain, with a comment") {
    w.known_hosts("kh", with_crlf(w.line + " a comment\n"));
  }
  SECTION("trailing blanks") {
    w.known_hosts("kh", w.line + " \t\r\n");
  }
  SECTION("hashed by ssh-keygen -H, then CRLF") {
    w.known_hosts("kh", "other.example " + w.host_key + "\n" + w.line + "\n");
    w.hash_known_hosts();
    write_file(w.ep.known_hosts_file, with_crlf(read_file(w.ep.known_hosts_file)));
  }
  SECTION("a changed key in a CRLF file is still a mismatch") {
    auto wrong = read_file(w.sshd.wrong_known_hosts_file());
    w.known_hosts("kh", with_crlf(wrong));
    auto used = w.use(eng, "alice");
    REQUIRE_FALSE(used);
    CHECK(used.error().code() == errc::host_key_mismatch);
    return;
  }
  auto used = w.use(eng, "alice");
  INFO((used ? std::string{} : used.error().to_string()));
  CHECK(used);
}

TEST_CASE("known_hosts: accept_new never glues its line to a last line without a line end",
          "[security][keys]") {
  world w;
  engine eng{quiet_config()};
  w.ep.host_keys = host_key_policy::accept_new;
  w.known_hosts("kh", "other.example " + w.host_key); // no line end
  REQUIRE(w.use(eng, "alice"));
  w.ep.host_keys = host_key_policy::strict;
  auto used = w.use(eng, "bob");
  INFO(read_file(w.ep.known_hosts_file));
  CHECK(used);
}

TEST_CASE("private keys: set_endpoint loads the key and tells why it cannot be used",
          "[security][keys]") {
  world w;
  engine eng{quiet_config()};
  const std::string dir = w.sshd.dir();
  const std::string passphrase = "pass phrase 1749";
  // The fixture's authorised key, encrypted.
  const auto encrypted = dir + "/enc_key";
  shell("cp '" + w.sshd.identity_file() + "' '" + encrypted + "' && chmod 600 '" + encrypted +
        "' && ssh-keygen -p -q -P '' -N '" + passphrase + "' -f '" + encrypted + "'");
  const auto pem = dir + "/pem_key";
  shell("ssh-keygen -q -t ecdsa -m PEM -N '" + passphrase + "' -f '" + pem + "'");
  write_file(dir + "/text", "hello, not a key\n");
  struct bad_key {
    std::string file;
    std::string passphrase;
    std::string reason;
  };
  const std::vector<bad_key> bad{
      {encrypted, "", "is encrypted, and no passphrase was given"},
      {pem, "", "is encrypted, and no passphrase was given"},
      {encrypted, "not the passphrase", "wrong passphrase"},
      {pem, "not the passphrase", "wrong passphrase"},
      {dir + "/text", "", "is not a private key"},
      {w.sshd.identity_file() + ".pub", "", "is not a private key"},
      {dir + "/absent", "", "cannot read private key"},
  };
  int n = 0;
  for (const auto& b : bad) {
    INFO(b.file << " with passphrase '" << b.passphrase << "'");
    auto ep = w.ep;
    ep.identity_file = b.file;
    ep.passphrase = b.passphrase;
    auto set = eng.set_endpoint("bob", ep);
    REQUIRE_FALSE(set);
    CHECK(set.error().code() == errc::invalid_argument);
    CHECK(set.error().message().find(b.reason) != std::string::npos);
    CHECK(set.error().message().find(b.file) != std::string::npos);
    if (!b.passphrase.empty())
      CHECK(set.error().message().find(b.passphrase) == std::string::npos);
    CHECK(eng.pool().get_connection("bob").error().code() == errc::unknown_user);
    // A refused endpoint leaves the user's previous one in place (a new handshake uses it).
    const auto user = "dave" + std::to_string(++n);
    REQUIRE(eng.set_endpoint(user, w.ep));
    CHECK_FALSE(eng.set_endpoint(user, ep));
    auto conn = eng.pool().get_connection(user);
    REQUIRE(conn);
    CHECK(eng.pool().release_connection(user, *conn));
  }
  w.ep.identity_file = encrypted;
  w.ep.passphrase = passphrase;
  auto used = w.use(eng, "carol"); // the right passphrase
  INFO((used ? std::string{} : used.error().to_string()));
  CHECK(used);
}
