// See routing.hpp.
#include "routing.hpp"

#include <algorithm>
#include <iterator>

#include "rendezvous.hpp"

namespace sshpool::routing {

std::optional<std::string> owner(std::string_view user, const std::vector<std::string>& members,
                                 const std::map<std::string, std::string>& claims) {
  if (!claims.empty()) {
    if (auto i = claims.find(std::string{user}); i != claims.end())
      return i->second;
  }
  return rendezvous::owner(user, members);
}

std::vector<std::string> departed(const std::vector<std::string>& before,
                                  const std::vector<std::string>& after) {
  std::vector<std::string> result;
  std::set_difference(before.begin(), before.end(), after.begin(), after.end(),
                      std::back_inserter(result));
  return result;
}

bool must_hold(std::string_view user, std::string_view self,
               const std::vector<std::string>& members,
               const std::map<std::string, std::string>& claims) {
  if (claims.count(std::string{user}) > 0)
    return false;
  auto hashed = rendezvous::owner(user, members);
  return hashed && *hashed != self;
}

} // namespace sshpool::routing
