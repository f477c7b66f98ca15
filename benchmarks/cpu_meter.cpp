// CPU per request and the sshd's CPU share of a timed load (see cpu_meter.hpp).
#include "cpu_meter.hpp"

#include <sys/resource.h>

#include "support/process_info.hpp"

namespace sshpool::bench {

namespace {

double seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

} // namespace

cpu_meter::cpu_meter(pid_t sshd_pid) : sshd_pid_(sshd_pid) {
  sampler_ = std::thread{[this, started = start_.get_future()]() mutable {
    if (started.get())
      begin_ = take(true);
  }};
}

cpu_meter::~cpu_meter() {
  if (!sampler_.joinable())
    return;
  if (!marked_.exchange(true))
    start_.set_value(false);
  sampler_.join();
}

void cpu_meter::mark_start() {
  if (!marked_.exchange(true))
    start_.set_value(true);
}

std::optional<cpu_figures> cpu_meter::stop(std::uint64_t requests) {
  bool started = marked_.exchange(true);
  if (!started)
    start_.set_value(false);
  sampler_.join();
  if (!started)
    return std::nullopt;
  auto end = take(false);
  cpu_figures figures;
  if (requests > 0)
    figures.us_per_request = (end.self_s - begin_.self_s) * 1e6 / static_cast<double>(requests);
  auto wall = std::chrono::duration<double>(end.at - begin_.at).count();
  figures.sshd_watched = sshd_pid_ > 0 && wall > 0;
  if (figures.sshd_watched)
    figures.sshd_percent = (end.sshd_s - begin_.sshd_s) * 100 / wall;
  return figures;
}

cpu_meter::sample cpu_meter::take(bool self_last) const {
  sample s;
  auto read_self = [&s] {
    rusage self{};
    if (::getrusage(RUSAGE_SELF, &self) == 0)
      s.self_s = seconds(self.ru_utime) + seconds(self.ru_stime);
  };
  if (!self_last)
    read_self();
  s.at = std::chrono::steady_clock::now();
  if (sshd_pid_ > 0)
    s.sshd_s = test::tree_cpu_seconds(sshd_pid_);
  if (self_last)
    read_self();
  return s;
}

} // namespace sshpool::bench
