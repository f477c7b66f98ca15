// The authorized_keys reader of the agent listener (sshpool/ssh/authorized_keys.hpp) on its
// own: no sshd, no CAF. Keys and a certificate come from the real ssh-keygen.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <string>

#include "sshpool/ssh/authorized_keys.hpp"
#include "support/os.hpp"

using namespace sshpool;
using namespace sshpool::ssh;
using namespace sshpool::test;

namespace {

/// A temporary directory with ed25519 keys made by ssh-keygen.
struct keys {
  temp_dir dir{"sshpool-ak"};

  /// "ssh-ed25519 BASE64 COMMENT" of a new key `name`.
  std::string make(const std::string& name) const {
    auto cmd = "ssh-keygen -q -t ed25519 -N '' -C " + name + " -f '" + dir.path() + "/" + name +
               "' </dev/null >/dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
    return line(dir.path() + "/" + name + ".pub");
  }

  /// The certificate line of key `name`, signed by a new CA.
  std::string certificate(const std::string& name) const {
    make("ca");
    auto cmd = "ssh-keygen -q -s '" + dir.path() + "/ca' -I test '" + dir.path() + "/" + name +
               ".pub' </dev/null >/dev/null 2>&1";
    REQUIRE(std::system(cmd.c_str()) == 0);
    return line(dir.path() + "/" + name + "-cert.pub");
  }

  static std::string line(const std::string& path) {
    std::ifstream in{path};
    std::string text;
    std::getline(in, text);
    return text;
  }

  /// The base64 blob of "TYPE BASE64 ...".
  static std::string blob(const std::string& key) {
    auto a = key.find(' ') + 1;
    return key.substr(a, key.find(' ', a) - a);
  }
};

std::chrono::system_clock::time_point utc(int y, int mo, int d) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  return std::chrono::system_clock::from_time_t(::timegm(&tm));
}

} // namespace

TEST_CASE("plain lines give their keys; blanks, comments and CRLF are accepted",
          "[authorized_keys]") {
  keys k;
  auto a = k.make("a");
  auto b = k.make("b");
  auto parsed = parse_authorized_keys("# users' keys\n\n" + a + "\r\n   \n" + b);
  REQUIRE(parsed.keys.size() == 2);
  CHECK(parsed.skipped.empty());
  CHECK(parsed.keys[0].type == "ssh-ed25519");
  CHECK(parsed.keys[0].base64 == keys::blob(a));
  CHECK(parsed.keys[0].comment == "a");
  CHECK(parsed.keys[1].base64 == keys::blob(b));
  CHECK(parsed.keys[0].port_forwarding);
  CHECK(parsed.keys[0].permit_listen.empty());
  CHECK(parsed.keys[0].from.empty());
  CHECK_FALSE(parsed.keys[0].expiry.has_value());
}

