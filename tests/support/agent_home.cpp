// A user's machine dialing in with the OpenSSH client (see agent_home.hpp).
#include "support/agent_home.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>

#include "support/child_process.hpp"

namespace sshpool::test {

std::string agent_home::key(const std::string& name) {
  auto path = dir_.path() + "/" + name;
  if (public_keys_.count(name) == 0) {
    auto log = dir_.path() + "/keygen.log";
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0)
      throw_errno("open " + log);
    int status = 0;
    try {
      status = wait_child(spawn(
          {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name + "@agent", "-f", path}, out));
    } catch (...) {
      ::close(out);
      throw;
    }
    ::close(out);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      throw std::runtime_error("agent_home: ssh-keygen failed: " + read_file(log));
    auto line = read_file(path + ".pub");
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
      line.pop_back();
    public_keys_[name] = line;
  }
  return path;
}

std::string agent_home::public_key(const std::string& name) {
  key(name);
  return public_keys_[name];
}

void agent_home::trust(std::uint16_t port, const std::string& host_public_key) {
  pinned_[port] = host_public_key;
  std::string lines;
  for (auto& [p, key] : pinned_)
    lines += "[127.0.0.1]:" + std::to_string(p) + " " + key + "\n";
  write_file(dir_.path() + "/known_hosts", lines);
}

std::vector<std::string> agent_home::ssh(const std::string& user, std::uint16_t port,
                                         const std::vector<std::string>& options,
                                         const std::vector<std::string>& command,
                                         const std::string& key_name) {
  std::vector<std::string> argv{"ssh",
                                "-F",
                                "/dev/null",
                                "-p",
                                std::to_string(port),
                                "-i",
                                key(key_name),
                                "-o",
                                "IdentitiesOnly=yes",
                                "-o",
                                "IdentityAgent=none",
                                "-o",
                                "BatchMode=yes",
                                "-o",
                                "StrictHostKeyChecking=yes",
                                "-o",
                                "UserKnownHostsFile=" + dir_.path() + "/known_hosts",
                                "-o",
                                "GlobalKnownHostsFile=/dev/null",
                                "-o",
                                "UpdateHostKeys=no",
                                "-o",
                                "CheckHostIP=no",
                                "-o",
                                "ControlPath=none",
                                "-o",
                                "ConnectTimeout=10"};
  argv.insert(argv.end(), options.begin(), options.end());
  argv.push_back(user + "@127.0.0.1");
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

std::string agent_home::log_file(const std::string& name) {
  return dir_.path() + "/" + name + "-" + std::to_string(++logs_) + ".log";
}

} // namespace sshpool::test
