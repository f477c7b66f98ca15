// The strict chunked decoder of the gateway's front end: RFC 9112 framing accepted, in one
// piece or byte by byte; every leniency that would frame differently from other peers
// refused; limits on the body and the trailer section.
#include <catch2/catch.hpp>

#include <string>

#include "net/chunked.hpp"

using sshpool::net::chunked_decoder;
using status = chunked_decoder::status;

namespace {

struct outcome {
  status st = status::more;
  std::string body;
  std::size_t consumed = 0;
  std::string why;
};

/// Decodes `wire` in one call, or one byte per call (`bytewise`).
outcome decode(const std::string& wire, bool bytewise = false, std::size_t max_body = 1 << 20,
               std::size_t max_trailer = 1024) {
  chunked_decoder d{max_body, max_trailer};
  outcome out;
  if (!bytewise) {
    out.st = d.feed(wire, out.body, out.consumed);
  } else {
    for (std::size_t i = 0; i < wire.size() && out.st == status::more; ++i) {
      std::size_t used = 0;
      out.st = d.feed(std::string_view{wire}.substr(i, 1), out.body, used);
      out.consumed += used;
    }
  }
  out.why = d.why();
  return out;
}

} // namespace

TEST_CASE("chunked: valid bodies decode, and decoding stops at the end of the body", "[chunked]") {
  bool bytewise = GENERATE(false, true);
  auto res =
      decode("3\r\nabc\r\nA;name=\"v a\";x\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT", bytewise);
  CHECK(res.st == status::done);
  CHECK(res.body == "abc0123456789");
  std::string wire = "3\r\nabc\r\n0\r\n\r\n";
  auto exact = decode(wire + "GET / HTTP/1.1\r\n", bytewise);
  CHECK(exact.st == status::done);
  CHECK(exact.consumed == wire.size());
  CHECK(decode("3 ;e\r\nabc\r\n000\r\n\r\n", bytewise).st == status::done); // BWS before ';'
  CHECK(decode("3\r\nabc\r\n0\r\n", bytewise).st == status::more);          // trailer pending
}

TEST_CASE("chunked: framing that other peers read differently is refused", "[chunked]") {
  bool bytewise = GENERATE(false, true);
  for (const char* wire : {
           "3;ext\nabc\r\n0\r\n\r\n",    // a bare LF ending the extension
           "3\nabc\r\n0\r\n\r\n",        // a bare LF ending the size line
           "3;a\rb\r\nabc\r\n0\r\n\r\n", // a bare CR inside the extension
           "3\r\nabc\n0\r\n\r\n",        // chunk data not followed by CRLF
           "3\r\nabcd\r\n0\r\n\r\n",     // more data than the size
           "\r\nabc\r\n0\r\n\r\n",       // no size
           "-3\r\nabc\r\n0\r\n\r\n",     // a sign
           "0x3\r\nabc\r\n0\r\n\r\n",    // a prefix
           "3 4\r\nabcd\r\n0\r\n\r\n",   // a space inside the size
           "11111111111111111\r\n",      // 17 hex digits
           "0\r\nX-T: 1\n\r\n",          // a trailer line ended by a bare LF
           "0\r\nno colon\r\n\r\n",      // a trailer line that is not a field
           "0\r\n folded: 1\r\n\r\n",    // obs-fold in the trailer section
           "0\r\n: no name\r\n\r\n",     // a field without a name
       }) {
    INFO(wire);
    auto res = decode(wire, bytewise);
    CHECK(res.st == status::bad);
    CHECK_FALSE(res.why.empty());
  }
  std::string nul = std::string{"0\r\nX-T: a"} + '\0' + "b\r\n\r\n";
  CHECK(decode(nul, bytewise).st == status::bad);
}

TEST_CASE("chunked: the body and the trailer section are bounded", "[chunked]") {
  bool bytewise = GENERATE(false, true);
  CHECK(decode("5\r\nabcde\r\n0\r\n\r\n", bytewise, 5).st == status::done);
  CHECK(decode("3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", bytewise, 5).st == status::too_large);
  CHECK(decode("FFFFFFFFFFFFFFFF\r\n", bytewise, 5).st == status::too_large);
  std::string trailer = "0\r\nX-T: " + std::string(100, 'x') + "\r\n\r\n";
  CHECK(decode(trailer, bytewise, 5, 200).st == status::done);
  auto big = decode(trailer, bytewise, 5, 50);
  CHECK(big.st == status::too_large);
  CHECK(big.why.find("trailer") != std::string::npos);
}
