// libFuzzer target: sshpool::ssh::response_parser.
//
// SSH channel reads split a response anywhere, so the parser's outcome must not depend on
// piece boundaries. Each input is therefore parsed twice: by the parser under test, fed in
// pieces whose sizes the input chooses (optionally through a streaming body sink), and by a
// reference parser fed the same bytes in one piece into `result().body`; both must agree.
// The parser under test is then reset and reused for a second response (the bytes it left
// unconsumed after a complete response, as with pipelining, or the whole input again after
// a failure), which must again agree with a fresh parser. Invariants of the API contract are
// checked after every call. A violation calls __builtin_trap(), which libFuzzer reports.
//
// Input: an 8-byte control prefix, then the response bytes.
//   [0] flags: 1 first response answers HEAD, 2 second answers HEAD, 4 body sink,
//       8 call finish() (the peer's EOF) after the last piece, 16 the sink throws
//   [1] max_header_bytes: < 128 the default, else 1 + 4 * (value - 128)
//   [2] max_body_bytes of the first response, [3] of the second:
//       < 128 the default, else value - 128
//   [4..7] piece sizes, used in turn (0: all remaining bytes)
#include "fuzz_check.hpp"
#include "sshpool/ssh/http.hpp"
#include "sshpool/text.hpp"

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace {

using namespace sshpool;
using namespace sshpool::fuzz;
using namespace sshpool::ssh;
using sshpool::text::iequals;

constexpr std::size_t prefix_size = 8;

struct options {
  bool head[2] = {false, false};
  bool sink = false;
  bool finish = false;
  bool sink_throws = false;
  response_limits limits[2];
  unsigned char pieces[4] = {};
};

options read_options(const std::uint8_t* p) {
  options o;
  o.head[0] = (p[0] & 1) != 0;
  o.head[1] = (p[0] & 2) != 0;
  o.sink = (p[0] & 4) != 0;
  o.finish = (p[0] & 8) != 0;
  o.sink_throws = o.sink && (p[0] & 16) != 0;
  for (int i = 0; i < 2; ++i) {
    if (p[1] >= 128)
      o.limits[i].max_header_bytes = 1 + std::size_t{4} * (p[1] - 128);
    if (p[2 + i] >= 128)
      o.limits[i].max_body_bytes = p[2 + i] - 128;
  }
  for (int i = 0; i < 4; ++i)
    o.pieces[i] = p[4 + i];
  return o;
}

/// What a parser made of a response, in the terms the engine uses.
struct outcome {
  std::size_t consumed = 0;
  bool complete = false;
  bool failed = false;
  errc code = errc::none;
  bool head_complete = false;
  bool keep_alive = false;
  int status = 0;
  std::string reason;
  header_list headers;
  std::string body;

  /// Whether two runs agree: on a failure only the code is meaningful (how far the parser
  /// got before it failed depends on where the callbacks ran).
  bool same_as(const outcome& o) const {
    if (failed || o.failed)
      return failed == o.failed && code == o.code;
    return consumed == o.consumed && complete == o.complete && head_complete == o.head_complete &&
           keep_alive == o.keep_alive && status == o.status && reason == o.reason &&
           headers == o.headers && body == o.body;
  }
};

/// The parser under test with the sink it may stream into.
struct subject {
  response_parser parser;
  bool sink = false;
  bool throws = false;
  std::string streamed;

  explicit subject(response_limits limits) : parser(limits) {}

  void use_sink(bool throws_now) {
    sink = true;
    throws = throws_now;
    parser.set_body_sink([this](std::string_view piece) {
      check(!piece.empty());
      if (throws)
        throw std::runtime_error("sink failure");
      streamed.append(piece.data(), piece.size());
    });
  }

  const std::string& body() { return sink ? streamed : parser.result().body; }

  outcome snapshot(std::size_t consumed) {
    outcome o;
    o.consumed = consumed;
    o.complete = parser.complete();
    o.failed = parser.failed();
    o.code = o.failed ? parser.failure().code() : errc::none;
    o.head_complete = parser.head_complete();
    o.keep_alive = parser.keep_alive();
    auto& res = parser.result();
    o.status = res.status;
    o.reason = res.reason;
    o.headers = res.headers;
    o.body = body();
    return o;
  }
};

/// Invariants of any state the parser can be in; checked after every call, so it copies
/// nothing.
void check_state(subject& s, const options& opt, int which, bool thrown) {
  auto& p = s.parser;
  auto& res = p.result();
  check(!(p.complete() && p.failed()));
  check(!p.keep_alive() || p.complete());
  // With a sink, the body goes there only.
  check(!s.sink || res.body.empty());
  const std::size_t body = s.body().size();
  check(body <= opt.limits[which].max_body_bytes);
  if (p.failed()) {
    auto code = p.failure().code();
    check(code == errc::bad_response || code == errc::response_too_large ||
          code == errc::upstream_closed || (thrown && code == errc::internal));
    return;
  }
  check(!thrown);
  if (!p.head_complete())
    return;
  // A final status: interim 1xx responses are skipped and 101 is an error.
  check(res.status >= 200 && res.status <= 999);
  if (!p.complete())
    return;
  bool bodyless = opt.head[which] || res.status == 204 || res.status == 304;
  if (bodyless)
    check(body == 0);
  // A complete response with a Content-Length (and no other framing) has exactly that body.
  const std::string* length = nullptr;
  int lengths = 0;
  bool transfer_encoding = false;
  for (auto& [name, value] : res.headers) {
    if (iequals(name, "content-length")) {
      length = &value;
      ++lengths;
    }
    transfer_encoding = transfer_encoding || iequals(name, "transfer-encoding");
  }
  if (bodyless || lengths != 1 || transfer_encoding)
    return;
  std::size_t expected = 0;
  for (char c : *length) {
    if (c < '0' || c > '9' || expected > (SIZE_MAX - 9) / 10)
      return;
    expected = expected * 10 + static_cast<std::size_t>(c - '0');
  }
  check(body == expected);
}

/// Feeds `bytes` to the subject in the input's pieces (one piece when `pieces` is null),
/// checking the contract of every call; returns the outcome and how many bytes were used.
outcome run(subject& s, std::string_view bytes, const options& opt, int which,
            const unsigned char* pieces, std::size_t& next_piece) {
  std::size_t used = 0;
  bool thrown = false;
  while (used < bytes.size() && !thrown) {
    std::size_t n = bytes.size() - used;
    if (pieces != nullptr) {
      unsigned char choice = pieces[next_piece++ % 4];
      if (choice != 0 && choice < n)
        n = choice;
    }
    std::size_t got = 0;
    try {
      got = s.parser.feed(bytes.data() + used, n);
    } catch (const std::runtime_error&) {
      // Only the sink throws; the parser must then be failed with `internal`.
      check(s.throws);
      check(s.parser.failed() && s.parser.failure().code() == errc::internal);
      thrown = true;
    }
    check(got <= n);
    check(s.parser.received_any());
    used += got;
    // Only a finished response stops short of the given bytes.
    check(got == n || s.parser.complete() || s.parser.failed());
    check_state(s, opt, which, thrown);
    if (got < n)
      break;
  }
  if (opt.finish && !thrown) {
    bool was_done = s.parser.complete() || s.parser.failed();
    auto before = s.snapshot(used);
    s.parser.finish();
    check(s.parser.complete() || s.parser.failed());
    if (was_done)
      check(s.snapshot(used).same_as(before));
  }
  check_state(s, opt, which, thrown);
  auto result = s.snapshot(used);
  // Once finished, more bytes and another EOF change nothing.
  if (result.complete || result.failed) {
    static constexpr char more[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    check(s.parser.feed(more, sizeof more - 1) == 0);
    s.parser.finish();
    check(s.snapshot(used).same_as(result));
  }
  return result;
}

/// The reference: a fresh parser, one piece, no sink.
outcome reference(std::string_view bytes, const options& opt, int which) {
  subject ref{opt.limits[which]};
  ref.parser.reset(opt.head[which]);
  std::size_t unused = 0;
  return run(ref, bytes, opt, which, nullptr, unused);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < prefix_size)
    return 0;
  const options opt = read_options(data);
  const std::string_view input{reinterpret_cast<const char*>(data) + prefix_size,
                               size - prefix_size};

  subject s{opt.limits[0]};
  if (opt.sink)
    s.use_sink(opt.sink_throws);
  s.parser.reset(opt.head[0]);
  std::size_t next_piece = 0;
  auto first = run(s, input, opt, 0, opt.pieces, next_piece);
  if (!opt.sink_throws)
    check(first.same_as(reference(input, opt, 0)));

  // Reuse: a second response on the same parser, with a fresh non-throwing sink state.
  std::string_view second = first.complete ? input.substr(first.consumed) : input;
  if (opt.sink)
    s.use_sink(false);
  s.streamed.clear();
  s.parser.set_max_body_bytes(opt.limits[1].max_body_bytes);
  s.parser.reset(opt.head[1]);
  check(!s.parser.head_complete() && !s.parser.complete() && !s.parser.failed() &&
        !s.parser.received_any() && !s.parser.keep_alive());
  check(s.parser.result().status == 0 && s.parser.result().headers.empty() &&
        s.parser.result().body.empty() && s.parser.result().reason.empty());
  if (second.empty())
    return 0;
  auto again = run(s, second, opt, 1, opt.pieces, next_piece);
  check(again.same_as(reference(second, opt, 1)));
  return 0;
}
