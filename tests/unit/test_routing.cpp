// The cluster's routing decisions (actors/src/routing.hpp), plain C++: owner (claims first,
// else rendezvous hashing), the members that left between two views, and whether a node
// must hold a user it still serves after a rebalance.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "rendezvous.hpp"
#include "routing.hpp"

using namespace sshpool;

namespace {

const std::vector<std::string> three{"n1", "n2", "n3"};

/// The first of user-0, user-1, ... that hashing over `members` gives to `node`.
std::string hashed_to(const std::string& node, const std::vector<std::string>& members) {
  for (int i = 0;; ++i) {
    auto user = "user-" + std::to_string(i);
    if (rendezvous::owner(user, members) == node)
      return user;
  }
}

} // namespace

TEST_CASE("without a claim, the owner is the rendezvous owner", "[routing]") {
  for (int i = 0; i < 200; ++i) {
    auto user = "user-" + std::to_string(i);
    CHECK(routing::owner(user, three, {}) == rendezvous::owner(user, three));
  }
  CHECK_FALSE(routing::owner("alice", {}, {}));
}

TEST_CASE("a claim wins over hashing, for its user only", "[routing]") {
  auto user = hashed_to("n1", three);
  auto other = hashed_to("n2", three);
  std::map<std::string, std::string> claims{{user, "n3"}};
  CHECK(routing::owner(user, three, claims) == std::string{"n3"});
  CHECK(routing::owner(other, three, claims) == std::string{"n2"});
  // A claim holds even with no members known (the directory names a live member).
  CHECK(routing::owner(user, {}, claims) == std::string{"n3"});
}

TEST_CASE("departed members: those of the old view missing from the new one", "[routing]") {
  CHECK(routing::departed(three, {"n1", "n3"}) == std::vector<std::string>{"n2"});
  CHECK(routing::departed(three, three).empty());
  CHECK(routing::departed({"n1"}, three).empty());
  CHECK(routing::departed(three, {}) == three);
  CHECK(routing::departed({"n1", "n4"}, {"n2", "n3", "n4"}) == std::vector<std::string>{"n1"});
}

TEST_CASE("a node holds a busy user that hashes elsewhere and nobody claims", "[routing]") {
  auto moved = hashed_to("n2", three);
  auto stays = hashed_to("n1", three);
  CHECK(routing::must_hold(moved, "n1", three, {}));
  CHECK_FALSE(routing::must_hold(stays, "n1", three, {}));
  // Claimed already (by this node or another, whose agent wins): nothing to add.
  CHECK_FALSE(routing::must_hold(moved, "n1", three, {{moved, "n1"}}));
  CHECK_FALSE(routing::must_hold(moved, "n1", three, {{moved, "n3"}}));
  // No members: no owner to hand over to.
  CHECK_FALSE(routing::must_hold(moved, "n1", {}, {}));
}
