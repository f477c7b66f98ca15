// Shared reporting of the benchmark programs (see report.hpp).
#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>

#include <sys/utsname.h>
#include <unistd.h>

namespace sshpool::bench {

void command_line::fail(const std::string& what) const {
  std::cerr << program << ": " << what << "\n" << usage_text;
  std::exit(2);
}

void command_line::help() const {
  std::cout << usage_text;
  std::exit(0);
}

std::uint64_t command_line::number(const std::string& flag, const std::string& text,
                                   std::uint64_t min, std::uint64_t max) const {
  std::size_t used = 0;
  std::uint64_t value = 0;
  try {
    value = std::stoull(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value < min || value > max)
    fail(flag + " wants a number in [" + std::to_string(min) + ", " + std::to_string(max) +
         "], not '" + text + "'");
  return value;
}

double command_line::seconds(const std::string& flag, const std::string& text, double max) const {
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0' || !(value > 0) || value > max)
    fail(flag + " wants seconds in (0, " + fixed(max, 0) + "], not '" + text + "'");
  return value;
}

std::ofstream open_append(const std::string& file, const std::string& header) {
  bool fresh = true;
  {
    std::ifstream existing{file, std::ios::ate};
    fresh = !existing || existing.tellg() <= 0;
  }
  std::ofstream out{file, std::ios::app};
  if (fresh)
    out << header << '\n';
  return out;
}

namespace {

std::string shell_quote(const std::string& arg) {
  if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                            "0123456789-_./=:,@+") == std::string::npos)
    return arg;
  std::string quoted = "'";
  for (char c : arg)
    quoted += c == '\'' ? std::string{"'\\''"} : std::string(1, c);
  return quoted + "'";
}

} // namespace

machine_context read_context(int argc, char** argv) {
  machine_context ctx;
  auto now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  ctx.date = date;
  ctx.nproc = sysconf(_SC_NPROCESSORS_ONLN);
  std::ifstream cpuinfo{"/proc/cpuinfo"};
  for (std::string line; std::getline(cpuinfo, line);)
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      ctx.cpu = colon == std::string::npos ? line : line.substr(colon + 2);
      break;
    }
  if (ctx.cpu.empty())
    ctx.cpu = "unknown";
  utsname un{};
  if (uname(&un) == 0)
    ctx.kernel = std::string{un.sysname} + " " + un.release + " " + un.machine;
  for (int i = 0; i < argc; ++i)
    ctx.command += (i > 0 ? " " : "") + shell_quote(argv[i]);
  return ctx;
}

void print_context(const std::string& program, const machine_context& ctx) {
  std::cout << program << " " << ctx.date << "\n"
            << "machine: " << ctx.nproc << " cores, " << ctx.cpu << ", " << ctx.kernel << "\n"
            << "command: " << ctx.command << "\n";
}

double percentile_ms(const std::vector<std::int64_t>& sorted, double p) {
  if (sorted.empty())
    return 0;
  auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return static_cast<double>(sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1]) / 1e6;
}

std::string with_commas(std::uint64_t n) {
  auto digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0)
      out += ',';
    out += digits[i];
  }
  return out;
}

std::string fixed(double x, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, x);
  return buf;
}

std::string pad(const std::string& s, std::size_t width, bool left) {
  if (s.size() >= width)
    return s;
  return left ? s + std::string(width - s.size(), ' ') : std::string(width - s.size(), ' ') + s;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos)
    return s;
  std::string quoted = "\"";
  for (char c : s)
    quoted += c == '"' ? std::string{"\"\""} : std::string(1, c);
  return quoted + "\"";
}

const char* const context_csv_header = "date,cpu,nproc,kernel";

std::string context_csv(const machine_context& ctx) {
  return ctx.date + ',' + csv_field(ctx.cpu) + ',' + std::to_string(ctx.nproc) + ',' +
         csv_field(ctx.kernel);
}

progress_line::progress_line(std::string label, const std::atomic<std::uint64_t>& completed,
                             std::string unit)
    : label_(std::move(label)), completed_(completed), unit_(std::move(unit)),
      started_(std::chrono::steady_clock::now()) {
  if (isatty(STDERR_FILENO) != 0)
    thread_ = std::thread{[this] { loop(); }};
}

progress_line::~progress_line() {
  if (!thread_.joinable())
    return;
  stop_ = true;
  thread_.join();
  std::cerr << '\r' << std::string(78, ' ') << '\r' << std::flush;
}

void progress_line::loop() {
  constexpr auto tick = std::chrono::milliseconds(250);
  std::uint64_t last = 0;
  auto last_at = started_;
  while (!stop_) {
    std::this_thread::sleep_for(tick);
    auto now = std::chrono::steady_clock::now();
    auto done = completed_.load(std::memory_order_relaxed);
    auto rate = static_cast<double>(done - last) /
                std::max(1e-9, std::chrono::duration<double>(now - last_at).count());
    auto line = "  " + label_ + "  " +
                fixed(std::chrono::duration<double>(now - started_).count(), 1) + " s  " +
                with_commas(done) + " " + unit_ + "  " +
                with_commas(static_cast<std::uint64_t>(rate)) + " " + unit_ + "/s";
    std::cerr << '\r' << pad(line, 78, true) << std::flush;
    last = done;
    last_at = now;
  }
}

} // namespace sshpool::bench
