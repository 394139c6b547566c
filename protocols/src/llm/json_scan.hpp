#pragma once
/// Private to troupe_llm: a strict JSON reader (RFC 8259, UTF-8 checked as RFC 3629
/// says) that hands each value to a handler as it goes, without building a tree.
/// It accepts exactly what nlohmann::json::accept accepts (json_scan_test compares the
/// two on crafted and mutated bodies) and reports the same events as nlohmann's SAX
/// parser, at a fraction of its cost: it runs once per reply on the client's I/O
/// thread (docs/benchmarks.md).
///
/// The handler has `bool null()`, `boolean(bool)`, `number_integer(std::int64_t)` (a
/// negative integer), `number_unsigned(std::uint64_t)` (a non-negative integer),
/// `number_float(double)` (anything with a fraction or an exponent, or an integer out
/// of 64-bit range), `string(std::string&)`, `key(std::string&)`, `start_object()`,
/// `end_object()`, `start_array()`, `end_array()`; each returns false to stop.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace troupe::protocols::llm::detail {

enum class scan_status {
  ok,       ///< one value, then only whitespace
  syntax,   ///< not JSON: `offset` is where it went wrong
  stopped,  ///< a handler returned false
};

struct scan_outcome {
  scan_status status = scan_status::ok;
  std::size_t offset = 0;
};

namespace json_scan_detail {

inline bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

inline void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// Four hex digits at p (bounds checked by the caller); -1 if one is not hex.
inline long hex4(const char* p) {
  long v = 0;
  for (int i = 0; i < 4; ++i) {
    const char c = p[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/// The length of the well-formed UTF-8 sequence starting at p (a byte >= 0x80), or 0.
inline std::size_t utf8_length(const unsigned char* p, const unsigned char* end) {
  const unsigned char c = *p;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c == 0xE0) n = 3, lo = 0xA0;
  else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) n = 3;
  else if (c == 0xED) n = 3, hi = 0x9F;  // no UTF-16 surrogates
  else if (c == 0xF0) n = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) n = 4;
  else if (c == 0xF4) n = 4, hi = 0x8F;  // nothing past U+10FFFF
  else return 0;
  if (static_cast<std::size_t>(end - p) < n) return 0;
  if (p[1] < lo || p[1] > hi) return 0;
  for (std::size_t i = 2; i < n; ++i)
    if (p[i] < 0x80 || p[i] > 0xBF) return 0;
  return n;
}

class scanner {
 public:
  explicit scanner(std::string_view in) : begin_(in.data()), p_(in.data()), end_(in.data() + in.size()) {
    // A UTF-8 byte order mark is skipped, as nlohmann does.
    if (in.size() >= 3 && in.substr(0, 3) == "\xEF\xBB\xBF") p_ += 3;
  }

  template <class H>
  scan_outcome run(H& h) {
    enum class next { value, key, after_value };
    next at = next::value;
    for (;;) {
      skip_ws();
      if (at == next::value) {
        if (p_ == end_) return syntax();
        const char c = *p_;
        if (c == '{' || c == '[') {
          const bool object = c == '{';
          if (!(object ? h.start_object() : h.start_array())) return stopped();
          ++p_;
          skip_ws();
          if (p_ != end_ && *p_ == (object ? '}' : ']')) {
            ++p_;
            if (!(object ? h.end_object() : h.end_array())) return stopped();
            at = next::after_value;
          } else {
            stack_ += c;
            at = object ? next::key : next::value;
          }
          continue;
        }
        if (c == '"') {
          if (!read_string()) return syntax();
          if (!h.string(buf_)) return stopped();
        } else if (c == 't' || c == 'f' || c == 'n') {
          const std::string_view word = c == 't' ? "true" : c == 'f' ? "false" : "null";
          if (static_cast<std::size_t>(end_ - p_) < word.size() || std::string_view(p_, word.size()) != word)
            return syntax();
          p_ += word.size();
          if (!(c == 'n' ? h.null() : h.boolean(c == 't'))) return stopped();
        } else if (c == '-' || (c >= '0' && c <= '9')) {
          switch (read_number(h)) {
            case 0: return syntax();
            case 1: return stopped();
            default: break;
          }
        } else {
          return syntax();
        }
        at = next::after_value;
        continue;
      }
      if (at == next::key) {
        if (p_ == end_ || *p_ != '"' || !read_string()) return syntax();
        if (!h.key(buf_)) return stopped();
        skip_ws();
        if (p_ == end_ || *p_ != ':') return syntax();
        ++p_;
        at = next::value;
        continue;
      }
      // after_value
      if (stack_.empty()) return p_ == end_ ? scan_outcome{scan_status::ok, offset()} : syntax();
      if (p_ == end_) return syntax();
      const bool object = stack_.back() == '{';
      if (*p_ == ',') {
        ++p_;
        at = object ? next::key : next::value;
      } else if (*p_ == (object ? '}' : ']')) {
        ++p_;
        stack_.pop_back();
        if (!(object ? h.end_object() : h.end_array())) return stopped();
      } else {
        return syntax();
      }
    }
  }

 private:
  std::size_t offset() const { return static_cast<std::size_t>(p_ - begin_); }
  scan_outcome syntax() const { return {scan_status::syntax, offset()}; }
  scan_outcome stopped() const { return {scan_status::stopped, offset()}; }
  void skip_ws() {
    while (p_ != end_ && is_ws(*p_)) ++p_;
  }

