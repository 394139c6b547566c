#include <gtest/gtest.h>

#include "troupe/protocols/llm/circuit_breaker.hpp"
#include "troupe/protocols/llm/endpoint.hpp"
#include "troupe/protocols/llm/fair_queue.hpp"
#include "troupe/protocols/llm/retry_policy.hpp"
#include "troupe/protocols/llm/token_bucket.hpp"

namespace troupe::protocols::llm {
namespace {

TEST(circuit_breaker, opens_after_consecutive_failures_and_probes_once) {
  circuit_breaker b(3, 1000);
  b.record_failure(0);
  b.record_failure(0);
  b.record_success();  // resets the run
  b.record_failure(0);
  b.record_failure(0);
  EXPECT_TRUE(b.allow(0));
  b.record_failure(10);
  EXPECT_EQ(b.state(10), breaker_state::open);
  EXPECT_FALSE(b.allow(500));
  EXPECT_EQ(b.remaining_open_ms(510), 500);
  EXPECT_EQ(b.state(1010), breaker_state::half_open);
  EXPECT_TRUE(b.allow(1010));   // the probe
  EXPECT_FALSE(b.allow(1011));  // only one
  b.record_failure(1020);       // probe failed: open again
  EXPECT_EQ(b.state(1500), breaker_state::open);
  EXPECT_TRUE(b.allow(2020));
  b.record_success();
  EXPECT_EQ(b.state(2020), breaker_state::closed);
  EXPECT_TRUE(b.allow(2020));
}

TEST(circuit_breaker, an_abandoned_probe_lets_another_one_go) {
  circuit_breaker b(1, 100);
  b.record_failure(0);
  EXPECT_TRUE(b.allow(100));
  b.release_probe();
  EXPECT_TRUE(b.allow(101));
}

TEST(token_bucket, refills_continuously_and_takes_corrections) {
  token_bucket t(600, 0);  // 10 per second
  for (int i = 0; i < 600; ++i) ASSERT_TRUE(t.try_take(1, 0));
  EXPECT_FALSE(t.try_take(1, 0));
  EXPECT_EQ(t.wait_ms(1, 0), 100);
  EXPECT_TRUE(t.try_take(1, 100));
  t.adjust(-50, 100);  // used more than estimated
  EXPECT_EQ(t.wait_ms(1, 100), 5100);
  t.adjust(1000, 100);  // capped at capacity
  EXPECT_NEAR(t.level(100), 600, 1e-6);
  EXPECT_TRUE(t.try_take(5000, 100));  // a request larger than the bucket is clamped, not starved
  token_bucket unlimited(0);
  EXPECT_TRUE(unlimited.try_take(1'000'000, 0));
  EXPECT_EQ(unlimited.wait_ms(1'000'000, 0), 0);
}

TEST(fair_queue, priority_first_then_teams_take_turns) {
  fair_queue q;
  q.push(1, 5, "a");
  q.push(2, 5, "a");
  q.push(3, 5, "a");
  q.push(4, 5, "b");
  q.push(5, 9, "c");
  q.push(6, 5, "b");
  EXPECT_EQ(q.peek(), 5u);
  std::vector<std::uint64_t> order;
  while (auto id = q.pop()) order.push_back(*id);
  EXPECT_EQ(order, (std::vector<std::uint64_t>{5, 1, 4, 2, 6, 3}));
  EXPECT_TRUE(q.empty());
}

TEST(fair_queue, erase_removes_anywhere) {
  fair_queue q;
  q.push(1, 5, "a");
  q.push(2, 2, "b");
  EXPECT_TRUE(q.erase(2));
  EXPECT_FALSE(q.erase(2));
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.pop(), 1u);
}

TEST(retry_policy, backoff_grows_with_jitter_under_the_cap) {
  config::retry_policy p{5, 100, 1000};
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100; ++i) {
    auto d1 = backoff_ms(p, 1, rng), d3 = backoff_ms(p, 3, rng), d9 = backoff_ms(p, 9, rng);
    EXPECT_GE(d1, 50);
    EXPECT_LE(d1, 100);
    EXPECT_GE(d3, 200);
    EXPECT_LE(d3, 400);
    EXPECT_GE(d9, 500);
    EXPECT_LE(d9, 1000);
  }
}

TEST(retry_policy, parses_retry_after_headers) {
  EXPECT_EQ(parse_retry_after("2", ""), 2000);
  EXPECT_EQ(parse_retry_after("0.5", ""), 500);
  EXPECT_EQ(parse_retry_after("2", "150"), 150);
  EXPECT_EQ(parse_retry_after("", ""), std::nullopt);
  EXPECT_EQ(parse_retry_after("-3", ""), std::nullopt);
  EXPECT_EQ(parse_retry_after("soon", ""), std::nullopt);
  EXPECT_EQ(parse_retry_after("1e300", ""), parse_retry_after("1e299", ""));  // capped, no overflow
}

/// A UTC instant from its calendar parts.
std::chrono::system_clock::time_point utc(int y, unsigned mo, unsigned d, int h, int mi, int s) {
  using namespace std::chrono;
  return sys_days{year{y} / month{mo} / day{d}} + hours{h} + minutes{mi} + seconds{s};
}

