// A network namespace joined to the test's own by a veth pair, for faults that loopback
// cannot show: a network that silently drops every packet (a cut cable, a dead NAT entry).
// The namespace, the veth pair and their /30 of 10.213.0.0/16 belong to the test alone;
// nothing leaves the machine.
#pragma once

#include <string>

namespace sshpool::test {

/// A namespace `name()` at ns_address(), reachable from the test at host_address() (a
/// connected /30 on a veth pair). Needs root and iproute2; `available()` says whether it
/// could be made, `why_unavailable()` why not. The destructor deletes the namespace (which
/// also deletes the veth pair); processes still in it must be gone by then.
class test_netns {
public:
  test_netns();
  ~test_netns();
  test_netns(const test_netns&) = delete;
  test_netns& operator=(const test_netns&) = delete;

  bool available() const { return available_; }
  const std::string& why_unavailable() const { return why_; }
  const std::string& name() const { return name_; }
  /// The test's end of the veth pair (bind backends the namespace should reach here).
  const std::string& host_address() const { return host_; }
  /// The namespace's end (bind servers that run in the namespace here).
  const std::string& ns_address() const { return ns_; }

  /// Makes the namespace unable to answer: a blackhole route in it for host_address(), so
  /// its replies (SYN-ACKs, data, ACKs) vanish without an error, an RST or an ICMP. Seen
  /// from the test, packets leave and nothing ever comes back, as on a cut network. (A
  /// blackhole route on the test's side would fail new connects at once with EINVAL.)
  void cut();
  /// Undoes cut(); established TCP connections resume with their next retransmission.
  void restore();

private:
  bool run(const std::string& command);

  std::string name_;
  std::string host_if_;
  std::string host_;
  std::string ns_;
  bool available_ = false;
  bool cut_ = false;
  std::string why_;
};

} // namespace sshpool::test

/// In a Catch2 test case: declares `ns`, a test_netns, or ends the case with a warning when
/// none can be made (no root, no iproute2).
#define SSHPOOL_TEST_NETNS(ns)                                                                     \
  ::sshpool::test::test_netns ns;                                                                  \
  if (!ns.available()) {                                                                           \
    WARN("skipped: " << ns.why_unavailable());                                                     \
    return;                                                                                        \
  }