  /// A string at p_ (its opening quote) into buf_; false if it is not valid.
  bool read_string() {
    buf_.clear();
    ++p_;
    for (;;) {
      const char* run = p_;
      while (p_ != end_) {
        const auto u = static_cast<unsigned char>(*p_);
        if (u == '"' || u == '\\' || u < 0x20 || u >= 0x80) break;
        ++p_;
      }
      buf_.append(run, static_cast<std::size_t>(p_ - run));
      if (p_ == end_) return false;
      const auto u = static_cast<unsigned char>(*p_);
      if (u == '"') {
        ++p_;
        return true;
      }
      if (u < 0x20) return false;  // control characters must be escaped
      if (u >= 0x80) {
        const auto n = utf8_length(reinterpret_cast<const unsigned char*>(p_), reinterpret_cast<const unsigned char*>(end_));
        if (n == 0) return false;
        buf_.append(p_, n);
        p_ += n;
        continue;
      }
      if (!read_escape()) return false;
    }
  }

  /// The escape at p_ (its backslash) onto buf_.
  bool read_escape() {
    if (end_ - p_ < 2) return false;
    const char e = p_[1];
    p_ += 2;
    switch (e) {
      case '"': buf_ += '"'; return true;
      case '\\': buf_ += '\\'; return true;
      case '/': buf_ += '/'; return true;
      case 'b': buf_ += '\b'; return true;
      case 'f': buf_ += '\f'; return true;
      case 'n': buf_ += '\n'; return true;
      case 'r': buf_ += '\r'; return true;
      case 't': buf_ += '\t'; return true;
      case 'u': break;
      default: return false;
    }
    if (end_ - p_ < 4) return false;
    long cp = hex4(p_);
    if (cp < 0) return false;
    p_ += 4;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return false;  // a low surrogate alone
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      // A high surrogate must be followed by an escaped low one.
      if (end_ - p_ < 6 || p_[0] != '\\' || p_[1] != 'u') return false;
      const long lo = hex4(p_ + 2);
      if (lo < 0xDC00 || lo > 0xDFFF) return false;
      p_ += 6;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    append_utf8(buf_, static_cast<std::uint32_t>(cp));
    return true;
  }

  /// A number at p_: 0 not a number, 1 stopped by the handler, 2 read.
  template <class H>
  int read_number(H& h) {
    const char* start = p_;
    const bool negative = *p_ == '-';
    if (negative) ++p_;
    if (p_ == end_) return 0;
    if (*p_ == '0') {
      ++p_;
    } else if (*p_ >= '1' && *p_ <= '9') {
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    } else {
      return 0;
    }
    bool integer = true;
    if (p_ != end_ && *p_ == '.') {
      integer = false;
      ++p_;
      if (p_ == end_ || *p_ < '0' || *p_ > '9') return 0;
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      integer = false;
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || *p_ < '0' || *p_ > '9') return 0;
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    if (integer) {
      if (negative) {
        std::int64_t v = 0;
        if (std::from_chars(start, p_, v).ec == std::errc{}) return h.number_integer(v) ? 2 : 1;
      } else {
        std::uint64_t v = 0;
        if (std::from_chars(start, p_, v).ec == std::errc{}) return h.number_unsigned(v) ? 2 : 1;
      }
      // Out of 64-bit range: a float, as nlohmann reads it.
    }
    // Correctly rounded like nlohmann's strtod, but whatever the locale. Out of range:
    // an overflow is refused (nlohmann: "number overflow"), an underflow is zero.
    double d = 0;
    const auto r = std::from_chars(start, p_, d);
    if (r.ec == std::errc::result_out_of_range) {
      if (decimal_exponent(start, p_) > 0) return 0;
      d = negative ? -0.0 : 0.0;
    } else if (r.ec != std::errc{} || r.ptr != p_ || !std::isfinite(d)) {
      return 0;
    }
    return h.number_float(d) ? 2 : 1;
  }

  /// Roughly log10 of a number already checked for syntax: where its first non-zero
  /// digit sits, plus its exponent. Only its sign matters (out of range, it is far
  /// from zero either way).
  static long long decimal_exponent(const char* p, const char* end) {
    if (*p == '-') ++p;
    long long at = 0;  // the power of ten of the digit at p
    const char* int_end = p;
    while (int_end != end && *int_end >= '0' && *int_end <= '9') ++int_end;
    long long first = 0;
    bool found = false;
    for (const char* q = p; q != int_end; ++q)
      if (*q != '0') {
        first = static_cast<long long>(int_end - q) - 1;
        found = true;
        break;
      }
    const char* q = int_end;
    if (q != end && *q == '.') {
      ++q;
      at = -1;
      for (; q != end && *q >= '0' && *q <= '9'; ++q, --at)
        if (!found && *q != '0') {
          first = at;
          found = true;
        }
    }
    long long exp = 0;
    if (q != end && (*q == 'e' || *q == 'E')) {
      ++q;
      const bool minus = *q == '-';
      if (*q == '+' || *q == '-') ++q;
      for (; q != end; ++q) exp = std::min(exp * 10 + (*q - '0'), 1'000'000'000LL);
      if (minus) exp = -exp;
    }
    return first + exp;
  }

  const char* begin_;
  const char* p_;
  const char* end_;
  std::string stack_;  ///< '{' or '[' per open container
  std::string buf_;    ///< the last string or key read
};

}  // namespace json_scan_detail

/// Reads `in` as one JSON value, calling `h` for each part; see the file comment.
template <class H>
scan_outcome scan_json(std::string_view in, H& h) {
  json_scan_detail::scanner s(in);
  return s.run(h);
}

}  // namespace troupe::protocols::llm::detail
