// Unit tests of the request serialiser of the HTTP/1.1 framing: byte-exact output and
// every rejection that keeps request smuggling out of the user's service.
#include "sshpool/ssh/http.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <string_view>

#include "support/requests.hpp"

using namespace sshpool;
using namespace sshpool::ssh;
using sshpool::test::build_request;

namespace {

using namespace std::string_literals;

constexpr std::string_view default_host = "svc.local:8080";

/// Serialises a request that must be valid; returns the wire form.
std::string serialize_ok(const request& req, request_info* info = nullptr,
                         std::string_view host = default_host) {
  std::string out;
  auto res = serialize_request(req, host, out);
  INFO((res ? "" : res.error().to_string()));
  REQUIRE(res);
  if (info != nullptr)
    *info = *res;
  return out;
}

/// Checks that `req` is rejected with invalid_request and a message holding `fragment`,
/// without touching the output and without quoting the secret header value.
void check_rejected(const request& req, const std::string& fragment,
                    std::string_view host = default_host) {
  std::string out = "previous bytes";
  auto res = serialize_request(req, host, out);
  REQUIRE_FALSE(res);
  INFO(res.error().message());
  CHECK(res.error().code() == errc::invalid_request);
  CHECK(out == "previous bytes");
  CHECK_THAT(res.error().message(), Catch::Contains(fragment));
  CHECK_THAT(res.error().message(), !Catch::Contains("secret-token"));
}

} // namespace

// -- serialize_request: accepted requests --------------------------------------------------

TEST_CASE("GET is serialised byte-exact with the default Host", "[http]") {
  request_info info;
  auto wire = serialize_ok(build_request("GET", "/api/chat?x=1", {{"Accept", "*/*"}}), &info);
  CHECK(wire == "GET /api/chat?x=1 HTTP/1.1\r\nAccept: */*\r\nHost: svc.local:8080\r\n\r\n");
  CHECK_FALSE(info.head);
  CHECK(info.idempotent);
  CHECK_FALSE(info.close);
}

TEST_CASE("POST is serialised byte-exact with Content-Length and body", "[http]") {
  request_info info;
  auto wire = serialize_ok(
      build_request("POST", "/v1/completions", {{"Content-Type", "application/json"}}, "{\"a\":1}"),
      &info);
  CHECK(wire == "POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\n"
                "Host: svc.local:8080\r\nContent-Length: 7\r\n\r\n{\"a\":1}");
  CHECK_FALSE(info.head);
  CHECK_FALSE(info.idempotent);
  CHECK_FALSE(info.close);
}

TEST_CASE("serialisation appends to the output", "[http]") {
  std::string out = "earlier request";
  REQUIRE(serialize_request(build_request("GET", "/"), "h", out));
  CHECK(out == "earlier requestGET / HTTP/1.1\r\nHost: h\r\n\r\n");
}

TEST_CASE("Content-Length is written for a body or for POST, PUT and PATCH", "[http]") {
  CHECK(serialize_ok(build_request("POST", "/")) ==
        "POST / HTTP/1.1\r\nHost: svc.local:8080\r\nContent-Length: 0\r\n\r\n");
  CHECK(serialize_ok(build_request("PUT", "/x")) ==
        "PUT /x HTTP/1.1\r\nHost: svc.local:8080\r\nContent-Length: 0\r\n\r\n");
  CHECK(serialize_ok(build_request("PATCH", "/x")) ==
        "PATCH /x HTTP/1.1\r\nHost: svc.local:8080\r\nContent-Length: 0\r\n\r\n");
  CHECK(serialize_ok(build_request("DELETE", "/x")) ==
        "DELETE /x HTTP/1.1\r\nHost: svc.local:8080\r\n\r\n");
  CHECK(serialize_ok(build_request("DELETE", "/x", {}, "abc")) ==
        "DELETE /x HTTP/1.1\r\nHost: svc.local:8080\r\nContent-Length: 3\r\n\r\nabc");
  CHECK(serialize_ok(build_request("GET", "/")) ==
        "GET / HTTP/1.1\r\nHost: svc.local:8080\r\n\r\n");
}

TEST_CASE("the caller's Host replaces the default one", "[http]") {
  auto wire = serialize_ok(build_request("GET", "/", {{"X-A", "1"}, {"host", "api.example"}}));
  CHECK(wire == "GET / HTTP/1.1\r\nX-A: 1\r\nhost: api.example\r\n\r\n");
}

