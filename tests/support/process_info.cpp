// Reads the test process's thread, fd and memory figures, process trees, CPU times and TCP
// sockets from /proc.
#include "support/process_info.hpp"

#include <dirent.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace sshpool::test {

namespace {

/// Entries of `path` other than "." and ".."; with `skip_own_fd`, not counting the entry for
/// the fd of the listing itself (for /proc/self/fd).
std::size_t count_entries(const char* path, bool skip_own_fd) {
  DIR* dir = ::opendir(path);
  if (dir == nullptr)
    return 0;
  const std::string own_fd = std::to_string(::dirfd(dir));
  std::size_t count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (std::strcmp(entry->d_name, ".") == 0 || std::strcmp(entry->d_name, "..") == 0)
      continue;
    if (skip_own_fd && own_fd == entry->d_name)
      continue;
    ++count;
  }
  ::closedir(dir);
  return count;
}

} // namespace

std::size_t thread_count() {
  return count_entries("/proc/self/task", false);
}

std::size_t open_fd_count() {
  return count_entries("/proc/self/fd", true);
}

std::size_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t size_pages = 0;
  std::size_t resident_pages = 0;
  if (!(statm >> size_pages >> resident_pages))
    return 0;
  return resident_pages * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

std::vector<pid_t> descendants(pid_t root) {
  std::multimap<pid_t, pid_t> children;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const auto name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    std::ifstream in(entry.path() / "stat");
    std::string stat;
    if (!std::getline(in, stat))
      continue; // the process has exited
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    auto close_paren = stat.rfind(')');
    if (close_paren == std::string::npos)
      continue;
    std::istringstream rest(stat.substr(close_paren + 1));
    char state = 0;
    pid_t ppid = 0;
    if (rest >> state >> ppid)
      children.emplace(ppid, static_cast<pid_t>(std::stol(name)));
  }
  std::vector<pid_t> result;
  std::vector<pid_t> todo{root};
  while (!todo.empty()) {
    auto parent = todo.back();
    todo.pop_back();
    auto [first, last] = children.equal_range(parent);
    for (auto i = first; i != last; ++i) {
      result.push_back(i->second);
      todo.push_back(i->second);
    }
  }
  return result;
}

double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat))
    return 0; // the process has exited
  // "pid (comm) state ppid ..." (comm may hold spaces and parentheses); after comm, fields 3
  // to 13 come before utime, stime, cutime and cstime (proc(5)).
  auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos)
    return 0;
  std::istringstream rest(stat.substr(close_paren + 1));
  std::string skipped;
  for (int field = 3; field <= 13; ++field)
    rest >> skipped;
  long long utime = 0;
  long long stime = 0;
  long long cutime = 0;
  long long cstime = 0;
  if (!(rest >> utime >> stime >> cutime >> cstime))
    return 0;
  return static_cast<double>(utime + stime + cutime + cstime) /
         static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double tree_cpu_seconds(pid_t root) {
  double total = cpu_seconds(root);
  for (auto pid : descendants(root))
    total += cpu_seconds(pid);
  return total;
}

std::vector<tcp_socket> tcp_sockets() {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line); // header
  // "sl local_address rem_address st tx_queue:rx_queue ...", addresses "HEXADDR:HEXPORT".
  auto port_of = [](const std::string& address) {
    return static_cast<std::uint16_t>(
        std::stoul(address.substr(address.find(':') + 1), nullptr, 16));
  };
  std::vector<tcp_socket> result;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues;
    if (!(fields >> slot >> local >> remote >> state >> queues))
      continue;
    tcp_socket s;
    s.local_port = port_of(local);
    s.remote_port = port_of(remote);
    s.established = state == "01";
    s.send_queue = std::stoul(queues.substr(0, queues.find(':')), nullptr, 16);
    result.push_back(s);
  }
  return result;
}

} // namespace sshpool::test
