// The strict chunked decoder (see chunked.hpp): one state per position in the grammar
//
//   chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//   last-chunk = 1*("0") [ chunk-ext ] CRLF
//   body       = *chunk last-chunk trailer-section CRLF
//
//   size ─hex─► size ─SP/HT─► size_ws ─";"─► ext ─CR─► size_lf ─LF─► data (or trailer if 0)
//     └──";"──► ext      └─CR─► size_lf                      data ─all─► data_cr ─► data_lf
//   trailer ─CR─► trailer_lf ─LF─► (empty line: done; else the next trailer line)
//   (a trailer line is a field: a token, ':', a value without control characters)
#include "net/chunked.hpp"

#include <algorithm>

#include "net/text.hpp"
#include "sshpool/ssh/http_framing.hpp"

namespace sshpool::net {

chunked_decoder::status chunked_decoder::fail(status s, std::string why) {
  why_ = std::move(why);
  return s;
}

chunked_decoder::status chunked_decoder::feed(std::string_view data, std::string& body,
                                              std::size_t& consumed) {
  std::size_t i = 0;
  consumed = 0;
  while (i < data.size()) {
    char c = data[i];
    switch (st_) {
    case state::size:
      if (int v = hex_digit(c); v >= 0) {
        if (++digits_ > 16)
          return fail(status::bad, "chunk size over 16 hex digits");
        chunk_ = chunk_ << 4 | static_cast<std::uint64_t>(v);
      } else if (digits_ == 0) {
        return fail(status::bad, "chunk size missing");
      } else if (c == ' ' || c == '\t') {
        st_ = state::size_ws;
      } else if (c == ';') {
        st_ = state::ext;
      } else if (c == '\r') {
        st_ = state::size_lf;
      } else {
        return fail(status::bad, "invalid byte in a chunk size line");
      }
      ++i;
      break;
    case state::size_ws:
      if (c == ';')
        st_ = state::ext;
      else if (c == '\r')
        st_ = state::size_lf;
      else if (c != ' ' && c != '\t')
        return fail(status::bad, "invalid byte after a chunk size");
      ++i;
      break;
    case state::ext:
      if (c == '\r')
        st_ = state::size_lf;
      else if (!is_field_value_byte(c))
        return fail(status::bad, "control character (a bare LF?) in a chunk extension");
      ++i;
      break;
    case state::size_lf:
      if (c != '\n')
        return fail(status::bad, "chunk size line not ended by CRLF");
      ++i;
      if (chunk_ == 0) {
        st_ = state::trailer;
        line_bytes_ = 0;
      } else if (chunk_ > max_body_ - std::min(max_body_, body.size())) {
        return fail(status::too_large, "request body over " + std::to_string(max_body_) + " bytes");
      } else {
        left_ = chunk_;
        st_ = state::data;
      }
      chunk_ = 0;
      digits_ = 0;
      break;
    case state::data: {
      auto take = static_cast<std::size_t>(std::min<std::uint64_t>(left_, data.size() - i));
      body.append(data.data() + i, take);
      i += take;
      left_ -= take;
      if (left_ == 0)
        st_ = state::data_cr;
      break;
    }
    case state::data_cr:
      if (c != '\r')
        return fail(status::bad, "chunk data not followed by CRLF");
      st_ = state::data_lf;
      ++i;
      break;
    case state::data_lf:
      if (c != '\n')
        return fail(status::bad, "chunk data not followed by CRLF");
      st_ = state::size;
      ++i;
      break;
    case state::trailer:
      if (++trailer_bytes_ > max_trailer_)
        return fail(status::too_large,
                    "trailer section over " + std::to_string(max_trailer_) + " bytes");
      if (c == '\r') {
        if (line_bytes_ > 0 && !in_value_)
          return fail(status::bad, "a trailer line that is not a header field");
        st_ = state::trailer_lf;
        ++i;
        break;
      }
      if (!is_field_value_byte(c)) {
        return fail(status::bad, "control character (a bare LF?) in the trailer section");
      } else if (!in_value_) {
        if (c == ':' && line_bytes_ > 0)
          in_value_ = true;
        else if (!is_tchar(c))
          return fail(status::bad, "invalid trailer field name");
      }
      ++line_bytes_;
      ++i;
      break;
    case state::trailer_lf:
      if (c != '\n')
        return fail(status::bad, "trailer line not ended by CRLF");
      ++i;
      if (line_bytes_ == 0) {
        consumed = i;
        return status::done;
      }
      line_bytes_ = 0;
      in_value_ = false;
      st_ = state::trailer;
      break;
    }
  }
  consumed = i;
  return status::more;
}

} // namespace sshpool::net
