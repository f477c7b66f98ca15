// The gateway's spdlog setup: a text pattern or a JSON formatter, and structured events.
#include "gateway/logging.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include "gateway/log_writer.hpp"
#include "net/text.hpp"

namespace sshpool::gateway {

namespace {

/// The configured format (set once by setup_logging, before other threads log).
std::atomic<bool> json_output{false};

/// The gateway logger (set once by setup_logging).
std::shared_ptr<spdlog::logger>& gateway_logger() {
  static std::shared_ptr<spdlog::logger> instance;
  return instance;
}

/// Where both loggers' lines go (set once by setup_logging).
std::shared_ptr<log_writer>& output() {
  static std::shared_ptr<log_writer> instance;
  return instance;
}

/// Appends a text-format value: bare if it is a plain UTF-8 token, else quoted and escaped
/// (bytes that are not UTF-8 as U+FFFD, as in JSON).
void append_text_value(std::string& out, std::string_view v) {
  bool plain = !v.empty();
  for (unsigned char c : v)
    if (c <= 0x20 || c == '"' || c == '=' || c == '\\' || c == 0x7f)
      plain = false;
  if (plain && net::valid_utf8(v)) {
    out += v;
    return;
  }
  out += '"';
  net::append_json_escaped(out, v);
  out += '"';
}

/// One JSON object per line. The gateway's payload is already a list of JSON members
/// (`raw_members`); the engine's is free text, written as "msg".
class json_formatter final : public spdlog::formatter {
public:
  explicit json_formatter(bool raw_members) : raw_members_(raw_members) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line = "{\"time\":\"";
    auto t = std::chrono::system_clock::to_time_t(msg.time);
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count() %
        1000;
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char stamp[40];
    std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(stamp + n, sizeof stamp - n, ".%03dZ", static_cast<int>(ms));
    line += stamp;
    line += "\",\"level\":\"";
    auto level = spdlog::level::to_string_view(msg.level);
    line.append(level.data(), level.size());
    line += "\",\"logger\":\"";
    net::append_json_escaped(line,
                             std::string_view{msg.logger_name.data(), msg.logger_name.size()});
    line += "\",";
    std::string_view payload{msg.payload.data(), msg.payload.size()};
    if (raw_members_) {
      line += payload;
    } else {
      line += "\"msg\":\"";
      net::append_json_escaped(line, payload);
      line += '"';
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_formatter>(raw_members_);
  }

private:
  bool raw_members_;
};

/// A sink that formats each line on the thread that logs and hands it to the log_writer.
class writer_sink final : public spdlog::sinks::base_sink<std::mutex> {
public:
  explicit writer_sink(std::shared_ptr<log_writer> writer) : writer_(std::move(writer)) {}

protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    writer_->append({line.data(), line.size()});
  }

  // Only on an explicit flush: what was logged is written, within a bound.
  void flush_() override { writer_->drain(std::chrono::seconds(2)); }

private:
  std::shared_ptr<log_writer> writer_;
};

std::unique_ptr<spdlog::formatter> make_formatter(log_format format, bool raw_members) {
  if (format == log_format::json)
    return std::make_unique<json_formatter>(raw_members);
  return std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%eZ %l [%n] %v",
                                                     spdlog::pattern_time_type::utc);
}

std::shared_ptr<spdlog::logger> make_logger(const std::string& name, log_format format,
                                            bool raw_members) {
  auto sink = std::make_shared<writer_sink>(output());
  sink->set_formatter(make_formatter(format, raw_members));
  auto logger = std::make_shared<spdlog::logger>(name, std::move(sink));
  spdlog::drop(name);
  spdlog::register_logger(logger);
  return logger;
}

/// A gateway event's payload: JSON members, or the event and its fields as text.
std::string event_payload(std::string_view event, std::initializer_list<log_field> fields) {
  std::string line;
  if (json_output) {
    line = "\"msg\":\"";
    net::append_json_escaped(line, event);
    line += '"';
    for (auto& f : fields) {
      line += ",\"";
      net::append_json_escaped(line, f.key);
      line += "\":";
      if (f.bare) {
        line += f.value;
      } else {
        line += '"';
        net::append_json_escaped(line, f.value);
        line += '"';
      }
    }
  } else {
    line = event;
    for (auto& f : fields) {
      line += ' ';
      line += f.key;
      line += '=';
      append_text_value(line, f.value);
    }
  }
  return line;
}

/// The writer's notice of dropped lines: a gateway warning, formatted like the others.
log_writer::notice_fn drop_notice(log_format format) {
  std::shared_ptr<spdlog::formatter> formatter = make_formatter(format, true);
  return [formatter](std::uint64_t lines) {
    std::string payload =
        event_payload("log_lines_dropped",
                      {field("lines", lines), field("why", "the log output was not read fast "
                                                           "enough (sshpool_gateway_log_lines_"
                                                           "dropped_total counts them)")});
    spdlog::details::log_msg msg{"gateway", spdlog::level::warn, payload};
    spdlog::memory_buf_t line;
    formatter->format(msg, line);
    return std::string{line.data(), line.size()};
  };
}

} // namespace

log_field field_fixed3(std::string_view key, double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", value);
  return {key, buf, true};
}

void setup_logging(const std::string& level, log_format format) {
  json_output = format == log_format::json;
  output() = std::make_shared<log_writer>(STDERR_FILENO, drop_notice(format));
  auto lvl = spdlog::level::from_str(level);
  auto engine = make_logger("sshpool", format, false);
  engine->set_level(lvl);
  auto gateway = make_logger("gateway", format, true);
  gateway->set_level(lvl);
  gateway_logger() = std::move(gateway);
}

bool log_enabled(spdlog::level::level_enum level) {
  auto& logger = gateway_logger();
  return logger && logger->should_log(level);
}

void log_event(spdlog::level::level_enum level, std::string_view event,
               std::initializer_list<log_field> fields) {
  auto& logger = gateway_logger();
  if (!logger || !logger->should_log(level))
    return;
  logger->log(level, "{}", event_payload(event, fields));
}

std::uint64_t log_lines_dropped() {
  auto& writer = output();
  return writer ? writer->dropped() : 0;
}

void flush_logs(std::chrono::milliseconds limit) {
  if (auto& writer = output())
    writer->drain(limit);
}

} // namespace sshpool::gateway
