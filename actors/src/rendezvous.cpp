#include "rendezvous.hpp"

namespace sshpool::rendezvous {

namespace {

constexpr std::uint64_t fnv_offset_basis = 0xcbf29ce484222325ULL;
constexpr std::uint64_t fnv_prime = 0x100000001b3ULL;

/// FNV-1a 64 of `bytes`, continuing from the state `hash`.
std::uint64_t fnv1a(std::uint64_t hash, std::string_view bytes) noexcept {
  for (unsigned char byte : bytes) {
    hash ^= byte;
    hash *= fnv_prime;
  }
  return hash;
}

/// The finalizer of splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", 2014): a bijection with full avalanche.
std::uint64_t splitmix64_finalize(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

} // namespace

std::uint64_t weight(std::string_view user, std::string_view member) noexcept {
  // The member's length first, so that ("ab", "c") and ("a", "bc") hash apart.
  char length[8];
  std::uint64_t size = member.size();
  for (auto& byte : length) {
    byte = static_cast<char>(size & 0xff);
    size >>= 8;
  }
  auto hash = fnv1a(fnv_offset_basis, std::string_view{length, sizeof(length)});
  hash = fnv1a(hash, member);
  hash = fnv1a(hash, user);
  return splitmix64_finalize(hash);
}

std::optional<std::string> owner(std::string_view user, const std::vector<std::string>& members) {
  const std::string* best = nullptr;
  std::uint64_t best_weight = 0;
  for (const auto& member : members) {
    auto w = weight(user, member);
    if (best == nullptr || w > best_weight || (w == best_weight && member < *best)) {
      best = &member;
      best_weight = w;
    }
  }
  if (best == nullptr)
    return std::nullopt;
  return *best;
}

} // namespace sshpool::rendezvous
