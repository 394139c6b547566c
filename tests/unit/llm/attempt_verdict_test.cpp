// The failure table of docs/providers.md §5, without a network.
#include "attempt_verdict.hpp"

#include <gtest/gtest.h>

#include <boost/asio/error.hpp>

namespace troupe::protocols::llm::detail {
namespace {

using base::errc;

http_outcome status(int code, std::string body = "{}") {
  http_outcome o;
  o.got_header = true;
  o.status = code;
  o.body = std::move(body);
  return o;
}

verdict plain(http_outcome o) { return classify(api_kind::openai, "provider 'p'", false, o, nullptr, std::nullopt); }

TEST(attempt_verdict, success_closes_the_breaker) {
  auto v = plain(status(200, R"({"choices":[{"message":{"content":"x"}}]})"));
  ASSERT_TRUE(v.result);
  EXPECT_EQ(v.h, health::ok);
  EXPECT_FALSE(v.retry);
}

TEST(attempt_verdict, server_errors_retry_and_count_against_the_provider) {
  for (int code : {500, 502, 503, 504, 529}) {
    auto o = status(code, R"({"type":"error","error":{"type":"api_error","message":"boom"}})");
    o.retry_after = "1";
    auto v = plain(o);
    ASSERT_FALSE(v.result);
    EXPECT_EQ(v.result.error().code, errc::provider_error);
    EXPECT_TRUE(v.result.error().retryable);
    EXPECT_TRUE(v.retry);
    EXPECT_EQ(v.h, health::failure);
    EXPECT_EQ(v.retry_after_ms, 1000);
    EXPECT_NE(v.result.error().message.find("HTTP " + std::to_string(code) + ": api_error: boom"), std::string::npos);
  }
}

TEST(attempt_verdict, rate_limits_retry_without_blaming_availability) {
  auto o = status(429);
  o.retry_after_ms = "250";
  auto v = plain(o);
  EXPECT_TRUE(v.retry);
  EXPECT_EQ(v.h, health::neutral);
  EXPECT_EQ(v.retry_after_ms, 250);
}

TEST(attempt_verdict, client_errors_are_final) {
  for (int code : {400, 401, 403, 404, 422}) {
    auto v = plain(status(code, R"({"error":{"message":"nope"}})"));
    ASSERT_FALSE(v.result);
    EXPECT_FALSE(v.retry);
    EXPECT_FALSE(v.result.error().retryable);
    EXPECT_EQ(v.h, health::ok);
    EXPECT_NE(v.result.error().message.find("nope"), std::string::npos);
  }
}

TEST(attempt_verdict, transport_failures_and_timeouts) {
  http_outcome refused;
  refused.ec = boost::asio::error::connection_refused;
  refused.stage = "connect";
  auto v = plain(refused);
  EXPECT_EQ(v.result.error().code, errc::unavailable);
  EXPECT_NE(v.result.error().message.find("connect failed"), std::string::npos);
  EXPECT_TRUE(v.retry);
  EXPECT_EQ(v.h, health::failure);

  http_outcome slow;
  slow.ec = boost::asio::error::timed_out;
  slow.timed_out = true;
  slow.stage = "read";
  v = plain(slow);
  EXPECT_EQ(v.result.error().code, errc::timeout);
  EXPECT_EQ(v.h, health::failure);

  auto cut = status(200);
  cut.ec = boost::asio::error::eof;
  v = plain(cut);
  EXPECT_EQ(v.result.error().code, errc::provider_error);
  EXPECT_NE(v.result.error().message.find("truncated"), std::string::npos);
  EXPECT_EQ(v.h, health::neutral);
}

TEST(attempt_verdict, streams_must_reach_their_final_event) {
  stream_decoder d(api_kind::openai, "provider 'p'");
  std::string token;
  ASSERT_TRUE(d.feed({"", R"({"choices":[{"delta":{"content":"hi"}}]})"}, token));
  auto o = status(200, "");
  auto v = classify(api_kind::openai, "provider 'p'", true, o, &d, std::nullopt);
  ASSERT_FALSE(v.result);
  EXPECT_NE(v.result.error().message.find("stream truncated before its final event"), std::string::npos);
  EXPECT_FALSE(v.retry);
  ASSERT_TRUE(d.feed({"", "[DONE]"}, token));
  v = classify(api_kind::openai, "provider 'p'", true, o, &d, std::nullopt);
  ASSERT_TRUE(v.result);
  EXPECT_EQ(v.result->text, "hi");
  auto bad = status(200, "");
  bad.stopped = true;
  v = classify(api_kind::openai, "provider 'p'", true, bad, &d,
               base::error{errc::provider_error, "provider 'p': malformed response: x", true});
  ASSERT_FALSE(v.result);
  EXPECT_NE(v.result.error().message.find("malformed"), std::string::npos);
  EXPECT_FALSE(v.retry);
}

}  // namespace
}  // namespace troupe::protocols::llm::detail
