// HTTP/1.1 framing of forwarded responses: response_parser.
//
// response_parser wraps http_parser 2.9 (HTTP_RESPONSE). The parser is paused in
// on_message_complete so that `feed` stops exactly at the end of a response; an interim 1xx
// response completes as a message of its own, after which the parser is re-initialised and
// parsing continues with the final response in the same byte stream.
#include "sshpool/ssh/http.hpp"
#include "sshpool/ssh/http_framing.hpp"

#include <http_parser.h>

#include <algorithm>
#include <climits>
#include <exception>
#include <utility>

namespace sshpool::ssh {

// -- response parsing ----------------------------------------------------------------------

struct response_parser::impl {
  response_limits limits;
  http_parser parser{};
  body_sink sink;
  response res;
  sshpool::error failure;
  /// An exception thrown by a callback (the body sink, an allocation), rethrown by `feed`
  /// once http_parser has returned: it must not unwind through C frames.
  std::exception_ptr exception;
  std::size_t head_bytes = 0;
  std::size_t body_bytes = 0;
  bool head_request = false;
  bool head_complete = false;
  bool complete = false;
  bool received_any = false;
  bool keep_alive = false;
  /// The current message is an interim 1xx response being skipped.
  bool interim = false;
  /// The last header callback was for a name: the next name chunk continues it.
  bool field_open = false;
  /// `finish` is running: a message completing now was close-delimited.
  bool at_eof = false;
  /// Head scanning (see `scan_head`): the last head byte was a CR; the current head line
  /// has no byte but CRs so far.
  bool cr_pending = false;
  bool line_empty = true;
  /// `scan_head` found a CR followed by something other than LF.
  bool bare_cr = false;

  explicit impl(response_limits lim) : limits(lim) { reset(false); }

  bool done() const noexcept { return complete || failure.code() != errc::none; }

  void fail(errc code, std::string message) { failure = sshpool::error{code, std::move(message)}; }

  /// Starts parsing a message: the response or, after an interim 1xx, the next one.
  void begin_message() {
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = this;
    interim = false;
    field_open = false;
    res.status = 0;
    res.reason.clear();
    res.headers.clear();
  }

  void reset(bool head) {
    begin_message();
    res = response{};
    failure = sshpool::error{};
    exception = nullptr;
    head_bytes = 0;
    body_bytes = 0;
    head_request = head;
    head_complete = false;
    complete = false;
    received_any = false;
    keep_alive = false;
    at_eof = false;
    cr_pending = false;
    line_empty = true;
    bare_cr = false;
  }

  /// http_parser built without HTTP_PARSER_STRICT takes any byte after a CR as the LF that
  /// ends the status line (or the head), so "200 OK\rSet-Cookie: x" would become a header
  /// "et-Cookie". Returns how many of the `n` head bytes at `p` the parser may take: up to
  /// the end of the head (an empty line), or up to a CR's successor that is no LF (then
  /// `bare_cr` is set). Its state carries over pieces and interim responses.
  std::size_t scan_head(const char* p, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) {
      const char c = p[i];
      if (cr_pending && c != '\n') {
        bare_cr = true;
        return i;
      }
      cr_pending = c == '\r';
      if (c == '\n') {
        if (line_empty)
          return i + 1;
        line_empty = true;
      } else if (c != '\r') {
        line_empty = false;
      }
    }
    return n;
  }

  std::size_t feed(const char* data, std::size_t size) {
    if (done() || size == 0)
      return 0;
    received_any = true;
    std::size_t used = 0;
    while (used < size && !done()) {
      // While the head is incomplete, never hand the parser more than the head may still
      // take: the head then completes within the limit or the limit is reached. Nor more
      // than `scan_head` passed: the rest of the head (body bytes are never scanned) or
      // what precedes a bare CR.
      std::size_t n = size - used;
      if (!head_complete)
        n = scan_head(data + used, std::min(n, limits.max_header_bytes - head_bytes));
      // A length of 0 would tell http_parser that the stream ended.
      auto got = n == 0 ? 0 : http_parser_execute(&parser, &settings(), data + used, n);
      used += got;
      settle();
      if (!head_complete && !done()) {
        head_bytes += got;
        if (bare_cr)
          fail(errc::bad_response, "malformed response: CR not followed by LF in the head");
        else if (head_bytes >= limits.max_header_bytes)
          fail(errc::response_too_large, "response head too large (over " +
                                             std::to_string(limits.max_header_bytes) + " bytes)");
      }
    }
    return used;
  }

