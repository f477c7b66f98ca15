// See request_reader.hpp.
#include "net/request_reader.hpp"

#include <algorithm>
#include <climits>

#include "sshpool/text.hpp"

namespace sshpool::net {

namespace {

request_reader& reader_of(http_parser* p) {
  return *static_cast<request_reader*>(p->data);
}

} // namespace

const char* reason_phrase(int status) noexcept {
  const char* s = http_status_str(static_cast<http_status>(status));
  return s[0] == '<' ? "Unknown" : s;
}

const std::string* request::header(std::string_view name) const {
  for (const auto& [key, value] : headers)
    if (text::iequals(key, name))
      return &value;
  return nullptr;
}

const http_parser_settings request_reader::settings_ = {on_message_begin, on_url,
                                                        nullptr,          on_header_field,
                                                        on_header_value,  on_headers_complete,
                                                        on_body,          on_message_complete,
                                                        nullptr,          nullptr};

request_reader::request_reader(std::size_t max_head, std::size_t max_body)
    : max_head_(max_head), max_body_(max_body) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
}

request_reader::result request_reader::feed(std::string_view data, std::size_t& used) {
  used = 0;
  if (status_ != 0)
    return result::error;
  if (reading_chunked_)
    return read_chunked(data, used);
  used = http_parser_execute(&parser_, &settings_, data.data(), data.size());
  auto err = HTTP_PARSER_ERRNO(&parser_);
  if (err == HPE_OK)
    return result::more;
  if (err != HPE_PAUSED) {
    if (status_ == 0)
      status_ = err == HPE_HEADER_OVERFLOW ? 431 : 400;
    if (why_.empty())
      why_ = status_ == 431 ? "request head too large"
                            : std::string{"malformed request: "} + http_errno_description(err);
    return result::error;
  }
  // The request is complete (on_message_complete paused the parser). An Upgrade (or
  // CONNECT) request is served as a plain request (Upgrade is hop-by-hop and not
  // forwarded); what follows it is parsed as HTTP/1.1 again.
  upgrade_ = parser_.upgrade != 0;
  parser_.upgrade = 0;
  http_parser_pause(&parser_, 0);
  if (!chunked_)
    return result::request;
  reading_chunked_ = true;
  std::size_t body_used = 0;
  auto got = read_chunked(data.substr(used), body_used);
  used += body_used;
  return got;
}

request_reader::result request_reader::read_chunked(std::string_view data, std::size_t& used) {
  switch (chunked_->feed(data, current_.body, used)) {
  case chunked_decoder::status::more:
    return result::more;
  case chunked_decoder::status::done:
    reading_chunked_ = false;
    chunked_.reset();
    return result::request;
  case chunked_decoder::status::too_large:
    refuse(413, chunked_->why());
    return result::error;
  case chunked_decoder::status::bad:
    refuse(400, "malformed chunked body: " + chunked_->why());
    return result::error;
  }
  return result::more;
}

void request_reader::take(request& into) {
  into = std::move(current_);
  current_ = request{};
  in_message_ = false;
}

bool request_reader::count_head(std::size_t n) {
  head_bytes_ += n;
  if (head_bytes_ <= max_head_)
    return true;
  refuse(431, "request head over " + std::to_string(max_head_) + " bytes");
  return false;
}

int request_reader::refuse(int status, std::string why) {
  status_ = status;
  why_ = std::move(why);
  return -1;
}

int request_reader::on_message_begin(http_parser* p) {
  request_reader& r = reader_of(p);
  r.current_ = request{};
  r.chunked_.reset();
  r.reading_chunked_ = false;
  r.in_header_value_ = false;
  r.head_bytes_ = 0;
  r.in_message_ = true;
  r.head_done_ = false;
  r.started_ = std::chrono::steady_clock::now();
  return 0;
}

int request_reader::on_url(http_parser* p, const char* at, std::size_t n) {
  request_reader& r = reader_of(p);
  r.current_.target.append(at, n);
  return r.count_head(n) ? 0 : 1;
}

int request_reader::on_header_field(http_parser* p, const char* at, std::size_t n) {
  request_reader& r = reader_of(p);
  auto& headers = r.current_.headers;
  if (r.in_header_value_ || headers.empty())
    headers.emplace_back();
  r.in_header_value_ = false;
  headers.back().first.append(at, n);
  return r.count_head(n) ? 0 : 1;
}

int request_reader::on_header_value(http_parser* p, const char* at, std::size_t n) {
  request_reader& r = reader_of(p);
  r.in_header_value_ = true;
  r.current_.headers.back().second.append(at, n);
  return r.count_head(n) ? 0 : 1;
}

int request_reader::on_headers_complete(http_parser* p) {
  request_reader& r = reader_of(p);
  r.head_done_ = true;
  request& req = r.current_;
  req.method = http_method_str(static_cast<http_method>(p->method));
  req.http10 = p->http_major == 0 || (p->http_major == 1 && p->http_minor == 0);
  for (auto& header : req.headers) {
    // RFC 9112 5.1: no whitespace between a field name and its colon.
    if (header.first.find_first_of(" \t") != std::string::npos)
      return r.refuse(400, "whitespace between a header field name and its colon");
    auto& value = header.second;
    auto last = value.find_last_not_of(" \t");
    value.erase(last == std::string::npos ? 0 : last + 1);
  }
  auto hosts = std::count_if(req.headers.begin(), req.headers.end(),
                             [](const auto& h) { return text::iequals(h.first, "Host"); });
  if (hosts > 1 || (hosts == 0 && !req.http10))
    return r.refuse(400,
                    hosts > 1 ? "more than one Host header" : "an HTTP/1.1 request without Host");
  bool chunked = (p->flags & F_CHUNKED) != 0;
  bool has_length = p->content_length != ULLONG_MAX;
  // (-1: an error; 1 and 2 would mean "skip body" and "upgrade".)
  if (!chunked && has_length && p->content_length > r.max_body_)
    return r.refuse(413, "request body over " + std::to_string(r.max_body_) + " bytes");
  const std::string* expect = req.header("Expect");
  r.expect_continue_ = expect != nullptr && text::iequals(*expect, "100-continue") && !req.http10 &&
                       (chunked || (has_length && p->content_length > 0));
  if (!chunked)
    return 0;
  r.chunked_.emplace(r.max_body_, r.max_head_);
  return 1; // "no body" to http-parser: the message completes here, `chunked_` reads on
}

int request_reader::on_body(http_parser* p, const char* at, std::size_t n) {
  request_reader& r = reader_of(p);
  if (r.current_.body.size() + n > r.max_body_)
    return r.refuse(413, "request body over " + std::to_string(r.max_body_) + " bytes");
  r.current_.body.append(at, n);
  return 0;
}

int request_reader::on_message_complete(http_parser* p) {
  request_reader& r = reader_of(p);
  r.keep_alive_ = http_should_keep_alive(p) != 0;
  if (!r.chunked_)
    r.expect_continue_ = false; // the body is here already
  http_parser_pause(p, 1);      // one request at a time: the server resumes with `feed`
  return 0;
}

} // namespace sshpool::net
