// The known_hosts reader (ssh/src/known_hosts.hpp) on its own: no CAF, no sshd. Keys and
// hashed files come from the real ssh-keygen.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <string>

#include "known_hosts.hpp"
#include "support/os.hpp"

using namespace sshpool::ssh;
using namespace sshpool::test;

namespace {

/// A temporary directory with two ed25519 public keys made by ssh-keygen.
struct keys {
  temp_dir dir{"sshpool-kh"};
  std::string a; ///< "ssh-ed25519 BASE64"
  std::string b;

  keys() {
    a = make("a");
    b = make("b");
  }

  std::string make(const std::string& name) const {
    auto path = dir.path() + "/" + name;
    auto cmd = "ssh-keygen -q -t ed25519 -N '' -C c -f '" + path + "' </dev/null >/dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
    std::ifstream pub{path + ".pub"};
    std::string type, blob;
    pub >> type >> blob;
    return type + " " + blob;
  }

  /// The base64 blob of "TYPE BASE64".
  static std::string blob(const std::string& key) { return key.substr(key.find(' ') + 1); }

  /// `text` after `ssh-keygen -H` (every host name hashed).
  std::string hashed(const std::string& text) const {
    auto path = dir.path() + "/known_hosts";
    write_file(path, text);
    auto cmd = "ssh-keygen -H -f '" + path + "' >/dev/null 2>&1";
    REQUIRE(std::system(cmd.c_str()) == 0);
    return read_file(path);
  }
};

} // namespace

TEST_CASE("known_hosts: names are host for port 22, else [host]:port, in lower case",
          "[known_hosts]") {
  CHECK(known_hosts_name("Example.COM", 22) == "example.com");
  CHECK(known_hosts_name("127.0.0.1", 2222) == "[127.0.0.1]:2222");
  CHECK(known_hosts_name("::1", 2222) == "[::1]:2222");
}

TEST_CASE("known_hosts: plain lines decide known, mismatch and unknown", "[known_hosts]") {
  keys k;
  const auto a = keys::blob(k.a);
  const auto file = "# a comment\n\n   \n[127.0.0.1]:2222 " + k.a + " comment words\n";
  CHECK(check_host_key(file, "[127.0.0.1]:2222", a) == host_key_status::known);
  CHECK(check_host_key(file, "[127.0.0.1]:2222", keys::blob(k.b)) == host_key_status::mismatch);
  CHECK(check_host_key(file, "127.0.0.1", a) == host_key_status::unknown); // port 22
  CHECK(check_host_key(file, "[127.0.0.1]:2223", a) == host_key_status::unknown);
  CHECK(check_host_key("", "[127.0.0.1]:2222", a) == host_key_status::unknown);
  // Another line for the host with the right key makes it known, whatever the order.
  CHECK(check_host_key("[127.0.0.1]:2222 " + k.b + "\n" + file.substr(12), "[127.0.0.1]:2222", a) ==
        host_key_status::known);
  // The type field is not trusted: only the blob is compared.
  CHECK(check_host_key("h ssh-rsa " + a + "\n", "h", a) == host_key_status::known);
}

TEST_CASE("known_hosts: comma-separated patterns, wildcards and negation", "[known_hosts]") {
  keys k;
  const auto a = keys::blob(k.a);
  const auto line = [&](const std::string& patterns) { return patterns + " " + k.a + "\n"; };
  CHECK(check_host_key(line("alpha,[beta]:2222,gamma"), "[beta]:2222", a) ==
        host_key_status::known);
  CHECK(check_host_key(line("alpha,[beta]:2222"), "beta", a) == host_key_status::unknown);
  CHECK(check_host_key(line("*.example.com"), "db.example.com", a) == host_key_status::known);
  CHECK(check_host_key(line("*.example.com"), "example.com", a) == host_key_status::unknown);
  CHECK(check_host_key(line("db?.example.com"), "db1.example.com", a) == host_key_status::known);
  CHECK(check_host_key(line("DB.Example.com"), "db.example.com", a) == host_key_status::known);
  CHECK(check_host_key(line("*.example.com,!db.example.com"), "db.example.com", a) ==
        host_key_status::unknown);
  CHECK(check_host_key(line("[*]:2222"), "[10.0.0.1]:2222", a) == host_key_status::known);
}