  void finish() {
    if (done())
      return;
    at_eof = true;
    http_parser_execute(&parser, &settings(), nullptr, 0);
    at_eof = false;
    if (complete)
      return;
    if (!received_any)
      fail(errc::upstream_closed, "the stream ended before any response byte");
    else if (!head_complete)
      fail(errc::upstream_closed, "the stream ended mid-response (in the head)");
    else
      fail(errc::upstream_closed, "the stream ended mid-response (in the body)");
  }

  /// Handles the parser's state after `http_parser_execute` returned.
  void settle() {
    if (exception) {
      fail(errc::internal, "exception thrown while handling the response");
      std::rethrow_exception(std::exchange(exception, nullptr));
    }
    auto err = HTTP_PARSER_ERRNO(&parser);
    if (err == HPE_OK || done())
      return;
    if (err == HPE_PAUSED) { // on_message_complete of an interim response
      begin_message();
      return;
    }
    auto name = std::string{http_errno_name(err)};
    auto description = std::string{http_errno_description(err)};
    if (err == HPE_HEADER_OVERFLOW)
      fail(errc::response_too_large,
           "response head or chunk metadata too large: " + description + " (" + name + ")");
    else
      fail(errc::bad_response, "malformed response: " + description + " (" + name + ")");
  }

  /// Rejects what the Debian build of http_parser (built without HTTP_PARSER_STRICT) lets
  /// through: a space in a header name, control characters in the reason phrase.
  bool check_head() {
    for (std::size_t i = 0; i < res.headers.size(); ++i) {
      const auto& name = res.headers[i].first;
      if (!std::all_of(name.begin(), name.end(), is_tchar)) {
        fail(errc::bad_response,
             "malformed response: header name #" + std::to_string(i + 1) + " is not a token");
        return false;
      }
    }
    if (!std::all_of(res.reason.begin(), res.reason.end(), is_field_value_byte)) {
      fail(errc::bad_response, "malformed response: control character in the reason phrase");
      return false;
    }
    return true;
  }

  // -- http_parser callbacks ---------------------------------------------------------------

  /// Runs `f` on the impl behind `p`, turning an exception into a parser error.
  template <class F>
  static int guarded(http_parser* p, F&& f) noexcept {
    auto& self = *static_cast<impl*>(p->data);
    try {
      return f(self);
    } catch (...) {
      self.exception = std::current_exception();
      return -1;
    }
  }

  static int on_status(http_parser* p, const char* at, std::size_t length) noexcept {
    return guarded(p, [&](impl& self) {
      self.res.reason.append(at, length);
      return 0;
    });
  }

  static int on_header_field(http_parser* p, const char* at, std::size_t length) noexcept {
    return guarded(p, [&](impl& self) {
      if (self.head_complete) // a trailer field: not part of the delivered head
        return 0;
      if (self.field_open)
        self.res.headers.back().first.append(at, length);
      else
        self.res.headers.emplace_back(std::string{at, length}, std::string{});
      self.field_open = true;
      return 0;
    });
  }

  static int on_header_value(http_parser* p, const char* at, std::size_t length) noexcept {
    return guarded(p, [&](impl& self) {
      if (self.head_complete)
        return 0;
      self.res.headers.back().second.append(at, length);
      self.field_open = false;
      return 0;
    });
  }