TEST_CASE("a matching Content-Length from the caller is written once, as ours", "[http]") {
  SECTION("with a body") {
    auto wire =
        serialize_ok(build_request("POST", "/", {{"content-length", "5"}, {"X-B", "2"}}, "hello"));
    CHECK(wire == "POST / HTTP/1.1\r\nX-B: 2\r\nHost: svc.local:8080\r\nContent-Length: 5\r\n\r\n"
                  "hello");
  }
  SECTION("zero on a GET keeps its meaning") {
    auto wire = serialize_ok(build_request("GET", "/", {{"Content-Length", "0"}}));
    CHECK(wire == "GET / HTTP/1.1\r\nHost: svc.local:8080\r\nContent-Length: 0\r\n\r\n");
  }
  SECTION("leading zeros and surrounding blanks") {
    auto wire = serialize_ok(build_request("PUT", "/", {{"Content-Length", " 003\t"}}, "abc"));
    CHECK(wire == "PUT / HTTP/1.1\r\nHost: svc.local:8080\r\nContent-Length: 3\r\n\r\nabc");
  }
}

TEST_CASE("request_info reports HEAD, idempotency and Connection: close", "[http]") {
  request_info info;
  serialize_ok(build_request("HEAD", "/"), &info);
  CHECK(info.head);
  CHECK(info.idempotent);
  for (auto method : {"GET", "PUT", "DELETE", "OPTIONS", "TRACE"}) {
    serialize_ok(build_request(method, "/"), &info);
    CHECK(info.idempotent);
    CHECK_FALSE(info.head);
  }
  for (auto method : {"POST", "PATCH", "PROPFIND", "get"}) {
    serialize_ok(build_request(method, "/"), &info);
    CHECK_FALSE(info.idempotent);
  }
  for (auto value : {"close", "CLOSE", "keep-alive, Close", " x ,\tclose\t"}) {
    serialize_ok(build_request("GET", "/", {{"Connection", value}}), &info);
    CHECK(info.close);
  }
  for (auto value : {"keep-alive", "closed", "close-ish, x", ""}) {
    serialize_ok(build_request("GET", "/", {{"connection", value}}), &info);
    CHECK_FALSE(info.close);
  }
  serialize_ok(build_request("GET", "/", {{"Connection", "keep-alive"}, {"Connection", "close"}}),
               &info);
  CHECK(info.close);
}

TEST_CASE("accepted unusual but valid requests", "[http]") {
  CHECK(serialize_ok(build_request("OPTIONS", "*")) ==
        "OPTIONS * HTTP/1.1\r\nHost: svc.local:8080\r\n\r\n");
  auto wire = serialize_ok(build_request(
      "M-SEARCH", "/a%20b", {{"X-Tab", "a\tb"}, {"X-Empty", ""}, {"X-Utf8", "caf\xc3\xa9"}}));
  CHECK(wire == "M-SEARCH /a%20b HTTP/1.1\r\nX-Tab: a\tb\r\nX-Empty: \r\nX-Utf8: caf\xc3\xa9\r\n"
                "Host: svc.local:8080\r\n\r\n");
  CHECK(serialize_ok(build_request("GET", "/", {{"A", "1"}, {"A", "2"}})) ==
        "GET / HTTP/1.1\r\nA: 1\r\nA: 2\r\nHost: svc.local:8080\r\n\r\n");
}

// -- serialize_request: rejections ---------------------------------------------------------

TEST_CASE("bad methods are rejected", "[http]") {
  check_rejected(build_request("", "/"), "empty method");
  check_rejected(build_request("GE\rT", "/"), "method is not a token (CR");
  check_rejected(build_request("GET\n", "/"), "method is not a token (LF");
  check_rejected(build_request("GE"s + '\0' + "T", "/"), "method is not a token (NUL");
  check_rejected(build_request("GET /evil HTTP/1.1\r\n", "/"), "method is not a token (space");
  check_rejected(build_request("G(T", "/"), "method is not a token ('('");
  check_rejected(build_request("CONNECT", "/"), "CONNECT");
  check_rejected(build_request("connect", "/"), "CONNECT");
}

