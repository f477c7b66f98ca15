// The mock backend's answers: one function per route (see http_backend.hpp for the list),
// each appending a complete response to the connection's output or its head and a job that
// the loop (server.cpp) carries on: streamed pattern bytes, chunks, a delayed answer or the
// /api/chat token stream. JSON is written by hand (net/text.hpp): the backend has no JSON
// library, and its bodies are small and fixed in shape.
//
// Thread-safety: the loop thread only.
#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>
#include <optional>

#include "backend/server.hpp"
#include "net/text.hpp"
#include "sshpool/ssh/http_framing.hpp"
#include "sshpool/text.hpp"

namespace sshpool::demo::detail {

namespace {

using net::append_json_string;
using net::append_number;

/// Longest accepted /slow delay.
constexpr std::uint64_t max_slow_ms = 24ULL * 3600 * 1000;

/// Words of the /api/chat answer, cycled.
constexpr std::array<std::string_view, 16> chat_words = {
    "Hello", "from",    "the",   "demo",  "model",   "running", "behind", "an",
    "SSH",   "tunnel.", "Every", "token", "arrives", "on",      "its",    "own."};

/// The body pattern: byte i is 'a' + i % 26; this string holds it from i = 0 with 26
/// bytes of slack so any 64 KiB window can be copied from offset i % 26.
const std::string& pattern_block() {
  static const std::string block = [] {
    std::string s((std::size_t{64} << 10) + 26, '\0');
    for (std::size_t i = 0; i < s.size(); ++i)
      s[i] = static_cast<char>('a' + i % 26);
    return s;
  }();
  return block;
}

/// Appends `data` as one chunk, or verbatim when the body is not chunked.
void append_chunk(std::string& out, std::string_view data, bool chunked) {
  if (!chunked) {
    out += data;
    return;
  }
  append_number(out, data.size(), 16);
  out += "\r\n";
  out += data;
  out += "\r\n";
}

/// The current UTC time as Ollama prints it, e.g. 2024-05-01T12:00:00.123456Z.
std::string utc_timestamp() {
  auto now = std::chrono::system_clock::now();
  auto t = std::chrono::system_clock::to_time_t(now);
  auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
      1000000;
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[40];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%06lldZ", static_cast<long long>(micros));
  return buf;
}

/// The path part of a request target (origin form, absolute form or anything else).
std::string_view path_of(std::string_view target) {
  if (!target.empty() && target.front() == '/')
    return target.substr(0, target.find_first_of("?#"));
  http_parser_url url;
  http_parser_url_init(&url);
  if (http_parser_parse_url(target.data(), target.size(), 0, &url) == 0 &&
      (url.field_set & (1 << UF_PATH)) != 0)
    return target.substr(url.field_data[UF_PATH].off, url.field_data[UF_PATH].len);
  return target;
}

/// Whether a chat request body asks for a single answer (`"stream": false`).
bool stream_disabled(std::string_view body) {
  auto skip_space = [&](std::size_t i) {
    while (i < body.size() &&
           (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
      ++i;
    return i;
  };
  for (auto pos = body.find("\"stream\""); pos != std::string_view::npos;
       pos = body.find("\"stream\"", pos + 1)) {
    std::size_t i = skip_space(pos + 8);
    if (i < body.size() && body[i] == ':') {
      i = skip_space(i + 1);
      if (body.compare(i, 5, "false") == 0)
        return true;
    }
  }
  return false;
}

/// "CODE Reason\n", the small text body of status answers.
std::string status_text(int status) {
  return std::to_string(status) + " " + net::reason_phrase(status) + "\n";
}

std::string_view chat_word(std::size_t i) {
  return chat_words[i % chat_words.size()];
}

/// The start of a chat object up to its message content: `{"model":...,"content":`.
std::string chat_object_start() {
  return R"({"model":"demo-llm","created_at":")" + utc_timestamp() +
         R"(","message":{"role":"assistant","content":)";
}

std::string token_line(std::string_view word) {
  std::string line = chat_object_start();
  append_json_string(line, std::string(word) + " ");
  line += "},\"done\":false}\n";
  return line;
}

} // namespace

void append_pattern(std::string& out, std::uint64_t offset, std::size_t n) {
  const std::string& block = pattern_block();
  while (n > 0) {
    auto start = static_cast<std::size_t>(offset % 26);
    std::size_t take = std::min(n, block.size() - start);
    out.append(block, start, take);
    n -= take;
    offset += take;
  }
}

// -- framing --------------------------------------------------------------------------------

void server::begin_head(std::string& out, int status) const {
  out += "HTTP/1.1 ";
  append_number(out, static_cast<std::uint64_t>(status));
  out += ' ';
  out += net::reason_phrase(status);
  out += "\r\nX-Backend: ";
  out += opts_.name;
  out += "\r\n";
}

void server::end_head(std::string& out, connection& c, const request& r, bool force_close) {
  if (force_close || !r.keep_alive) {
    out += "Connection: close\r\n";
    c.close_after = true;
    c.input_done = true;
  } else if (r.http10) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
}

void server::write_simple(std::string& out, connection& c, const request& r, int status,
                          std::string_view type, std::string_view body, bool force_close) {
  begin_head(out, status);
  bool bodyless = has_no_body(false, status);
  if (!bodyless) {
    out += "Content-Type: ";
    out += type;
    out += "\r\nContent-Length: ";
    append_number(out, body.size());
    out += "\r\n";
  }
  end_head(out, c, r, force_close);
  if (!has_no_body(r.method == "HEAD", status))
    out += body;
}

void server::bad_request(connection& c, const request& r) {
  write_simple(c.out, c, r, 400, "text/plain", "bad request\n");
}

// -- routes ---------------------------------------------------------------------------------

void server::start(connection& c, const request& r) {
  if (r.reject != 0) {
    write_simple(c.out, c, r, r.reject, "text/plain", status_text(r.reject), true);
    return;
  }
  std::string_view path = path_of(r.target);
  auto arg = [&](std::string_view prefix, std::string_view& rest) {
    if (path.substr(0, prefix.size()) != prefix)
      return false;
    rest = path.substr(prefix.size());
    return true;
  };
  std::string_view rest;
  if (path == "/echo")
    echo(c, r);
  else if (path == "/info")
    info(c, r);
  else if (arg("/bytes/", rest))
    bytes(c, r, rest, false);
  else if (arg("/close/", rest))
    bytes(c, r, rest, true);
  else if (arg("/chunked/", rest))
    chunked(c, r, rest);
  else if (arg("/status/", rest))
    status(c, r, rest);
  else if (arg("/slow/", rest))
    slow(c, r, rest);
  else if (path == "/hang")
    c.active.kind = job_kind::hang;
  else if (path == "/api/tags" && (r.method == "GET" || r.method == "HEAD"))
    tags(c, r);
  else if (path == "/api/chat" && r.method == "POST")
    chat(c, r);
  else
    not_found(c, r, path);
}

void server::echo(connection& c, const request& r) {
  std::string& out = c.out;
  begin_head(out, 200);
  const std::string* type = r.header("Content-Type");
  out += "Content-Type: ";
  out += type != nullptr ? std::string_view(*type) : "application/octet-stream";
  out += "\r\nX-Method: ";
  out += r.method;
  out += "\r\nX-Path: ";
  out += r.target;
  out += "\r\n";
  if (const std::string* id = r.header("X-Request-Id")) {
    out += "X-Request-Id: ";
    out += *id;
    out += "\r\n";
  }
  out += "Content-Length: ";
  append_number(out, r.body.size());
  out += "\r\n";
  end_head(out, c, r, false);
  if (r.method != "HEAD")
    out += r.body;
}

void server::info(connection& c, const request& r) {
  // Repeated header names are merged (values joined with ", ") to keep the object valid.
  std::vector<std::pair<std::string, std::string>> merged;
  for (const auto& header : r.headers) {
    auto it = std::find_if(merged.begin(), merged.end(),
                           [&](const auto& m) { return text::iequals(m.first, header.first); });
    if (it == merged.end())
      merged.push_back(header);
    else
      it->second += ", " + header.second;
  }
  std::string body = "{\"backend\":";
  append_json_string(body, opts_.name);
  body += ",\"method\":";
  append_json_string(body, r.method);
  body += ",\"path\":";
  append_json_string(body, r.target);
  body += ",\"body_bytes\":";
  append_number(body, r.body.size());
  body += ",\"headers\":{";
  for (std::size_t i = 0; i < merged.size(); ++i) {
    if (i > 0)
      body += ',';
    append_json_string(body, merged[i].first);
    body += ':';
    append_json_string(body, merged[i].second);
  }
  body += "}}";
  write_simple(c.out, c, r, 200, "application/json", body);
}

void server::bytes(connection& c, const request& r, std::string_view arg, bool close_delimited) {
  auto n = net::parse_unsigned(arg);
  if (!n) {
    bad_request(c, r);
    return;
  }
  begin_head(c.out, 200);
  c.out += "Content-Type: application/octet-stream\r\n";
  if (!close_delimited) {
    c.out += "Content-Length: ";
    append_number(c.out, *n);
    c.out += "\r\n";
  }
  end_head(c.out, c, r, close_delimited);
  if (r.method != "HEAD" && *n > 0) {
    c.active.kind = job_kind::pattern;
    c.active.left = *n;
  }
}

void server::stream_head(connection& c, const request& r, std::string_view type) {
  begin_head(c.out, 200);
  c.out += "Content-Type: ";
  c.out += type;
  c.out += "\r\n";
  if (!r.http10)
    c.out += "Transfer-Encoding: chunked\r\n";
  end_head(c.out, c, r, r.http10);
  c.active.chunked = !r.http10;
}

void server::chunked(connection& c, const request& r, std::string_view arg) {
  auto slash = arg.find('/');
  auto count = net::parse_unsigned(arg.substr(0, slash));
  auto size =
      slash == std::string_view::npos ? std::nullopt : net::parse_unsigned(arg.substr(slash + 1));
  if (!count || !size) {
    bad_request(c, r);
    return;
  }
  stream_head(c, r, "application/octet-stream");
  if (r.method != "HEAD") {
    c.active.kind = job_kind::chunks;
    c.active.chunk_size = *size;
    c.active.chunks_left = *size > 0 ? *count : 0; // an empty chunk would end the body
  }
}

void server::status(connection& c, const request& r, std::string_view arg) {
  auto code = net::parse_unsigned(arg);
  if (!code || *code < 200 || *code > 599) {
    bad_request(c, r);
    return;
  }
  int s = static_cast<int>(*code);
  write_simple(c.out, c, r, s, "text/plain", status_text(s));
}

void server::slow(connection& c, const request& r, std::string_view arg) {
  auto ms = net::parse_unsigned(arg);
  if (!ms || *ms > max_slow_ms) {
    bad_request(c, r);
    return;
  }
  c.active.kind = job_kind::delayed;
  write_simple(c.active.deferred, c, r, 200, "text/plain", "slow");
  arm_timer(c, steady::now() + std::chrono::milliseconds(*ms));
}

void server::tags(connection& c, const request& r) {
  static constexpr std::string_view body =
      R"({"models":[{"name":"demo-llm:latest","model":"demo-llm:latest",)"
      R"("modified_at":"2024-01-01T00:00:00Z","size":1048576,)"
      R"("digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000",)"
      R"("details":{"format":"gguf","family":"demo","parameter_size":"1M",)"
      R"("quantization_level":"Q4_0"}}]})";
  write_simple(c.out, c, r, 200, "application/json", body);
}

void server::not_found(connection& c, const request& r, std::string_view path) {
  std::string body = "{\"error\":\"not found\",\"path\":";
  append_json_string(body, path);
  body += "}";
  write_simple(c.out, c, r, 404, "application/json", body);
}

// -- /api/chat ------------------------------------------------------------------------------

std::string server::chat_summary(steady::time_point started) const {
  std::string s = R"("done":true,"done_reason":"stop","total_duration":)";
  append_number(
      s,
      static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - started).count()));
  s += ",\"eval_count\":";
  append_number(s, opts_.tokens);
  s += "}";
  return s;
}

