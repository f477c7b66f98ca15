// sshpool-demo's configuration and logs, through the real binary: file < environment <
// flags, every invalid value stopping start-up with exit code 2 and a message naming the
// setting, and a trace-level log (JSON) that holds no secret: neither the passphrase of
// an encrypted key nor its content, nor the client's Authorization or Cookie values, nor
// query strings.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "backend/http_backend.hpp"
#include "gateway/gateway_harness.hpp"
#include "support/os.hpp"
#include "support/test_sshd.hpp"

using namespace sshpool::test;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

/// Every variable sshpool-demo reads, unset, so the test environment cannot leak in.
std::vector<std::string> clean_env(std::vector<std::string> extra = {}) {
  std::vector<std::string> env = {"LISTEN",
                                  "LOG_LEVEL",
                                  "LOG_FORMAT",
                                  "MAX_CONNECTIONS_PER_USER",
                                  "SSH_MAX_CHANNELS",
                                  "MAX_WAITERS_PER_USER",
                                  "MAX_CONNECTIONS_TOTAL",
                                  "MAX_IDLE_TIME",
                                  "CLEANUP_INTERVAL",
                                  "SSH_KEEPALIVE_INTERVAL",
                                  "SSH_CONNECTION_TIMEOUT",
                                  "ACQUIRE_TIMEOUT",
                                  "REQUEST_TIMEOUT",
                                  "SHUTDOWN_GRACE_PERIOD",
                                  "SHUTDOWN_FORCE_AFTER_GRACE",
                                  "MAX_RESPONSE_BYTES",
                                  "STREAM_WINDOW_BYTES",
                                  "MAX_REQUEST_BODY_BYTES",
                                  "MAX_REQUEST_HEADER_BYTES",
                                  "MAX_CLIENTS",
                                  "MAX_CLIENTS_PER_SOURCE",
                                  "CLIENT_TIMEOUT",
                                  "HEADER_TIMEOUT",
                                  "ADMIN_LISTEN",
                                  "AGENT_LISTEN",
                                  "AGENT_HOST_KEY",
                                  "AGENT_LOGIN_GRACE",
                                  "AGENT_MAX_STARTUPS",
                                  "AGENT_MAX_STARTUPS_PER_SOURCE",
                                  "AGENT_MAX_AUTH_TRIES",
                                  "ALLOW_UNAUTHENTICATED",
                                  "AUTH_MAX_FAILURES",
                                  "AUTH_FAILURE_WINDOW",
                                  "AUTH_MAX_SOURCES"};
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

struct run_result {
  int code = -1;
  std::string out;
  std::string err;
};

/// Waits for `p` to exit and collects what it printed.
run_result finish(child_process& p) {
  run_result r;
  r.code = p.wait_exit(20s);
  r.out = p.out();
  r.err = p.err();
  return r;
}

run_result run_demo(std::vector<std::string> args, std::vector<std::string> env = {}) {
  args.insert(args.begin(), SSHPOOL_DEMO_BINARY);
  child_process p{args, clean_env(std::move(env))};
  return finish(p);
}

/// Runs a shell command, its output discarded; fails the test if it fails.
void shell(const std::string& command) {
  INFO(command);
  REQUIRE(std::system(("(" + command + ") </dev/null >/dev/null 2>&1").c_str()) == 0);
}

/// A config directory with a private key (loaded, never used here) and a known_hosts file.
struct config_dir {
  temp_dir dir;
  int files = 0;
  config_dir() {
    shell("ssh-keygen -q -t ed25519 -N '' -f '" + dir.path() + "/id_test'");
    dir.write("known_hosts", "\n");
  }
  /// Writes a new config file with `members` and one user; relative key paths.
  std::string file(const std::string& members, const std::string& user_extra = {}) {
    std::string user = R"("alice":{"host":"127.0.0.1","username":"tunnel",)"
                       R"("identity_file":"id_test","known_hosts_file":"known_hosts",)"
                       R"("target_port":11434)" +
                       user_extra + "}";
    return dir.write("config" + std::to_string(++files) + ".json",
                     "{" + members + (members.empty() ? "" : ",") + "\"users\":{" + user + "}}");
  }
  /// The same with an agent listener (`listener`, e.g. agent_listen and agent_host_key) and
  /// a second user bob, reached in agent mode: `bob` is his object's members.
  std::string agent_file(const std::string& listener, const std::string& bob) {
    return file(listener, "},\"bob\":{" + bob);
  }
};

json effective(const run_result& r) {
  INFO("exit " << r.code << "\nstdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.code == 0);
  auto doc = json::parse(r.out, nullptr, false);
  REQUIRE(doc.is_object());
  return doc;
}

} // namespace

TEST_CASE("configuration: file < environment < flags", "[gateway][config]") {
  config_dir cd;
  auto cfg = cd.file(R"("max_connections_per_user":2,"max_idle_time":1000,)"
                     R"("cleanup_interval":500,"log_format":"json")");

  auto file_only = effective(run_demo({"--config", cfg, "--check-config"}));
  CHECK(file_only["max_connections_per_user"] == "2");
  CHECK(file_only["max_idle_time"] == "1000");
  CHECK(file_only["cleanup_interval"] == "500");
  CHECK(file_only["log_format"] == "json");
  CHECK(file_only["ssh_max_channels"] == "10"); // the engine's default
  CHECK(file_only["stream_window_bytes"] == "262144");
  CHECK(file_only["users"]["alice"]["identity_file"] == cd.dir.path() + "/id_test");
  CHECK(file_only["users"]["alice"]["port"] == 22);

  auto with_env = effective(run_demo({"--config", cfg, "--check-config"},
                                     {"MAX_CONNECTIONS_PER_USER=3", "MAX_IDLE_TIME=2000",
                                      "LOG_FORMAT=text", "SHUTDOWN_FORCE_AFTER_GRACE=false"}));
  CHECK(with_env["max_connections_per_user"] == "3");
  CHECK(with_env["max_idle_time"] == "2000");
  CHECK(with_env["cleanup_interval"] == "500");
  CHECK(with_env["log_format"] == "text");
  CHECK(with_env["shutdown_force_after_grace"] == "false");

  auto with_flags = effective(run_demo(
      {"--config", cfg, "--check-config", "--max-connections-per-user", "4",
       "--listen=127.0.0.1:9999", "--log-level", "debug", "--ssh-keepalive-interval", "7000"},
      {"MAX_CONNECTIONS_PER_USER=3", "MAX_IDLE_TIME=2000", "LOG_LEVEL=error"}));
  CHECK(with_flags["max_connections_per_user"] == "4");
  CHECK(with_flags["max_idle_time"] == "2000");
  CHECK(with_flags["cleanup_interval"] == "500");
  CHECK(with_flags["listen"] == "127.0.0.1:9999");
  CHECK(with_flags["log_level"] == "debug");
  CHECK(with_flags["ssh_keepalive_interval"] == "7000");

  auto help = run_demo({"--help"});
  CHECK(help.code == 0);
  for (const char* name :
       {"--config", "--listen", "--log-level", "--log-format", "MAX_CONNECTIONS_PER_USER",
        "MAX_IDLE_TIME", "CLEANUP_INTERVAL", "SSH_KEEPALIVE_INTERVAL", "SSH_MAX_CHANNELS",
        "SSH_CONNECTION_TIMEOUT", "SHUTDOWN_GRACE_PERIOD", "SHUTDOWN_FORCE_AFTER_GRACE",
        "LOG_LEVEL", "LOG_FORMAT"})
    CHECK(help.out.find(name) != std::string::npos);
}

TEST_CASE("every user setting shows in --check-config's output", "[gateway][config]") {
  // Found by fuzzing: a user's "ciphers" was accepted but left out of the printout.
  config_dir cd;
  auto shown = effective(run_demo({"--config",
                                   cd.file("", R"(,"ciphers":"aes128-ctr","server_nodelay":false,)"
                                               R"("max_response_bytes":1073741824)"),
                                   "--check-config"}));
  CHECK(shown["users"]["alice"]["ciphers"] == "aes128-ctr");
  CHECK(shown["users"]["alice"]["server_nodelay"] == false);
  CHECK(shown["users"]["alice"]["max_response_bytes"] == 1073741824);
  auto defaults = effective(run_demo({"--config", cd.file(""), "--check-config"}));
  CHECK_FALSE(defaults["users"]["alice"].contains("ciphers"));
  CHECK_FALSE(defaults["users"]["alice"].contains("max_response_bytes"));
}

TEST_CASE("an invalid value stops start-up with exit code 2, naming the setting",
          "[gateway][config]") {
  config_dir cd;
  auto good = cd.file("");
  struct bad_case {
    std::vector<std::string> args;
    std::vector<std::string> env;
    std::string named;
  };
  auto with_file = [&](const std::string& members, const std::string& user_extra = {}) {
    return std::vector<std::string>{"--config", cd.file(members, user_extra)};
  };
  // A FIFO as a key file: refused as not a regular file, without waiting for a writer.
  REQUIRE(::mkfifo((cd.dir.path() + "/fifo_key").c_str(), 0600) == 0);
  std::vector<bad_case> cases = {
      {{"--config", good}, {"MAX_CONNECTIONS_PER_USER=-1"}, "MAX_CONNECTIONS_PER_USER"},
      {{"--config", good}, {"MAX_CONNECTIONS_PER_USER=0"}, "MAX_CONNECTIONS_PER_USER"},
      {{"--config", good}, {"MAX_IDLE_TIME=abc"}, "MAX_IDLE_TIME"},
      {{"--config", good}, {"CLEANUP_INTERVAL=0"}, "CLEANUP_INTERVAL"},
      {{"--config", good}, {"SSH_KEEPALIVE_INTERVAL=1.5"}, "SSH_KEEPALIVE_INTERVAL"},
      {{"--config", good}, {"SSH_MAX_CHANNELS=0"}, "SSH_MAX_CHANNELS"},
      {{"--config", good}, {"STREAM_WINDOW_BYTES=0"}, "STREAM_WINDOW_BYTES"},
      {{"--config", good}, {"SSH_CONNECTION_TIMEOUT=-5"}, "SSH_CONNECTION_TIMEOUT"},
      {{"--config", good}, {"SHUTDOWN_GRACE_PERIOD=soon"}, "SHUTDOWN_GRACE_PERIOD"},
      {{"--config", good}, {"SHUTDOWN_FORCE_AFTER_GRACE=maybe"}, "SHUTDOWN_FORCE_AFTER_GRACE"},
      {{"--config", good}, {"LOG_LEVEL=loud"}, "LOG_LEVEL"},
      {{"--config", good}, {"LOG_FORMAT=xml"}, "LOG_FORMAT"},
      {{"--config", good}, {"REQUEST_TIMEOUT=99999999999999"}, "REQUEST_TIMEOUT"},
      {{"--config", good, "--max-connections-per-user", "0"}, {}, "--max-connections-per-user"},
      {{"--config", good, "--listen", "nowhere"}, {}, "--listen"},
      {{"--config", good, "--listen", "127.0.0.1 junk:8080"}, {}, "--listen"},
      {{"--config", good, "--listen", "127.0.0.1:70000"}, {}, "--listen"},
      {{"--config", good, "--listen", "nonexistent.invalid:8080"}, {}, "--listen"},
      {{"--config", good, "--listen", "192.0.2.1:8080", "--allow-unauthenticated", "true"},
       {},
       "listen"}, // not ours: bind fails
      {{"--config", good, "--max-request-header-bytes", "1000000"},
       {},
       "--max-request-header-bytes"},
      {{"--config", ""}, {}, "--config"},
      {{"--config", good, "--bogus", "1"}, {}, "--bogus"},
      {{"--config", good, "--request-timeout"}, {}, "--request-timeout"},
      {with_file(R"("max_connections_per_user":-1)"), {}, "max_connections_per_user"},
      {with_file(R"("max_idle_time":"ten")"), {}, "max_idle_time"},
      {with_file(R"("no_such_key":1)"), {}, "no_such_key"},
      {with_file(R"("users_extra":{})"), {}, "users_extra"},
      {with_file("", R"(,"colour":"blue")"), {}, "colour"},
      {with_file("", R"(,"target_port":0)"), {}, "target_port"},
      {with_file("", R"(,"host_keys":"trust-everyone")"), {}, "host_keys"},
      {with_file("", R"(,"max_response_bytes":0)"), {}, "max_response_bytes"},
      {with_file("", R"(,"max_response_bytes":-1)"), {}, "max_response_bytes"},
      {with_file("", R"(,"max_response_bytes":1.5)"), {}, "max_response_bytes"},
      {with_file("", R"(,"identity_file":"missing_key")"), {}, "identity_file"},
      {with_file("", R"(,"known_hosts_file":"/nonexistent/known_hosts")"), {}, "known_hosts_file"},
      {with_file("", R"(,"passphrase_file":"missing_pass")"), {}, "passphrase_file"},
      {with_file("", R"(,"passphrase_file":".")"), {}, "passphrase_file"}, // a directory
      {with_file("", R"(,"identity_file":"fifo_key")"), {}, "identity_file"},
      {{"--config", cd.dir.write("broken.json", R"({"listen": "127.0.0.1:0", "x": "hunter2)")},
       {},
       "malformed JSON"},
      {{"--config", cd.dir.path() + "/absent.json"}, {}, "config file"},
      // Client authentication.
      {with_file("", R"(,"api_keys_sha256":["abc"])"), {}, "users.alice.api_keys_sha256"},
      {with_file("", R"(,"api_keys_sha256":"hunter2")"), {}, "users.alice.api_keys_sha256"},
      {with_file("", R"(,"forward_authorization":"yes")"), {}, "forward_authorization"},
      {with_file(R"("jwt":{"public_key_file":"known_hosts","issuer":"i","audience":"a"})"),
       {},
       "jwt.public_key_file"},
      {with_file(R"("jwt":{"public_key_file":"absent.pem","issuer":"i","audience":"a"})"),
       {},
       "jwt.public_key_file"},
      {with_file(R"("jwt":{"public_key_file":"known_hosts","issuer":"i"})"), {}, "jwt: missing"},
      {with_file(R"("jwt":{"public_key_file":"k","issuer":"i","audience":"a","x":1})"),
       {},
       "jwt: unknown key 'x'"},
      {with_file(R"("jwt":{"leeway_seconds":-1})"), {}, "jwt.leeway_seconds"},
      {{"--config", good}, {"AUTH_MAX_FAILURES=0"}, "AUTH_MAX_FAILURES"},
      {{"--config", good}, {"ALLOW_UNAUTHENTICATED=maybe"}, "ALLOW_UNAUTHENTICATED"},
      {{"--config", good, "--listen", "[::]:0"}, {}, "allow_unauthenticated"},
  };
  for (auto& c : cases) {
    auto r = run_demo(c.args, c.env);
    std::string shown;
    for (auto& a : c.args)
      shown += a + " ";
    for (auto& e : c.env)
      shown += e + " ";
    INFO(shown << "\n  exit " << r.code << ", stderr: " << r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find(c.named) != std::string::npos);
    CHECK(r.err.find("hunter2") == std::string::npos); // file content is never echoed
    CHECK(r.out.find("listening") == std::string::npos);
  }
}

TEST_CASE("reverse mode: --check-config shows the agent listener, its host key (created 0600) "
          "and each agent user's key file and port, never a key",
          "[gateway][config][agent]") {
  config_dir cd;
  const auto dir = cd.dir.path();
  shell("ssh-keygen -q -t ed25519 -N '' -C bob@laptop -f '" + dir + "/bob_key'");
  shell("cp '" + dir + "/bob_key.pub' '" + dir + "/bob.keys'");
  auto cfg =
      cd.agent_file(R"("agent_listen":"127.0.0.1:2222","agent_host_key":"host_key",)"
                    R"("agent_login_grace":3000,"agent_max_startups":7)",
                    R"("mode":"agent","authorized_keys_file":"bob.keys","target_port":8000)");
  REQUIRE(::access((dir + "/host_key").c_str(), F_OK) != 0);
  auto r = run_demo({"--config", cfg, "--check-config"},
                    {"AGENT_MAX_STARTUPS_PER_SOURCE=3", "AGENT_MAX_AUTH_TRIES=2"});
  auto shown = effective(r);
  struct stat st {};
  REQUIRE(::stat((dir + "/host_key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(shown["agent_listen"] == "127.0.0.1:2222");
  CHECK(shown["agent_login_grace"] == "3000");
  CHECK(shown["agent_max_startups"] == "7");
  CHECK(shown["agent_max_startups_per_source"] == "3");
  CHECK(shown["agent_max_auth_tries"] == "2");
  auto listener = shown["agent_listener"];
  CHECK(listener["listen"] == "127.0.0.1:2222");
  CHECK(listener["host_key_file"] == dir + "/host_key");
  // The fingerprint is the one ssh-keygen computes, the public key the file's public half.
  shell("ssh-keygen -lf '" + dir + "/host_key' > '" + dir + "/fp'");
  shell("ssh-keygen -yf '" + dir + "/host_key' > '" + dir + "/host_key.pub'");
  std::string fp_line = read_file(dir + "/fp");
  std::string pub_line = read_file(dir + "/host_key.pub");
  auto fingerprint = listener["host_key_fingerprint"].get<std::string>();
  CHECK(fingerprint.rfind("SHA256:", 0) == 0);
  CHECK(fp_line.find(fingerprint) != std::string::npos);
  CHECK(pub_line.rfind(listener["host_public_key"].get<std::string>(), 0) == 0);
  // A second run loads the same key.
  auto again = effective(run_demo({"--config", cfg, "--check-config"}));
  CHECK(again["agent_listener"]["host_key_fingerprint"] == fingerprint);

  auto bob = shown["users"]["bob"];
  CHECK(bob["mode"] == "agent");
  CHECK(bob["authorized_keys_file"] == dir + "/bob.keys");
  CHECK(bob["target_port"] == 8000);
  CHECK_FALSE(bob.contains("host"));
  CHECK_FALSE(bob.contains("identity_file"));
  CHECK(shown["users"]["alice"]["mode"] == "dial");
  // No key's content: neither the private host key nor bob's public key.
  auto bob_pub = read_file(dir + "/bob_key.pub");
  auto bob_blob = bob_pub.substr(bob_pub.find(' ') + 1, 40);
  CHECK(r.out.find(bob_blob) == std::string::npos);
  CHECK(r.out.find("PRIVATE KEY") == std::string::npos);
  CHECK(r.err.find("PRIVATE KEY") == std::string::npos);

  // A host key others may read stops --check-config, naming agent_host_key.
  REQUIRE(::chmod((dir + "/host_key").c_str(), 0644) == 0);
  auto open_key = run_demo({"--config", cfg, "--check-config"});
  INFO("stderr: " << open_key.err);
  CHECK(open_key.code == 2);
  CHECK(open_key.err.find("agent_host_key") != std::string::npos);
  CHECK(open_key.err.find("chmod 600") != std::string::npos);
}

TEST_CASE("--check-config names every file by its absolute path, so that its output loads "
          "back the same from any directory",
          "[gateway][config][agent]") {
  config_dir cd;
  const auto dir = cd.dir.path();
  cd.file({}); // config1.json, its key files relative
  // Started in the config's directory, naming the file and the host key relative to it.
  child_process p{{"/bin/sh", "-c",
                   "cd '" + dir +
                       "' && exec '" SSHPOOL_DEMO_BINARY
                       "' --config config1.json --agent-host-key=host_key --check-config"},
                  clean_env()};
  auto r = finish(p);
  auto shown = effective(r);
  CHECK(shown["agent_host_key"] == dir + "/host_key");
  CHECK(shown["users"]["alice"]["identity_file"] == dir + "/id_test");
  CHECK(shown["users"]["alice"]["known_hosts_file"] == dir + "/known_hosts");
  // Loaded back as a config file from elsewhere, it is the same configuration.
  temp_dir other;
  auto again = run_demo({"--config", other.write("shown.json", r.out), "--check-config"});
  INFO("stderr: " << again.err);
  CHECK(again.code == 0);
  CHECK(again.out == r.out);
}

TEST_CASE("a setting that is not UTF-8 (a flag, the environment, a path made absolute, a "
          "config file's directory) is refused, naming it: --check-config's JSON could not "
          "show it",
          "[gateway][config]") {
  config_dir cd;
  const auto dir = cd.dir.path();
  const auto good = cd.file({});
  const std::string odd_dir = dir + "/odd\xff";
  REQUIRE(::mkdir(odd_dir.c_str(), 0700) == 0);
  shell("cp '" + good + "' '" + odd_dir + "/config.json'");
  // Catch's console reporter aborts on some bytes that are not UTF-8: they are shown as '?'.
  auto shown = [](std::string text) {
    for (auto& ch : text)
      ch = static_cast<unsigned char>(ch) < 0x80 ? ch : '?';
    return text;
  };
  struct bad_case {
    std::vector<std::string> args;
    std::vector<std::string> env;
    std::string named;
  };
  const std::vector<bad_case> cases = {
      {{"--config", good, "--agent-host-key", "key\xfe\xff"},
       {},
       "--agent-host-key: is not valid UTF-8\n"},
      {{"--config", good}, {"AGENT_HOST_KEY=/k\xc0\xaf"}, "AGENT_HOST_KEY: is not valid UTF-8"},
      {{"--config", good, "--listen=127.0.0.1:80\xed\xa0\x80"}, {}, "--listen: is not valid UTF-8"},
      {{"--config", odd_dir + "/config.json"}, {}, "directory's absolute name is not valid UTF-8"},
  };
  for (auto& c : cases) {
    // With --check-config: accepted, the value would reach its JSON output.
    auto args = c.args;
    args.push_back("--check-config");
    auto r = run_demo(args, c.env);
    INFO("exit " << r.code << ", stderr: " << shown(r.err));
    CHECK(r.code == 2);
    CHECK(r.err.find(c.named) != std::string::npos);
  }
  // A relative path from a flag, started in a directory whose name is not UTF-8.
  child_process p{{"/bin/sh", "-c",
                   "cd '" + odd_dir + "' && exec '" SSHPOOL_DEMO_BINARY "' --config '" + good +
                       "' --agent-host-key=host_key --check-config"},
                  clean_env()};
  auto r = finish(p);
  INFO("stderr: " << shown(r.err));
  CHECK(r.code == 2);
  CHECK(r.err.find("is not valid UTF-8 once made absolute") != std::string::npos);
}

TEST_CASE("reverse mode: an invalid agent setting stops start-up with exit code 2, naming it",
          "[gateway][config][agent]") {
  config_dir cd;
  const auto dir = cd.dir.path();
  shell("ssh-keygen -q -t ed25519 -N '' -f '" + dir + "/bob_key'");
  shell("cp '" + dir + "/bob_key.pub' '" + dir + "/bob.keys'");
  cd.dir.write("no_keys", "# nothing yet\ncommand=\"/bin/sh\" ssh-ed25519 AAAA junk\n");
  const std::string listener = R"("agent_listen":"127.0.0.1:0","agent_host_key":"host_key")";
  const std::string bob = R"("mode":"agent","authorized_keys_file":"bob.keys","target_port":80)";
  auto with = [&](const std::string& members, const std::string& bob_spec) {
    return std::vector<std::string>{"--config", cd.agent_file(members, bob_spec)};
  };
  struct bad_case {
    std::vector<std::string> args;
    std::vector<std::string> env;
    std::string named;
  };
  std::vector<bad_case> cases = {
      {with("", bob), {}, "users.bob.mode: agent mode needs agent_listen"},
      {with(listener, bob), {"AGENT_LISTEN="}, "users.bob.mode"},
      {with(R"("agent_listen":"127.0.0.1:0")", bob), {}, "agent_listen: needs agent_host_key"},
      {with(listener, bob), {"AGENT_LISTEN=localhost:2222"}, "AGENT_LISTEN"},
      {with(listener, bob), {"AGENT_LISTEN=127.0.0.1"}, "AGENT_LISTEN"},
      {with(listener, bob), {"AGENT_LISTEN=127.0.0.1:65536"}, "AGENT_LISTEN"},
      {with(listener, bob), {"AGENT_LOGIN_GRACE=0"}, "AGENT_LOGIN_GRACE"},
      {with(listener, bob), {"AGENT_MAX_STARTUPS=0"}, "AGENT_MAX_STARTUPS"},
      {with(listener, bob), {"AGENT_MAX_STARTUPS_PER_SOURCE=x"}, "AGENT_MAX_STARTUPS_PER_SOURCE"},
      {with(listener, bob), {"AGENT_MAX_AUTH_TRIES=-1"}, "AGENT_MAX_AUTH_TRIES"},
      {with(R"("agent_listen":"[::1]:x","agent_host_key":"k")", bob), {}, "agent_listen"},
      {with(listener, R"("mode":"reverse","authorized_keys_file":"bob.keys","target_port":80)"),
       {},
       "users.bob.mode"},
      {with(listener, R"("mode":"agent","target_port":80)"), {}, "missing authorized_keys_file"},
      {with(listener, R"("mode":"agent","authorized_keys_file":"bob.keys")"),
       {},
       "missing target_port"},
      {with(listener, R"("mode":"agent","authorized_keys_file":"absent","target_port":80)"),
       {},
       "users.bob.authorized_keys_file"},
      {with(listener, R"("mode":"agent","authorized_keys_file":"no_keys","target_port":80)"),
       {},
       "holds no usable key"},
      {with(listener, bob + R"(,"host":"10.0.0.5")"), {}, "users.bob.host: not used in agent mode"},
      {with(listener, bob + R"(,"identity_file":"id_test")"), {}, "users.bob.identity_file"},
      {with(listener, bob + R"(,"known_hosts_file":"known_hosts")"),
       {},
       "users.bob.known_hosts_file"},
      {with(listener, bob + R"(,"target_host":"10.0.0.5")"), {}, "users.bob.target_host"},
      {{"--config", cd.file(listener, R"(,"authorized_keys_file":"bob.keys")")},
       {},
       "users.alice.authorized_keys_file"},
  };
  for (auto& c : cases) {
    auto r = run_demo(c.args, c.env);
    std::string shown;
    for (auto& e : c.env)
      shown += e + " ";
    INFO(read_file(c.args[1]) << " " << shown << "\n  exit " << r.code << ", stderr: " << r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find(c.named) != std::string::npos);
    CHECK(r.err.find("junk") == std::string::npos); // the key file is not echoed
    CHECK(r.out.find("listening") == std::string::npos);
  }
  // The same user object with its listener is fine.
  effective(run_demo({"--config", cd.agent_file(listener, bob), "--check-config"}));
}

TEST_CASE("a private key that cannot be used stops --check-config and start-up with exit "
          "code 2, naming the user and the reason",
          "[gateway][config]") {
  config_dir cd;
  const std::string passphrase = "hunter2 passphrase";
  const auto dir = cd.dir.path();
  shell("ssh-keygen -q -t ed25519 -N '" + passphrase + "' -f '" + dir + "/enc_key'");
  cd.dir.write("pass", passphrase + "\n");
  cd.dir.write("wrong_pass", "not it\n");
  cd.dir.write("text", "hello\n");
  struct bad_key {
    std::string user_extra;
    std::string reason;
  };
  const std::vector<bad_key> cases = {
      {R"(,"identity_file":"enc_key")", "is encrypted, and no passphrase was given"},
      {R"(,"identity_file":"enc_key","passphrase_file":"wrong_pass")", "wrong passphrase"},
      {R"(,"identity_file":"text")", "is not a private key"},
      {R"(,"identity_file":"id_test.pub")", "is not a private key"},
  };
  for (const auto& c : cases) {
    auto file = cd.file(R"("listen":"127.0.0.1:0")", c.user_extra);
    for (bool check : {true, false}) {
      std::vector<std::string> args{"--config", file};
      if (check)
        args.push_back("--check-config");
      auto r = run_demo(args);
      INFO(c.user_extra << (check ? " --check-config" : "") << "\n  exit " << r.code
                        << ", stderr: " << r.err);
      CHECK(r.code == 2);
      CHECK(r.err.find("users.alice") != std::string::npos);
      CHECK(r.err.find(c.reason) != std::string::npos);
      CHECK(r.err.find("hunter2") == std::string::npos);
      CHECK(r.err.find("not it") == std::string::npos);
      CHECK(r.out.find("listening") == std::string::npos);
    }
  }
  // The right passphrase file: the key loads.
  effective(
      run_demo({"--config", cd.file("", R"(,"identity_file":"enc_key","passphrase_file":"pass")"),
                "--check-config"}));
}

TEST_CASE("trace logs (JSON) hold no secret, and every request line its request id",
          "[gateway][logs]") {
  test_sshd sshd;
  sshpool::demo::http_backend backend{sshpool::demo::http_backend::options{"backend-a"}};
  temp_dir dir;
  const std::string passphrase = "correct horse battery staple 42";
  auto key = dir.path() + "/enc_key";
  std::string keygen = "ssh-keygen -q -t ed25519 -N '" + passphrase + "' -C gw-test -f '" + key +
                       "' </dev/null >/dev/null 2>&1";
  REQUIRE(std::system(keygen.c_str()) == 0);
  REQUIRE(::chmod(key.c_str(), 0640) == 0); // readable by the group: used, with a warning
  {
    std::ifstream pub{key + ".pub"};
    std::string type, blob;
    pub >> type >> blob;
    std::ofstream auth{sshd.dir() + "/authorized_keys", std::ios::app};
    auth << type << ' ' << blob << '\n';
  }
  std::ifstream key_in{key};
  std::vector<std::string> key_lines;
  for (std::string line; std::getline(key_in, line);)
    if (line.find("-----") == std::string::npos && line.size() > 20)
      key_lines.push_back(line);
  REQUIRE_FALSE(key_lines.empty());
  dir.write("pass", passphrase + "\n");
  auto ep = sshd.make_endpoint(backend.port());
  // Two users with the same key: two handshakes.
  auto user = [&](const std::string& name) {
    return "\"" + name + R"(":{"host":"127.0.0.1","port":)" + std::to_string(ep.port) +
           R"(,"username":")" + ep.username +
           R"(","identity_file":"enc_key","passphrase_file":"pass","known_hosts_file":")" +
           ep.known_hosts_file + R"(","target_port":)" + std::to_string(backend.port()) +
           R"(,"server_nodelay":false})";
  };
  auto cfg = dir.write("config.json", R"({"listen":"127.0.0.1:0","users":{)" + user("alice") + "," +
                                          user("bob") + "}}");

  running_gateway gw{cfg, clean_env({"LOG_LEVEL=trace"}), {"--log-format", "json"}};
  auto res = fetch(gw.port, "GET", "/u/alice/echo?api_key=query-secret-789",
                   {{"Authorization", "Bearer top-secret-token-123"},
                    {"Cookie", "session=cookie-secret-456"},
                    {"X-Request-Id", "log-test-1"}});
  REQUIRE(res.status == 200); // the encrypted key and its passphrase work
  CHECK(backend.received().back().headers.size() > 0);
  CHECK(fetch(gw.port, "GET", "/u/nobody/x", {{"X-Request-Id", "log-test-2"}}).status == 404);
  CHECK(fetch(gw.port, "GET", "/u/bob/echo", {{"X-Request-Id", "log-test-3"}}).status == 200);
  // A path that is not UTF-8 (no such route: 404) still makes a line of valid JSON, with
  // U+FFFD in its place.
  CHECK(fetch(gw.port, "GET", "/u/bob/\xff\xc0\xafok", {{"X-Request-Id", "log-test-4"}}).status ==
        404);
  gw.proc.signal(SIGTERM);
  CHECK(gw.proc.wait_exit(20s) == 0);
  const auto& log = gw.proc.err();
  INFO(log);
  for (auto& secret :
       {passphrase, std::string{"top-secret-token-123"}, std::string{"cookie-secret-456"},
        std::string{"query-secret-789"}, std::string{"BEGIN OPENSSH"}})
    CHECK(log.find(secret) == std::string::npos);
  for (auto& line : key_lines)
    CHECK(log.find(line) == std::string::npos);
  // The exposed key file is named once (two handshakes, one warning), its content never.
  const std::string exposed = "is accessible to group or others (mode 640)";
  auto first = log.find(exposed);
  CHECK(first != std::string::npos);
  CHECK(log.find(exposed, first + 1) == std::string::npos);
  CHECK(log.find(key) != std::string::npos);

  // One JSON object per line; request lines carry the request id and the figures.
  std::istringstream lines{log};
  int request_lines = 0;
  bool engine_lines = false;
  bool trace_lines = false;
  for (std::string line; std::getline(lines, line);) {
    auto obj = json::parse(line, nullptr, false);
    INFO(line);
    REQUIRE(obj.is_object());
    CHECK(obj["time"].is_string());
    CHECK(obj["level"].is_string());
    engine_lines = engine_lines || obj["logger"] == "sshpool";
    trace_lines = trace_lines || obj["level"] == "trace";
    if (obj["msg"] == "request_received")
      CHECK(obj["request_id"].is_string());
    if (obj["msg"] != "request")
      continue;
    ++request_lines;
    CHECK((obj["request_id"] == "log-test-1" || obj["request_id"] == "log-test-2" ||
           obj["request_id"] == "log-test-3" || obj["request_id"] == "log-test-4"));
    for (const char* key : {"user", "method", "path", "code"})
      CHECK(obj[key].is_string());
    for (const char* key : {"status", "latency_ms", "bytes"})
      CHECK(obj[key].is_number());
    if (obj["request_id"] == "log-test-1") {
      CHECK(obj["user"] == "alice");
      CHECK(obj["path"] == "/echo");
      CHECK(obj["status"] == 200);
      CHECK(obj["level"] == "info");
    }
    if (obj["request_id"] == "log-test-4")
      CHECK(obj["path"] == "/\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdok");
  }
  CHECK(request_lines == 4);
  CHECK(engine_lines);
  CHECK(trace_lines);
}
