// HTTP-date parsing for `retry-after` (RFC 9110 section 5.6.7). Written by hand
// rather than with strptime/get_time: those depend on the process locale, and
// the three grammars are small and strict.
#include <array>
#include <cctype>
#include <chrono>
#include <optional>
#include <string_view>

#include "troupe/protocols/llm/retry_policy.hpp"

namespace troupe::protocols::llm {
namespace {

using sys_clock = std::chrono::system_clock;

constexpr std::array<std::string_view, 7> short_days{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
constexpr std::array<std::string_view, 7> long_days{"Monday", "Tuesday",  "Wednesday", "Thursday",
                                                    "Friday", "Saturday", "Sunday"};
constexpr std::array<std::string_view, 12> months{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/// A cursor over the text; every reader consumes only on success.
struct cursor {
  std::string_view s;

  bool literal(std::string_view lit) {
    if (s.substr(0, lit.size()) != lit) return false;
    s.remove_prefix(lit.size());
    return true;
  }
  /// Exactly `n` decimal digits.
  std::optional<int> digits(std::size_t n) {
    if (s.size() < n) return std::nullopt;
    int v = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(s[i]))) return std::nullopt;
      v = v * 10 + (s[i] - '0');
    }
    s.remove_prefix(n);
    return v;
  }
  /// The leading run of letters.
  std::string_view word() {
    std::size_t n = 0;
    while (n < s.size() && std::isalpha(static_cast<unsigned char>(s[n]))) ++n;
    auto w = s.substr(0, n);
    s.remove_prefix(n);
    return w;
  }
  /// A month name: 1-12, 0 when it is none.
  unsigned month() {
    for (unsigned i = 0; i < months.size(); ++i)
      if (literal(months[i])) return i + 1;
    return 0;
  }
  /// "hh:mm:ss" as seconds since midnight (a leap second 60 is allowed by the grammar).
  std::optional<int> time_of_day() {
    auto h = digits(2);
    if (!h || !literal(":")) return std::nullopt;
    auto m = digits(2);
    if (!m || !literal(":")) return std::nullopt;
    auto sec = digits(2);
    if (!sec || *h > 23 || *m > 59 || *sec > 60) return std::nullopt;
    return *h * 3600 + *m * 60 + *sec;
  }
};

template <std::size_t N>
bool is_one_of(std::string_view w, const std::array<std::string_view, N>& names) {
  for (auto n : names)
    if (w == n) return true;
  return false;
}

std::optional<sys_clock::time_point> make_time(int year, unsigned month, int day, int seconds) {
  std::chrono::year_month_day ymd{std::chrono::year{year}, std::chrono::month{month},
                                  std::chrono::day{static_cast<unsigned>(day)}};
  if (!ymd.ok()) return std::nullopt;  // e.g. 30 Feb
  return std::chrono::sys_days{ymd} + std::chrono::seconds{seconds};
}

/// The rest of an IMF-fixdate after "Sun, ": "06 Nov 1994 08:49:37 GMT".
std::optional<sys_clock::time_point> imf_fixdate(cursor c) {
  auto day = c.digits(2);
  if (!day || !c.literal(" ")) return std::nullopt;
  auto month = c.month();
  if (!month || !c.literal(" ")) return std::nullopt;
  auto year = c.digits(4);
  if (!year || !c.literal(" ")) return std::nullopt;
  auto t = c.time_of_day();
  if (!t || !c.literal(" GMT") || !c.s.empty()) return std::nullopt;
  return make_time(*year, month, *day, *t);
}

/// The rest of an RFC 850 date after "Sunday, ": "06-Nov-94 08:49:37 GMT".
std::optional<sys_clock::time_point> rfc850_date(cursor c, sys_clock::time_point now) {
  auto day = c.digits(2);
  if (!day || !c.literal("-")) return std::nullopt;
  auto month = c.month();
  if (!month || !c.literal("-")) return std::nullopt;
  auto yy = c.digits(2);
  if (!yy || !c.literal(" ")) return std::nullopt;
  auto t = c.time_of_day();
  if (!t || !c.literal(" GMT") || !c.s.empty()) return std::nullopt;
  // The year in the current century, moved back a century when that would be
  // more than 50 years ahead (RFC 9110: "the most recent year in the past that
  // had the same last two digits").
  int this_year = static_cast<int>(std::chrono::year_month_day{std::chrono::floor<std::chrono::days>(now)}.year());
  int year = this_year / 100 * 100 + *yy;
  if (year > this_year + 50) year -= 100;
  return make_time(year, month, *day, *t);
}

/// The rest of an asctime date after "Sun ": "Nov  6 08:49:37 1994".
std::optional<sys_clock::time_point> asctime_date(cursor c) {
  auto month = c.month();
  if (!month || !c.literal(" ")) return std::nullopt;
  std::optional<int> day = c.literal(" ") ? c.digits(1) : c.digits(2);
  if (!day || !c.literal(" ")) return std::nullopt;
  auto t = c.time_of_day();
  if (!t || !c.literal(" ")) return std::nullopt;
  auto year = c.digits(4);
  if (!year || !c.s.empty()) return std::nullopt;
  return make_time(*year, month, *day, *t);
}

}  // namespace

std::optional<sys_clock::time_point> parse_http_date(std::string_view text, sys_clock::time_point now) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  cursor c{text};
  auto day_name = c.word();
  // The day name is checked for form only: RFC 9110 lets a recipient ignore a
  // weekday that does not match the date, and the date is what matters here.
  if (c.literal(", ")) {
    if (is_one_of(day_name, short_days)) return imf_fixdate(c);
    if (is_one_of(day_name, long_days)) return rfc850_date(c, now);
    return std::nullopt;
  }
  if (is_one_of(day_name, short_days) && c.literal(" ")) return asctime_date(c);
  return std::nullopt;
}

}  // namespace troupe::protocols::llm
