// Rendezvous hashing (actors/src/rendezvous.hpp) as plain C++: pinned weights (the hash is
// part of the cluster's contract), then randomized properties with a fixed seed: one owner
// per user, minimal movement when a member joins or leaves, an even spread, no dependence on
// the order of the members.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "rendezvous.hpp"

using namespace sshpool;

namespace {

/// Users as a service names them ("user-17") and as opaque bytes (1-40 bytes, no control
/// characters, bytes above ASCII included), from a fixed seed.
std::vector<std::string> make_users(std::size_t count, std::mt19937_64& rng) {
  std::vector<std::string> users;
  users.reserve(count);
  std::uniform_int_distribution<int> length(1, 40);
  std::uniform_int_distribution<int> byte(0x20, 0xff);
  for (std::size_t i = 0; i < count; ++i) {
    if (i % 2 == 0) {
      users.push_back("user-" + std::to_string(i));
      continue;
    }
    std::string user(static_cast<std::size_t>(length(rng)), ' ');
    for (auto& c : user)
      c = static_cast<char>(byte(rng));
    users.push_back(std::move(user));
  }
  return users;
}

std::vector<std::string> make_members(std::size_t count) {
  std::vector<std::string> members;
  for (std::size_t i = 0; i < count; ++i)
    members.push_back("127.0.0.1:" + std::to_string(4100 + i));
  return members;
}

std::map<std::string, std::string> owners(const std::vector<std::string>& users,
                                          const std::vector<std::string>& members) {
  std::map<std::string, std::string> result;
  for (const auto& user : users) {
    auto owner = rendezvous::owner(user, members);
    REQUIRE(owner);
    result[user] = *owner;
  }
  return result;
}

} // namespace

TEST_CASE("weights are pinned: every build and every node computes the same ones", "[rendezvous]") {
  // Computed by an independent implementation of the documented function (FNV-1a 64 over
  // the member's length as 8 bytes little-endian, the member, the user; then splitmix64's
  // finalizer).
  CHECK(rendezvous::weight("alice", "n1") == 0x6dae609996be3987ULL);
  CHECK(rendezvous::weight("alice", "n2") == 0xe54cde819f1e33faULL);
  CHECK(rendezvous::weight("bob", "n1") == 0xcde5728580c9308dULL);
  CHECK(rendezvous::weight("", "") == 0x813f0174a2367c13ULL);
  CHECK(*rendezvous::owner("alice", {"n1", "n2"}) == "n2");
  // The member's length is hashed, so the split between member and user matters.
  CHECK(rendezvous::weight("c", "ab") != rendezvous::weight("bc", "a"));
}

TEST_CASE("no members, no owner; one member owns everyone", "[rendezvous]") {
  CHECK_FALSE(rendezvous::owner("alice", {}));
  CHECK(*rendezvous::owner("alice", {"n1"}) == "n1");
  CHECK(*rendezvous::owner("", {"n1"}) == "n1");
  // A member listed twice is still one member.
  CHECK(*rendezvous::owner("alice", {"n1", "n2", "n1"}) ==
        *rendezvous::owner("alice", {"n1", "n2"}));
}

TEST_CASE("every user has exactly one owner: the member of strictly highest weight",
          "[rendezvous]") {
  std::mt19937_64 rng{17};
  auto users = make_users(3000, rng);
  for (std::size_t n = 1; n <= 7; ++n) {
    auto members = make_members(n);
    for (const auto& user : users) {
      auto owner = rendezvous::owner(user, members);
      REQUIRE(owner);
      REQUIRE(std::count(members.begin(), members.end(), *owner) == 1);
      auto top = rendezvous::weight(user, *owner);
      for (const auto& member : members)
        if (member != *owner)
          REQUIRE(rendezvous::weight(user, member) < top);
      REQUIRE(*rendezvous::owner(user, members) == *owner); // deterministic
    }
  }
}

TEST_CASE("a member that joins takes about 1/(n+1) of the users, from every member alike, "
          "and no other user moves",
          "[rendezvous]") {
  std::mt19937_64 rng{1717};
  auto users = make_users(12000, rng);
  for (std::size_t n = 1; n <= 6; ++n) {
    auto members = make_members(n);
    auto before = owners(users, members);
    auto joined = make_members(n + 1);
    const auto& newcomer = joined.back();
    auto after = owners(users, joined);
    std::size_t moved = 0;
    std::map<std::string, std::size_t> given; // by each member that was there
    for (const auto& user : users) {
      if (after[user] != before[user]) {
        REQUIRE(after[user] == newcomer);
        ++moved;
        ++given[before[user]];
      }
    }
    double expected = static_cast<double>(users.size()) / static_cast<double>(n + 1);
    INFO(n << " members + 1: " << moved << " of " << users.size() << " moved");
    CHECK(std::abs(static_cast<double>(moved) - expected) <= 0.1 * expected);
    CHECK(given.size() == n);
    double share = static_cast<double>(moved) / static_cast<double>(n);
    for (const auto& [member, count] : given) {
      INFO(member << " gave " << count);
      CHECK(std::abs(static_cast<double>(count) - share) <= 0.25 * share);
    }
  }
}

TEST_CASE("a member that leaves hands over only its own users, spread over the others",
          "[rendezvous]") {
  std::mt19937_64 rng{4242};
  auto users = make_users(12000, rng);
  for (std::size_t n = 2; n <= 7; ++n) {
    auto members = make_members(n);
    auto before = owners(users, members);
    for (std::size_t gone = 0; gone < n; ++gone) {
      auto left = members;
      left.erase(left.begin() + static_cast<std::ptrdiff_t>(gone));
      auto after = owners(users, left);
      std::map<std::string, std::size_t> inherited;
      for (const auto& user : users) {
        if (before[user] == members[gone]) {
          REQUIRE(after[user] != members[gone]);
          ++inherited[after[user]];
        } else {
          REQUIRE(after[user] == before[user]);
        }
      }
      // The orphans spread over the n - 1 survivors about evenly (within 25 %, several
      // standard deviations for a few thousand orphans).
      std::size_t orphans = 0;
      for (const auto& [member, count] : inherited)
        orphans += count;
      double share = static_cast<double>(orphans) / static_cast<double>(n - 1);
      CHECK(inherited.size() == n - 1);
      for (const auto& [member, count] : inherited) {
        INFO(member << " inherited " << count << " of " << orphans);
        CHECK(std::abs(static_cast<double>(count) - share) <= 0.25 * share);
      }
    }
  }
}

TEST_CASE("9,000 users over 3 members: each owns 3,000 +- 10 %", "[rendezvous]") {
  std::mt19937_64 rng{9000};
  auto users = make_users(9000, rng);
  for (const auto& members : {make_members(3), std::vector<std::string>{"n1", "n2", "n3"}}) {
    std::map<std::string, std::size_t> count;
    for (const auto& [user, owner] : owners(users, members))
      ++count[owner];
    REQUIRE(count.size() == 3);
    for (const auto& [member, owned] : count) {
      INFO(member << " owns " << owned);
      CHECK(owned >= 2700);
      CHECK(owned <= 3300);
    }
  }
}

TEST_CASE("the owner does not depend on the order of the members", "[rendezvous]") {
  std::mt19937_64 rng{99};
  auto users = make_users(2000, rng);
  auto members = make_members(5);
  members.push_back("n1");
  members.push_back("");
  auto reference = owners(users, members);
  for (int round = 0; round < 20; ++round) {
    std::shuffle(members.begin(), members.end(), rng);
    REQUIRE(owners(users, members) == reference);
  }
}
