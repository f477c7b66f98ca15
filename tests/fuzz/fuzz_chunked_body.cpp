// libFuzzer target: the gateway's strict chunked decoder (app/net/chunked.cpp), which reads
// chunk extensions and trailer sections. Three oracles:
//  - fed whole or in two pieces split at any point, it gives the same status, body and
//    consumed length (no state is lost across reads);
//  - what it accepts and http-parser (an implementation of its own) also accepts, the two
//    frame identically: same body, and the message ends at the same byte;
//  - it never reads past the end of the body it accepted.
#include <http_parser.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "fuzz_check.hpp"
#include "net/chunked.hpp"

namespace {

using sshpool::fuzz::check;
using sshpool::net::chunked_decoder;

struct result {
  chunked_decoder::status st = chunked_decoder::status::more;
  std::string body;
  std::size_t consumed = 0;
};

result decode(std::string_view wire, std::size_t split) {
  chunked_decoder d{1 << 16, 4096};
  result r;
  std::size_t used = 0;
  r.st = d.feed(wire.substr(0, split), r.body, used);
  r.consumed = used;
  if (r.st == chunked_decoder::status::more && split < wire.size()) {
    r.st = d.feed(wire.substr(split), r.body, used);
    r.consumed += used;
  }
  return r;
}

struct parsed {
  std::string body;
  bool complete = false;
};

int on_body(http_parser* p, const char* at, std::size_t n) {
  static_cast<parsed*>(p->data)->body.append(at, n);
  return 0;
}

int on_complete(http_parser* p) {
  static_cast<parsed*>(p->data)->complete = true;
  http_parser_pause(p, 1);
  return 0;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return 0;
  std::size_t split = data[0] % (size);
  std::string_view wire{reinterpret_cast<const char*>(data) + 1, size - 1};
  auto whole = decode(wire, wire.size());
  auto pieces = decode(wire, split);
  check(whole.st == pieces.st);
  if (whole.st != chunked_decoder::status::done)
    return 0;
  check(whole.body == pieces.body && whole.consumed == pieces.consumed);
  check(whole.consumed <= wire.size());

  const std::string head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::string message = head + std::string{wire.substr(0, whole.consumed)};
  http_parser parser;
  http_parser_init(&parser, HTTP_REQUEST);
  parsed out;
  parser.data = &out;
  http_parser_settings settings;
  std::memset(&settings, 0, sizeof settings);
  settings.on_body = on_body;
  settings.on_message_complete = on_complete;
  std::size_t n = http_parser_execute(&parser, &settings, message.data(), message.size());
  // http-parser refuses some valid framing (an HTAB before a chunk extension); where it
  // accepts, it must end the message at the same byte with the same body.
  auto err = HTTP_PARSER_ERRNO(&parser);
  if (err != HPE_OK && err != HPE_PAUSED)
    return 0;
  check(out.complete && n == message.size() && out.body == whole.body);
  return 0;
}
