// Rendezvous (highest-random-weight) hashing: which member of a cluster owns a user. Every
// member computes a weight for (user, member) and the member of highest weight owns the
// user, so any node that knows the same members picks the same owner without asking anyone,
// and a membership change moves only the users of the member that joined or left.
//
// The weight is a stable 64-bit hash, the same on every build, platform and process (unlike
// std::hash): FNV-1a 64 over the member id's length (8 bytes, little-endian), the member id
// and the user id, then the splitmix64 finalizer so that every input bit reaches every
// output bit. User and member ids are chosen by the operator, not by clients, so a keyed
// (collision-resistant) hash is not needed. Changing the function changes owners: every node
// of a cluster must run the same one. Plain C++ (no CAF), unit-tested alone
// (tests/unit/test_rendezvous.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sshpool::rendezvous {

/// The weight of `member` for `user`: a stable 64-bit hash of both (see above).
std::uint64_t weight(std::string_view user, std::string_view member) noexcept;

/// The owner of `user` among `members`: the member of highest weight (on equal weights the
/// smaller id), whatever the order of `members`; none if `members` is empty.
std::optional<std::string> owner(std::string_view user, const std::vector<std::string>& members);

} // namespace sshpool::rendezvous
