// The cluster's routing decisions, as plain functions of a node's view (no CAF): which node
// owns a user (its claim first, else rendezvous hashing over the live members), which
// members left between two views, and whether a node must keep a user it still serves
// after a rebalance. The supervisor (supervisor_cluster.cpp) acts on them; they are
// unit-tested alone (tests/unit/test_routing.cpp).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sshpool::routing {

/// The node that owns `user`: the node that claims it, else `rendezvous::owner` over
/// `members`; none if there are no members.
std::optional<std::string> owner(std::string_view user, const std::vector<std::string>& members,
                                 const std::map<std::string, std::string>& claims);

/// The members of `before` that are not in `after` (both sorted).
std::vector<std::string> departed(const std::vector<std::string>& before,
                                  const std::vector<std::string>& after);

/// Whether `self`, which still has leases or waiters of `user`, must claim it: another node
/// would own it by hashing and nobody claims it (a claim of another node, an agent
/// connected there, wins; a claim of `self` holds it already).
bool must_hold(std::string_view user, std::string_view self,
               const std::vector<std::string>& members,
               const std::map<std::string, std::string>& claims);

} // namespace sshpool::routing
