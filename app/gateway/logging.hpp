// Logging of sshpool-demo through spdlog, as text or as one JSON object per line.
//
// Two loggers share the output: "sshpool" (the engine's lines, free text) and "gateway"
// (ours, structured: an event name and key=value fields). Both get the same format so a
// log pipeline sees one stream: text lines "2024-05-01T12:00:00.123Z info [gateway]
// request request_id=... status=200", or JSON objects {"time":...,"level":"info",
// "logger":"gateway","msg":"request","request_id":"...","status":200}, the engine's text
// going into "msg". The gateway's lines are only made through `log_event`, which builds
// the fields in the configured format, so a field (the request id above all) is a field in
// JSON rather than text inside a message.
//
// Both loggers write through one log_writer (log_writer.hpp): a thread of its own writes
// their lines to stderr, and a reader that stalls costs lines, counted, instead of freezing
// every thread that logs.
//
// Nothing secret goes through here: callers never pass header values, key material or
// passphrases.
//
// Thread-safety: `setup_logging` must run before any other thread logs (main() calls it
// first, before the engine exists); `log_event` and `log_enabled` are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/common.h>

#include "gateway/settings.hpp"

namespace sshpool::gateway {

/// One field of a structured log line.
struct log_field {
  std::string_view key;
  std::string value;
  /// Written bare in JSON (numbers, booleans).
  bool bare = false;
};

inline log_field field(std::string_view key, std::string value) {
  return {key, std::move(value), false};
}

inline log_field field(std::string_view key, std::uint64_t value) {
  return {key, std::to_string(value), true};
}

inline log_field field(std::string_view key, int value) {
  return {key, std::to_string(value), true};
}

/// A number with 3 decimals (latencies in ms).
log_field field_fixed3(std::string_view key, double value);

/// Installs the "gateway" and "sshpool" loggers writing to stderr (through a log_writer)
/// in `format`, replacing any registered under those names; both at `level` (error, warn,
/// info, debug, trace).
/// The engine sets the level of "sshpool" again from its own config when it starts.
void setup_logging(const std::string& level, log_format format);

/// Whether the gateway logger writes lines of `level`.
bool log_enabled(spdlog::level::level_enum level);

/// Logs the gateway event `event` with `fields` (in order).
void log_event(spdlog::level::level_enum level, std::string_view event,
               std::initializer_list<log_field> fields);

/// Log lines dropped so far because stderr was not read fast enough.
std::uint64_t log_lines_dropped();

/// Waits, at most `limit`, until the lines logged so far are written to stderr: before the
/// program writes to stderr itself.
void flush_logs(std::chrono::milliseconds limit);

} // namespace sshpool::gateway
