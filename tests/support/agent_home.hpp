// A user's machine in reverse mode: the stock OpenSSH client dialing in to the gateway's
// agent listener, with a private directory for its keys (made by ssh-keygen) and its
// known_hosts (pinning the listener's host key). Nothing of the test user's own ~/.ssh is
// read: no config file, no ssh-agent, only the named identity.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "support/os.hpp"

namespace sshpool::test {

class agent_home {
public:
  const std::string& dir() const noexcept { return dir_.path(); }
  /// The ed25519 private key file `name` (made on first use, mode 0600).
  std::string key(const std::string& name = "id");
  /// Its public key line, "ssh-ed25519 BASE64 COMMENT" (an authorized_keys line).
  std::string public_key(const std::string& name = "id");
  /// Pins `host_public_key` ("ssh-ed25519 BASE64") for 127.0.0.1:`port` in known_hosts,
  /// beside the other ports pinned (a port pinned again gets the new key).
  void trust(std::uint16_t port, const std::string& host_public_key);

  /// ssh's argv for `user`@127.0.0.1 -p `port` with identity `key_name`: BatchMode, strict
  /// host key checking against this known_hosts, then `options` (before the destination)
  /// and `command` (after it).
  std::vector<std::string> ssh(const std::string& user, std::uint16_t port,
                               const std::vector<std::string>& options,
                               const std::vector<std::string>& command = {},
                               const std::string& key_name = "id");

  /// A fresh log file name in the directory ("NAME-N.log").
  std::string log_file(const std::string& name);

private:
  /// Made under $TMPDIR or /tmp, removed with the home.
  temp_dir dir_{"sshpool-agent"};
  std::map<std::string, std::string> public_keys_;
  std::map<std::uint16_t, std::string> pinned_;
  int logs_ = 0;
};

} // namespace sshpool::test