TEST_CASE("bad paths are rejected", "[http]") {
  check_rejected(build_request("GET", ""), "empty path");
  check_rejected(build_request("GET", "api"), "path must start with '/'");
  check_rejected(build_request("GET", "http://x/"), "path must start with '/'");
  check_rejected(build_request("GET", "*"), "path must start with '/'");
  check_rejected(build_request("OPTIONS", "**"), "path must start with '/'");
  check_rejected(build_request("GET", "/a\r\nX: y"), "CR at offset 2");
  check_rejected(build_request("GET", "/a?token=secret-token\r\n"), "CR at offset 21");
  check_rejected(build_request("GET", "/a\nb"), "LF at offset 2");
  check_rejected(build_request("GET", "/a"s + '\0'), "NUL at offset 2");
  check_rejected(build_request("GET", "/a b"), "space at offset 2");
  check_rejected(build_request("GET", "/a\tb"), "HTAB at offset 2");
  check_rejected(build_request("GET", "/\x7f"), "byte 0x7f at offset 1");
  check_rejected(build_request("GET", "/\x01"), "byte 0x01 at offset 1");
}

TEST_CASE("header names that are not tokens are rejected", "[http]") {
  check_rejected(build_request("GET", "/", {{"", "secret-token"}}), "header #1 has an empty name");
  check_rejected(build_request("GET", "/", {{"A", "1"}, {"Bad Name", "secret-token"}}),
                 "header name #2 is not a token (space at offset 3, after 'Bad')");
  check_rejected(build_request("GET", "/", {{"X-A\r\n", "secret-token"}}), "(CR at offset 3");
  check_rejected(build_request("GET", "/", {{"X\n", "secret-token"}}), "(LF at offset 1");
  check_rejected(build_request("GET", "/", {{"X"s + '\0', "secret-token"}}), "(NUL at offset 1");
  check_rejected(build_request("GET", "/", {{"X:Y", "secret-token"}}), "(':' at offset 1");
  check_rejected(build_request("GET", "/", {{"\xc3\xa9", "secret-token"}}),
                 "(byte 0xc3 at offset 0)");
  // A value glued to the name by mistake must not leak through the message either.
  check_rejected(build_request("GET", "/", {{"Authorization: Bearer secret-token", ""}}),
                 "after 'Authorization'");
}

TEST_CASE("header values with CR, LF, NUL or other controls are rejected", "[http]") {
  check_rejected(build_request("GET", "/", {{"x-a", "secret-token\r"}}),
                 "CR/LF in value of header 'x-a'");
  check_rejected(build_request("GET", "/", {{"x-a", "secret-token\nX-Evil: 1"}}),
                 "CR/LF in value of header 'x-a'");
  check_rejected(build_request("GET", "/", {{"x-a", "secret-token\r\n\r\nGET /evil"}}),
                 "CR/LF in value of header 'x-a'");
  check_rejected(build_request("GET", "/", {{"Authorization", "secret-token"s + '\0'}}),
                 "NUL in value of header 'Authorization'");
  check_rejected(build_request("GET", "/", {{"x-a", "secret-token\x01"}}),
                 "control character (byte 0x01) in value of header 'x-a'");
  check_rejected(build_request("GET", "/", {{"x-a", "secret-token\x7f"}}),
                 "control character (byte 0x7f) in value of header 'x-a'");
  check_rejected(build_request("GET", "/"), "CR/LF in host_header", "svc\r\nX-Evil: 1");
}

TEST_CASE("framing headers from the caller are rejected", "[http]") {
  check_rejected(build_request("POST", "/", {{"Transfer-Encoding", "chunked secret-token"}}, "x"),
                 "header 'Transfer-Encoding' is not allowed");
  check_rejected(build_request("POST", "/", {{"transfer-encoding", "secret-token"}}),
                 "header 'transfer-encoding' is not allowed");
  check_rejected(build_request("GET", "/", {{"Upgrade", "websocket secret-token"}}),
                 "header 'Upgrade' is not allowed");
  check_rejected(build_request("GET", "/", {{"UPGRADE", "h2c"}}), "is not allowed");
}

TEST_CASE("bad Content-Length headers are rejected", "[http]") {
  check_rejected(
      build_request("POST", "/", {{"Content-Length", "5"}, {"content-length", "5"}}, "hello"),
      "duplicate Content-Length");
  for (auto value : {"4", "6", "", "5x", "-5", "+5", "5 5", "0x5", "99999999999999999999999999"}) {
    INFO(value);
    check_rejected(build_request("POST", "/", {{"Content-Length", value}}, "hello"),
                   "Content-Length header does not match the body size (5 bytes)");
  }
  check_rejected(build_request("GET", "/", {{"Content-Length", "1"}}),
                 "does not match the body size (0 bytes)");
}

TEST_CASE("a duplicate Host is rejected", "[http]") {
  check_rejected(build_request("GET", "/", {{"Host", "a"}, {"X", "1"}, {"HOST", "b"}}),
                 "duplicate Host header");
}