  /// Returns 1 to tell http_parser that the message has no body, -1 to fail.
  static int on_headers_complete(http_parser* p) noexcept {
    return guarded(p, [&](impl& self) {
      auto status = static_cast<int>(p->status_code);
      if (!self.check_head())
        return -1;
      // http_parser takes one to three digits as a status code; outside 100-599 is no HTTP
      // status (RFC 9110, 15), and a status of 0 would pass for "no response yet".
      if (status < 100 || status > 599) {
        self.fail(errc::bad_response, "malformed response: status code " + std::to_string(status) +
                                          " is not in 100-599");
        return -1;
      }
      if (status == 101) {
        self.fail(errc::bad_response,
                  "unexpected 101 Switching Protocols (upgrades are not forwarded)");
        return -1;
      }
      if (status / 100 == 1) {
        self.interim = true;
        return 1;
      }
      for (auto& header : self.res.headers) {
        auto& value = header.second;
        auto last = value.find_last_not_of(" \t");
        value.erase(last == std::string::npos ? 0 : last + 1);
      }
      self.res.status = status;
      self.head_complete = true;
      if (has_no_body(self.head_request, status))
        return 1;
      if (p->content_length != ULLONG_MAX && p->content_length > self.limits.max_body_bytes) {
        self.fail(errc::response_too_large, "response body too large (Content-Length over " +
                                                std::to_string(self.limits.max_body_bytes) +
                                                " bytes)");
        return -1;
      }
      return 0;
    });
  }

  static int on_body(http_parser* p, const char* at, std::size_t length) noexcept {
    return guarded(p, [&](impl& self) {
      if (length > self.limits.max_body_bytes - self.body_bytes) {
        self.fail(errc::response_too_large, "response body too large (over " +
                                                std::to_string(self.limits.max_body_bytes) +
                                                " bytes)");
        return -1;
      }
      self.body_bytes += length;
      if (self.sink)
        self.sink(std::string_view{at, length});
      else
        self.res.body.append(at, length);
      return 0;
    });
  }

  /// Pauses the parser so that `http_parser_execute` returns right after this message.
  static int on_message_complete(http_parser* p) noexcept {
    auto& self = *static_cast<impl*>(p->data);
    http_parser_pause(p, 1);
    if (!self.interim) {
      self.complete = true;
      self.keep_alive = http_should_keep_alive(p) != 0 && !self.at_eof;
    }
    return 0;
  }

  static const http_parser_settings& settings() noexcept {
    static const http_parser_settings instance = [] {
      http_parser_settings s;
      http_parser_settings_init(&s);
      s.on_status = &on_status;
      s.on_header_field = &on_header_field;
      s.on_header_value = &on_header_value;
      s.on_headers_complete = &on_headers_complete;
      s.on_body = &on_body;
      s.on_message_complete = &on_message_complete;
      return s;
    }();
    return instance;
  }
};

response_parser::response_parser(response_limits limits) : impl_(std::make_unique<impl>(limits)) {}

response_parser::~response_parser() = default;

void response_parser::reset(bool head_request) {
  impl_->reset(head_request);
}

std::size_t response_parser::feed(const char* data, std::size_t size) {
  return impl_->feed(data, size);
}

void response_parser::finish() {
  impl_->finish();
}

void response_parser::set_max_body_bytes(std::size_t limit) noexcept {
  impl_->limits.max_body_bytes = limit;
}

void response_parser::set_body_sink(body_sink sink) {
  impl_->sink = std::move(sink);
}

bool response_parser::head_complete() const noexcept {
  return impl_->head_complete;
}

bool response_parser::complete() const noexcept {
  return impl_->complete;
}

bool response_parser::failed() const noexcept {
  return impl_->failure.code() != errc::none;
}

const sshpool::error& response_parser::failure() const noexcept {
  return impl_->failure;
}

bool response_parser::received_any() const noexcept {
  return impl_->received_any;
}

bool response_parser::keep_alive() const noexcept {
  return impl_->keep_alive;
}

response& response_parser::result() noexcept {
  return impl_->res;
}

} // namespace sshpool::ssh
