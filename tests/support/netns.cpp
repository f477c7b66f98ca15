#include "support/netns.hpp"

#include <cstdlib>

#include <unistd.h>

namespace sshpool::test {

test_netns::test_netns() {
  // One /30 per test process (by pid), so concurrent test programs do not collide.
  const auto id = static_cast<unsigned>(::getpid());
  const auto third = std::to_string(id % 256);
  const auto fourth_base = (id / 256) % 64 * 4;
  name_ = "sshpool-test-" + std::to_string(id);
  host_if_ = "spv" + std::to_string(id);
  host_ = "10.213." + third + '.' + std::to_string(fourth_base + 1);
  ns_ = "10.213." + third + '.' + std::to_string(fourth_base + 2);
  if (::geteuid() != 0) {
    why_ = "network namespaces need root";
    return;
  }
  const std::string in_ns = "/usr/sbin/ip netns exec " + name_ + " /usr/sbin/ip ";
  available_ = run("/usr/sbin/ip netns add " + name_) &&
               run("/usr/sbin/ip link add " + host_if_ + " type veth peer name " + host_if_ +
                   "n netns " + name_) &&
               run("/usr/sbin/ip addr add " + host_ + "/30 dev " + host_if_) &&
               run("/usr/sbin/ip link set " + host_if_ + " up") &&
               run(in_ns + "addr add " + ns_ + "/30 dev " + host_if_ + 'n') &&
               run(in_ns + "link set " + host_if_ + "n up") && run(in_ns + "link set lo up");
  if (!available_)
    why_ =
        "cannot create network namespace " + name_ + " with a veth pair (ip netns/ip link failed)";
}

test_netns::~test_netns() {
  run("/usr/sbin/ip netns delete " + name_);
  run("/usr/sbin/ip link delete " + host_if_);
}

void test_netns::cut() {
  if (cut_)
    return;
  cut_ = run("/usr/sbin/ip netns exec " + name_ + " /usr/sbin/ip route add blackhole " + host_ +
             "/32");
}

void test_netns::restore() {
  if (!cut_)
    return;
  run("/usr/sbin/ip netns exec " + name_ + " /usr/sbin/ip route delete blackhole " + host_ + "/32");
  cut_ = false;
}

bool test_netns::run(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
}

} // namespace sshpool::test