TEST_CASE("restrict, port forwarding, permitlisten, from and expiry-time are honoured",
          "[authorized_keys]") {
  keys k;
  auto a = k.make("a");
  auto parsed = parse_authorized_keys(
      "restrict " + a + "\n" +                                                 //
      "restrict,port-forwarding,permitlisten=\"11434\" " + a + "\n" +          //
      "no-port-forwarding " + a + "\n" +                                       //
      "permitlisten=\"localhost:8080\",permitlisten=\"[::1]:*\" " + a + "\n" + //
      "from=\"10.0.0.0/8,!10.1.2.3,192.168.1.*,2001:db8::/32\" " + a + "\n" +  //
      "expiry-time=\"20300102Z\",no-pty,no-agent-forwarding,no-X11-forwarding " + a + "\n" +
      "permitopen=\"127.0.0.1:22\",pty,agent-forwarding,X11-forwarding,user-rc " + a + "\n");
  CHECK(parsed.skipped.empty());
  REQUIRE(parsed.keys.size() == 7);

  auto& restricted = parsed.keys[0];
  CHECK_FALSE(restricted.port_forwarding);
  CHECK_FALSE(listen_allowed(restricted, "localhost", 11434));

  auto& one_port = parsed.keys[1];
  CHECK(one_port.port_forwarding);
  CHECK(listen_allowed(one_port, "localhost", 11434));
  CHECK(listen_allowed(one_port, "", 11434));
  CHECK_FALSE(listen_allowed(one_port, "localhost", 11435));

  CHECK_FALSE(listen_allowed(parsed.keys[2], "localhost", 11434));

  auto& hosts = parsed.keys[3];
  CHECK(listen_allowed(hosts, "LOCALHOST", 8080));
  CHECK_FALSE(listen_allowed(hosts, "0.0.0.0", 8080));
  CHECK(listen_allowed(hosts, "::1", 1234));
  CHECK_FALSE(listen_allowed(hosts, "localhost", 1234));

  auto& from = parsed.keys[4];
  CHECK(source_allowed(from, "10.9.8.7"));
  CHECK_FALSE(source_allowed(from, "10.1.2.3"));
  CHECK(source_allowed(from, "192.168.1.40"));
  CHECK_FALSE(source_allowed(from, "192.168.2.40"));
  CHECK(source_allowed(from, "2001:db8:1::5"));
  CHECK_FALSE(source_allowed(from, "2001:db9::5"));
  CHECK_FALSE(source_allowed(from, "127.0.0.1"));
  CHECK(source_allowed(parsed.keys[0], "203.0.113.9")); // no from=: anywhere

  REQUIRE(parsed.keys[5].expiry.has_value());
  CHECK(*parsed.keys[5].expiry == utc(2030, 1, 2));
  CHECK(parsed.keys[5].port_forwarding);
  // Options that would grant what agents never get change nothing.
  CHECK(parsed.keys[6].port_forwarding);
  CHECK(parsed.keys[6].permit_listen.empty());
}

TEST_CASE("lines whose options cannot be honoured are skipped, with the reason",
          "[authorized_keys]") {
  keys k;
  auto a = k.make("a");
  auto cert = k.certificate("a");
  auto parsed = parse_authorized_keys(      //
      "command=\"/bin/true\" " + a + "\n" + // line 1
      "environment=\"X=1\" " + a + "\n" +   // 2
      "cert-authority " + a + "\n" +        // 3
      "principals=\"alice\" " + a + "\n" +  // 4
      "tunnel=\"0\" " + a + "\n" +          // 5
      "no-touch-required " + a + "\n" +     // 6
      "verify-required " + a + "\n" +       // 7
      "frobnicate " + a + "\n" +            // 8
      "from=\"10.0.0.0/33\" " + a + "\n" +  // 9
      "permitlisten=\"0\" " + a + "\n" +    // 10
      "expiry-time=\"2030\" " + a + "\n" +  // 11
      "from=10.0.0.1 " + a + "\n" +         // 12
      "command=\"unbalanced " + a + "\n" +  // 13
      "ssh-ed25519 AAAAnotakey\n" +         // 14
      "ssh-ed25519\n" +                     // 15
      cert + "\n" +                         // 16
      "ssh-rsa " + keys::blob(a) + "\n" +   // 17
      a + "\n");                            // 18: usable
  REQUIRE(parsed.keys.size() == 1);
  CHECK(parsed.keys[0].comment == "a");
  REQUIRE(parsed.skipped.size() == 17);
  for (std::size_t i = 0; i < parsed.skipped.size(); ++i)
    CHECK(parsed.skipped[i].rfind("line " + std::to_string(i + 1) + ": ", 0) == 0);
  CHECK(parsed.skipped[0].find("'command' is not supported") != std::string::npos);
  CHECK(parsed.skipped[15].find("certificates are not supported") != std::string::npos);
}

TEST_CASE("a missing authorized_keys file is an invalid argument", "[authorized_keys]") {
  auto missing = load_authorized_keys("/nonexistent/authorized_keys");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code() == errc::invalid_argument);
  CHECK(missing.error().message().find("/nonexistent/authorized_keys") != std::string::npos);

  keys k;
  auto path = k.dir.path() + "/authorized_keys";
  std::ofstream{path} << k.make("a") << "\n";
  auto loaded = load_authorized_keys(path);
  REQUIRE(loaded);
  CHECK(loaded->keys.size() == 1);
}