TEST(retry_policy, retry_after_as_an_http_date_in_all_three_forms) {
  const auto now = utc(2015, 10, 21, 7, 27, 30);
  // RFC 9110 section 5.6.7: IMF-fixdate, the obsolete RFC 850 form and asctime.
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", "", now), 30000);
  EXPECT_EQ(parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", "", now), 30000);
  EXPECT_EQ(parse_retry_after("Wed Oct 21 07:28:00 2015", "", now), 30000);
  EXPECT_EQ(parse_retry_after("Wed Oct  1 07:28:00 2015", "", utc(2015, 10, 1, 7, 27, 58)), 2000);
  EXPECT_EQ(parse_retry_after("  Wed, 21 Oct 2015 07:29:00 GMT\t", "", now), 90000);  // OWS around the value
  // A date already past means "retry now"; retry-after-ms still wins.
  EXPECT_EQ(parse_retry_after("Tue, 20 Oct 2015 07:28:00 GMT", "", now), 0);
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", "150", now), 150);
  // Leap day and end of year.
  EXPECT_EQ(parse_http_date("Mon, 29 Feb 2016 23:59:59 GMT"), utc(2016, 2, 29, 23, 59, 59));
  EXPECT_EQ(parse_http_date("Thu, 31 Dec 1998 00:00:00 GMT"), utc(1998, 12, 31, 0, 0, 0));
}

TEST(retry_policy, rfc850_two_digit_years_are_never_far_in_the_future) {
  const auto now = utc(2026, 6, 1, 0, 0, 0);
  EXPECT_EQ(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", now), utc(1994, 11, 6, 8, 49, 37));
  EXPECT_EQ(parse_http_date("Monday, 01-Jun-26 00:00:05 GMT", now), utc(2026, 6, 1, 0, 0, 5));
  EXPECT_EQ(parse_http_date("Friday, 01-Jan-76 00:00:00 GMT", now), utc(2076, 1, 1, 0, 0, 0));  // 50 years ahead
  EXPECT_EQ(parse_http_date("Tuesday, 01-Jan-77 00:00:00 GMT", now), utc(1977, 1, 1, 0, 0, 0));  // 51: last century
}

TEST(retry_policy, unparseable_http_dates_fall_back_to_the_normal_backoff) {
  const auto now = utc(2015, 10, 21, 7, 27, 30);
  for (const char* bad : {
           "Wed, 21 Oct 2015 07:28:00",        // no GMT
           "Wed, 21 Oct 2015 07:28:00 UTC",    // other zone name
           "Wed, 21 Oct 2015 07:28:00 GMT x",  // trailing text
           "Wed, 21 Okt 2015 07:28:00 GMT",    // unknown month
           "Xyz, 21 Oct 2015 07:28:00 GMT",    // unknown day name
           "Wednesday, 21 Oct 2015 07:28:00 GMT",  // long day name with the IMF layout
           "Wed, 21-Oct-15 07:28:00 GMT",      // short day name with the RFC 850 layout
           "Wed, 30 Feb 2015 07:28:00 GMT",    // no such day
           "Wed, 21 Oct 2015 24:00:00 GMT",    // hour out of range
           "Wed, 21 Oct 2015 07:60:00 GMT",    // minute out of range
           "Wed, 1 Oct 2015 07:28:00 GMT",     // IMF days have two digits
           "Wed, 21 Oct 15 07:28:00 GMT",      // IMF years have four
           "Wed Oct 21 07:28:00 15",           // asctime years have four
           "Wed Oct 21 7:28:00 2015",          // hours have two digits
           "Wed,21 Oct 2015 07:28:00 GMT",     // missing space
           "2015-10-21T07:28:00Z",             // ISO 8601 is not an HTTP-date
           "",
       }) {
    EXPECT_EQ(parse_http_date(bad, now), std::nullopt) << bad;
    EXPECT_EQ(parse_retry_after(bad, "", now), std::nullopt) << bad;
  }
}

TEST(endpoint, parses_provider_base_urls) {
  auto a = parse_endpoint("https://api.openai.com/v1/");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->tls);
  EXPECT_EQ(a->host, "api.openai.com");
  EXPECT_EQ(a->port, "443");
  EXPECT_EQ(a->path, "/v1");
  EXPECT_EQ(a->host_header(), "api.openai.com");
  auto b = parse_endpoint("http://127.0.0.1:8080");
  ASSERT_TRUE(b);
  EXPECT_FALSE(b->tls);
  EXPECT_EQ(b->port, "8080");
  EXPECT_EQ(b->path, "");
  EXPECT_EQ(b->host_header(), "127.0.0.1:8080");
  auto c = parse_endpoint("http://[::1]:99/x");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->host_header(), "[::1]:99");
  for (auto bad : {"api.openai.com", "ftp://x", "http://", "http://h:0", "http://h:99999", "http://u:p@h/",
                   "http://h/x?y=1", "http://h:abc"}) {
    auto r = parse_endpoint(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, base::errc::invalid_config);
  }
}

}  // namespace
}  // namespace troupe::protocols::llm
