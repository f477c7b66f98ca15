// The front end's text helpers where hostile bytes meet JSON: which byte strings are UTF-8
// (the only text a JSON document holds), and JSON escaping that stays valid whatever the
// input, since request paths and header values reach the JSON logs.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "net/text.hpp"

using sshpool::net::append_json_string;
using sshpool::net::valid_utf8;

TEST_CASE("valid_utf8 accepts well-formed UTF-8 only", "[net][text]") {
  for (const std::string& ok :
       std::vector<std::string>{"", "plain", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                "\xed\x9f\xbf", "\xf4\x8f\xbf\xbf", std::string{"\0", 1}}) {
    INFO(ok.size());
    CHECK(valid_utf8(ok));
  }
  for (const std::string& bad : std::vector<std::string>{
           "\x80",             // a lone continuation byte
           "\xc3",             // truncated
           "\xe2\x82",         // truncated
           "\xc0\xaf",         // overlong '/'
           "\xe0\x80\xaf",     // overlong '/'
           "\xf0\x80\x80\xaf", // overlong '/'
           "\xed\xa0\x80",     // a surrogate (U+D800)
           "\xf4\x90\x80\x80", // past U+10FFFF
           "\xf5\x80\x80\x80",
           "\xff",
           "\xfe",
           "a\xc3(b",
       }) {
    INFO(bad.size());
    CHECK_FALSE(valid_utf8(bad));
  }
}

TEST_CASE("JSON escaping makes a valid JSON string of any bytes: UTF-8 kept, control "
          "characters escaped, every other byte U+FFFD",
          "[net][text]") {
  auto as_json = [](const std::string& s) {
    std::string out;
    append_json_string(out, s);
    return out;
  };
  CHECK(as_json("a\"b\\c\n\r\t\x01\x7f") == R"("a\"b\\c\n\r\t\u0001\u007f")");
  CHECK(as_json("caf\xc3\xa9 \xf0\x9f\x98\x80") == "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
  CHECK(as_json("/\xff\xc0\xafok\xe2\x82") == R"("/\ufffd\ufffd\ufffdok\ufffd\ufffd")");
  // Every byte value, alone and after each lead byte, parses back as strict JSON.
  for (int a = 0; a < 256; ++a)
    for (int b : {0x00, 0x41, 0x80, 0x9f, 0xa0, 0xbf, 0xc0, 0xff}) {
      const std::string in{static_cast<char>(a), static_cast<char>(b)};
      auto parsed = nlohmann::json::parse(as_json(in), nullptr, false);
      INFO(a << " " << b);
      REQUIRE(parsed.is_string());
      if (valid_utf8(in))
        CHECK(parsed.get<std::string>() == in);
    }
}