TEST_CASE("known_hosts: a @revoked key is refused whatever other lines say", "[known_hosts]") {
  keys k;
  const auto a = keys::blob(k.a);
  const std::string host = "[127.0.0.1]:2222";
  const auto plain = host + " " + k.a + "\n";
  const auto revoked = "@revoked " + host + " " + k.a + "\n";
  CHECK(check_host_key(plain + revoked, host, a) == host_key_status::revoked);
  CHECK(check_host_key(revoked + plain, host, a) == host_key_status::revoked);
  CHECK(check_host_key(revoked, host, a) == host_key_status::revoked);
  CHECK(check_host_key("@revoked * " + k.a + "\n" + plain, host, a) == host_key_status::revoked);
  // A revoked line for another host, or with another key, neither refuses nor names the host.
  CHECK(check_host_key("@revoked other " + k.a + "\n" + plain, host, a) == host_key_status::known);
  CHECK(check_host_key("@revoked " + host + " " + k.b + "\n", host, a) == host_key_status::unknown);
  CHECK(check_host_key("@revoked " + host + " " + k.b + "\n" + plain, host, a) ==
        host_key_status::known);
}

TEST_CASE("known_hosts: @cert-authority and malformed lines are not plain keys", "[known_hosts]") {
  keys k;
  const auto a = keys::blob(k.a);
  const std::string host = "[127.0.0.1]:2222";
  CHECK(check_host_key("@cert-authority " + host + " " + k.a + "\n", host, a) ==
        host_key_status::unknown);
  CHECK(check_host_key("@cert-authority * " + k.a + "\n", host, a) == host_key_status::unknown);
  CHECK(check_host_key("@unknown-marker " + host + " " + k.a + "\n", host, a) ==
        host_key_status::unknown);
  for (const std::string& bad : {host + " ssh-ed25519\n", host + "\n", host + " ssh-ed25519 !!!!\n",
                                 host + " ssh-ed25519 " + a.substr(1) + "\n",
                                 std::string{"@revoked\n"}, "|1|garbage " + k.a + "\n"}) {
    INFO(bad);
    CHECK(check_host_key(bad, host, a) == host_key_status::unknown);
    CHECK(check_host_key(bad + host + " " + k.a + "\n", host, a) == host_key_status::known);
  }
}

TEST_CASE("known_hosts: CRLF line ends, tabs and trailing white space are tolerated",
          "[known_hosts]") {
  keys k;
  const auto a = keys::blob(k.a);
  const std::string host = "[127.0.0.1]:2222";
  CHECK(check_host_key("# c\r\n\r\n" + host + " " + k.a + "\r\n", host, a) ==
        host_key_status::known);
  CHECK(check_host_key(host + " " + k.a + "\r", host, a) == host_key_status::known);
  CHECK(check_host_key("  " + host + "\tssh-ed25519\t" + a + " \t \r\n", host, a) ==
        host_key_status::known);
  CHECK(check_host_key("@revoked " + host + " " + k.a + "\r\n" + host + " " + k.a + "\r\n", host,
                       a) == host_key_status::revoked);
}

TEST_CASE("known_hosts: names hashed by ssh-keygen -H", "[known_hosts]") {
  keys k;
  const auto a = keys::blob(k.a);
  const std::string host = "[127.0.0.1]:2222";
  const auto hashed = k.hashed("other.example " + k.b + "\n" + host + " " + k.a + "\n");
  REQUIRE(hashed.find("127.0.0.1") == std::string::npos);
  REQUIRE(hashed.find("|1|") == 0);
  CHECK(check_host_key(hashed, host, a) == host_key_status::known);
  CHECK(check_host_key(hashed, host, keys::blob(k.b)) == host_key_status::mismatch);
  CHECK(check_host_key(hashed, "[127.0.0.1]:2223", a) == host_key_status::unknown);
  CHECK(check_host_key(hashed, "other.example", keys::blob(k.b)) == host_key_status::known);
  // Hashed, with CRLF line ends, and revoked by a hashed @revoked line.
  std::string crlf;
  for (char c : hashed)
    crlf += c == '\n' ? std::string{"\r\n"} : std::string{c};
  CHECK(check_host_key(crlf, host, a) == host_key_status::known);
  const auto first_hash = hashed.substr(hashed.find('\n') + 1);
  const auto revoked = "@revoked " + first_hash.substr(0, first_hash.find(' ')) + " " + k.a + "\n";
  CHECK(check_host_key(revoked + hashed, host, a) == host_key_status::revoked);
}

TEST_CASE("known_hosts: a recorded entry never joins the last line", "[known_hosts]") {
  CHECK(known_hosts_entry("", "[h]:2", "ssh-ed25519", "QUJD") == "[h]:2 ssh-ed25519 QUJD\n");
  CHECK(known_hosts_entry("x y z\n", "h", "t", "k") == "h t k\n");
  CHECK(known_hosts_entry("x y z\r\n", "h", "t", "k") == "h t k\n");
  CHECK(known_hosts_entry("x y z", "h", "t", "k") == "\nh t k\n");
}
