// The agent listener's admission and per-source penalties (see agent_gate.hpp).
#include "agent_gate.hpp"

#include <arpa/inet.h>

#include <algorithm>

namespace sshpool::ssh {

agent_gate::agent_gate(std::size_t max_startups, std::size_t max_per_source,
                       agent_penalties penalties)
    : max_startups_(max_startups), max_per_source_(max_per_source), penalties_(penalties) {}

std::optional<agent_refusal> agent_gate::admit(const std::string& source, clock::time_point now) {
  if (auto d = debts_.find(source); d != debts_.end() && d->second.refused_until > now)
    return agent_refusal::penalized_source;
  if (startups_ >= max_startups_)
    return agent_refusal::max_startups;
  auto& mine = per_source_[source];
  if (mine >= max_per_source_) {
    if (mine == 0)
      per_source_.erase(source);
    return agent_refusal::max_startups_per_source;
  }
  ++mine;
  ++startups_;
  return std::nullopt;
}

void agent_gate::finish(const std::string& source, std::chrono::milliseconds penalty,
                        clock::time_point now) {
  if (auto i = per_source_.find(source); i != per_source_.end()) {
    --startups_;
    if (--i->second == 0)
      per_source_.erase(i);
  }
  if (!penalties_.enabled || penalty.count() <= 0)
    return;
  auto d = debts_.find(source);
  if (d == debts_.end()) {
    make_room(now);
    d = debts_.emplace(source, debt{now, clock::time_point{}}).first;
  }
  auto& x = d->second;
  x.paid_at = std::min(std::max(x.paid_at, now) + penalty, now + penalties_.max);
  if (x.paid_at - now >= penalties_.min)
    x.refused_until = x.paid_at;
}

std::size_t agent_gate::penalized(clock::time_point now) const {
  return static_cast<std::size_t>(std::count_if(
      debts_.begin(), debts_.end(), [now](const auto& d) { return d.second.refused_until > now; }));
}

void agent_gate::make_room(clock::time_point now) {
  if (debts_.size() < std::max<std::size_t>(penalties_.max_sources, 1))
    return;
  for (auto i = debts_.begin(); i != debts_.end();)
    i = i->second.paid_at <= now ? debts_.erase(i) : std::next(i);
  if (debts_.size() < penalties_.max_sources)
    return;
  debts_.erase(std::min_element(debts_.begin(), debts_.end(), [](const auto& a, const auto& b) {
    return a.second.paid_at < b.second.paid_at;
  }));
}

std::string source_key(std::string_view address) {
  std::string text{address};
  unsigned char bytes[16];
  if (::inet_pton(AF_INET6, text.c_str(), bytes) != 1)
    return text;
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  char out[INET6_ADDRSTRLEN];
  if (std::equal(mapped, mapped + 12, bytes)) {
    ::inet_ntop(AF_INET, bytes + 12, out, sizeof out);
    return out;
  }
  std::fill(bytes + 8, bytes + 16, 0);
  ::inet_ntop(AF_INET6, bytes, out, sizeof out);
  return std::string{out} + "/64";
}

} // namespace sshpool::ssh
