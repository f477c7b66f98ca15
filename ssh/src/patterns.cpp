// OpenSSH's host patterns (see patterns.hpp).
#include "patterns.hpp"

#include "sshpool/text.hpp"

namespace sshpool::ssh {

bool wildcard_match(std::string_view text, std::string_view pattern) {
  std::size_t t = 0, p = 0, star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++t;
      ++p;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*')
    ++p;
  return p == pattern.size();
}

bool patterns_match(std::string_view name, std::string_view list) {
  bool positive = false;
  while (!list.empty()) {
    auto comma = list.find(',');
    auto pattern = text::lower(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    bool negated = !pattern.empty() && pattern[0] == '!';
    if (wildcard_match(name, std::string_view{pattern}.substr(negated ? 1 : 0))) {
      if (negated)
        return false;
      positive = true;
    }
  }
  return positive;
}

} // namespace sshpool::ssh