void server::chat(connection& c, const request& r) {
  auto started = steady::now();
  if (stream_disabled(r.body)) {
    std::string content;
    for (std::size_t i = 0; i < opts_.tokens; ++i)
      content.append(chat_word(i)).append(" ");
    std::string body = chat_object_start();
    append_json_string(body, content);
    body += "}," + chat_summary(started);
    write_simple(c.out, c, r, 200, "application/json", body);
    return;
  }
  stream_head(c, r, "application/x-ndjson");
  c.active.kind = job_kind::chat;
  c.active.started = started;
  if (opts_.tokens == 0)
    emit_token(c);
  else
    arm_timer(c, started + opts_.token_delay);
}

void server::emit_token(connection& c) {
  job& j = c.active;
  if (j.tokens_sent < opts_.tokens) {
    append_chunk(c.out, token_line(chat_word(j.tokens_sent)), j.chunked);
    ++j.tokens_sent;
  }
  if (j.tokens_sent < opts_.tokens) {
    arm_timer(c, j.started + opts_.token_delay * static_cast<long>(j.tokens_sent + 1));
    return;
  }
  append_chunk(c.out,
               "{\"model\":\"demo-llm\",\"created_at\":\"" + utc_timestamp() + "\"," +
                   chat_summary(j.started) + "\n",
               j.chunked);
  if (j.chunked)
    c.out += "0\r\n\r\n";
  j = job{};
}

} // namespace sshpool::demo::detail
