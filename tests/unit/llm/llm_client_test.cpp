// The llm client against the fake provider over real loopback HTTP.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "troupe/fake_llm/fake_llm.hpp"
#include "troupe/protocols/llm/llm_pool.hpp"

namespace troupe::protocols::llm {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using base::errc;

constexpr const char* secret_key = "sk-test-SECRET-0123456789";
constexpr auto test_deadline = 60s;

struct outcome {
  base::result<base::llm_response> result = base::fail(errc::internal, "not finished");
  std::string tokens;
  std::chrono::milliseconds elapsed{0};
};

/// Collects the callbacks of one call; wait() blocks until done ran (or fails the
/// test after a deadline).
class collector {
 public:
  base::llm_token_fn token_fn() {
    return [this](std::string_view t) {
      std::lock_guard lock(mu_);
      out_.tokens.append(t);
    };
  }
  base::llm_done_fn done_fn() {
    return [this](base::result<base::llm_response> r) {
      std::lock_guard lock(mu_);
      ++done_calls_;
      out_.result = std::move(r);
      out_.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - start_);
      promise_.set_value();
    };
  }
  outcome wait() {
    if (future_.wait_for(test_deadline) != std::future_status::ready) {
      ADD_FAILURE() << "call did not finish within the test deadline";
      return {};
    }
    std::lock_guard lock(mu_);
    EXPECT_EQ(done_calls_, 1);
    return out_;
  }
  bool ready() const { return future_.wait_for(0s) == std::future_status::ready; }

 private:
  std::mutex mu_;
  outcome out_;
  int done_calls_ = 0;
  steady::time_point start_ = steady::now();
  std::promise<void> promise_;
  std::shared_future<void> future_ = promise_.get_future().share();
};

/// Polls `cond` until it holds or the deadline passes (conditions observed from
/// outside, such as the fake's counters, have no notification to wait on).
template <class F>
bool eventually(F cond, std::chrono::milliseconds deadline = 10s) {
  auto until = steady::now() + deadline;
  while (!cond()) {
    if (steady::now() > until) return false;
    std::this_thread::yield();
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

class llm_client_test : public ::testing::Test {
 protected:
  void SetUp() override {
    auto port = fake_.start();
    ASSERT_TRUE(port) << port.error().message;
    fake_.set_expected_key(secret_key);
  }
  void TearDown() override {
    client_.reset();
    fake_.stop();
  }

  config::provider provider(config::provider_kind kind) {
    config::provider p;
    p.kind = kind;
    p.name = kind == config::provider_kind::openai ? "oa" : "an";
    p.base_url = fake_.endpoint() + (kind == config::provider_kind::openai ? "/v1" : "");
    p.api_key = secret_key;
    p.max_concurrency = 64;
    p.connect_timeout_ms = 1000;
    p.timeout_ms = 5000;
    p.retry = {4, 2, 20};
    p.breaker = {1000, 200};
    return p;
  }

  void make_client(std::vector<config::provider> providers, int threads = 1) {
    std::map<std::string, config::provider> m;
    for (auto& p : providers) m[p.name] = p;
    client_ = make_llm_pool(m, threads);
  }

  /// An openai provider "oa" with a 30 s attempt deadline, `read_timeout_ms` and two attempts.
  void client_with_read_timeout(std::int64_t read_timeout_ms) {
    auto p = provider(config::provider_kind::openai);
    p.timeout_ms = 30000;
    p.read_timeout_ms = read_timeout_ms;
    p.retry = {2, 1, 5};
    make_client({p});
  }

  static base::llm_request request(const std::string& provider, bool stream, std::string text = "hello there") {
    base::llm_request r;
    r.provider = provider;
    r.model = "m1";
    r.system = "You echo.";
    r.messages = {{"user", "earlier"}, {"assistant", "earlier answer"}, {"user", std::move(text)}};
    r.max_tokens = 16;
    r.stream = stream;
    r.timeout_ms = 60000;  // generous: sanitizer builds on a loaded box are slow
    r.team = "t";
    return r;
  }

  outcome run(base::llm_request r) {
    collector c;
    client_->call(std::move(r), c.token_fn(), c.done_fn());
    return c.wait();
  }

  fake_llm::fake_llm_server fake_;
  std::unique_ptr<llm_pool> client_;
};

TEST_F(llm_client_test, openai_and_anthropic_answer_without_streaming) {
  make_client({provider(config::provider_kind::openai), provider(config::provider_kind::anthropic)});
  for (std::string name : {"oa", "an"}) {
    auto o = run(request(name, false));
    ASSERT_TRUE(o.result) << o.result.error().message;
    EXPECT_EQ(o.result->text, "echo: hello there");
    EXPECT_EQ(o.result->usage.tokens_out, 3);
    EXPECT_GT(o.result->usage.tokens_in, 3);
    EXPECT_EQ(o.result->attempts, 1);
    EXPECT_TRUE(o.tokens.empty());
  }
  auto c = fake_.counters();
  EXPECT_EQ(c.by_path["/v1/chat/completions"], 1);
  EXPECT_EQ(c.by_path["/v1/messages"], 1);
  EXPECT_EQ(c.by_model["m1"], 2);
  auto stats = client_->stats();
  EXPECT_EQ(stats["oa"].calls, 1u);
  EXPECT_EQ(stats["oa"].tokens_out, 3u);
  EXPECT_EQ(stats["an"].breaker_state, "closed");
}

TEST_F(llm_client_test, openai_and_anthropic_stream_tokens_and_usage) {
  make_client({provider(config::provider_kind::openai), provider(config::provider_kind::anthropic)});
  fake_.set_token_delay_ms(2);  // separate reads, so the parser sees events arrive one by one
  for (std::string name : {"oa", "an"}) {
    auto o = run(request(name, true, "one two three four"));
    ASSERT_TRUE(o.result) << o.result.error().message;
    EXPECT_EQ(o.result->text, "echo: one two three four");
    EXPECT_EQ(o.tokens, "echo: one two three four");
    EXPECT_EQ(o.result->usage.tokens_out, 5) << name;
    EXPECT_GT(o.result->usage.tokens_in, 0) << name;
    EXPECT_FALSE(o.result->finish_reason.empty());
  }
}

TEST_F(llm_client_test, a_server_that_ignores_stream_still_answers) {
  make_client({provider(config::provider_kind::openai), provider(config::provider_kind::anthropic)});
  auto k = fake_.knobs();
  k.ignore_stream = true;
  fake_.set_knobs(k);
  for (std::string name : {"oa", "an"}) {
    auto o = run(request(name, true));
    ASSERT_TRUE(o.result) << o.result.error().message;
    EXPECT_EQ(o.result->text, "echo: hello there");
    EXPECT_EQ(o.tokens, "echo: hello there");  // one token with the whole text
    EXPECT_EQ(o.result->usage.tokens_out, 3);
  }
}

TEST_F(llm_client_test, a_throwing_callback_does_not_hurt_the_client) {
  make_client({provider(config::provider_kind::openai)});
  collector c;
  client_->call(request("oa", true), [](std::string_view) { throw std::runtime_error("token sink broke"); },
                c.done_fn());
  EXPECT_TRUE(c.wait().result);  // the stream still completed; the throw was logged
  std::promise<void> thrown;
  client_->call(request("oa", false), nullptr, [&](base::result<base::llm_response>) {
    thrown.set_value();
    throw std::runtime_error("done sink broke");
  });
  ASSERT_EQ(thrown.get_future().wait_for(test_deadline), std::future_status::ready);
  EXPECT_TRUE(run(request("oa", false)).result);
  const base::llm_client& port = *client_;
  EXPECT_EQ(llm_stats(port).at("oa").calls, 3u);
}

TEST_F(llm_client_test, keep_alive_reuses_connections) {
  make_client({provider(config::provider_kind::openai)});
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(run(request("oa", i % 2 == 0)).result);
  EXPECT_EQ(fake_.counters().connections, 1);
}

TEST_F(llm_client_test, a_thousand_calls_survive_20pc_500s_and_10pc_429s) {
  auto oa = provider(config::provider_kind::openai);
  auto an = provider(config::provider_kind::anthropic);
  oa.retry = an.retry = {12, 1, 10};
  make_client({oa, an});
  fake_.set_seed(1234);
  fake_.set_error_rate_500(0.2);
  fake_.set_error_rate_429(0.1, 1);
  constexpr int n = 1000;
  std::vector<std::unique_ptr<collector>> calls;
  for (int i = 0; i < n; ++i) {
    calls.push_back(std::make_unique<collector>());
    auto r = request(i % 2 ? "oa" : "an", i % 4 < 2, "call " + std::to_string(i));
    r.timeout_ms = 120000;  // queueing behind 999 others on a loaded sanitizer build takes a while
    client_->call(std::move(r), calls.back()->token_fn(), calls.back()->done_fn());
  }
  int ok = 0, retried = 0;
  for (int i = 0; i < n; ++i) {
    auto o = calls[static_cast<std::size_t>(i)]->wait();
    if (!o.result) {
      ADD_FAILURE() << "call " << i << ": " << o.result.error().message;
      continue;
    }
    ++ok;
    retried += o.result->attempts > 1;
    EXPECT_EQ(o.result->text, "echo: call " + std::to_string(i));
  }
  EXPECT_EQ(ok, n);
  EXPECT_GT(retried, n / 10);
  auto stats = client_->stats();
  EXPECT_EQ(stats["oa"].calls + stats["an"].calls, static_cast<std::uint64_t>(n));
  EXPECT_EQ(stats["oa"].failures + stats["an"].failures, 0u);
  EXPECT_EQ(static_cast<std::uint64_t>(fake_.counters().total), n + stats["oa"].retries + stats["an"].retries);
}

TEST_F(llm_client_test, a_hanging_provider_times_out_each_attempt_and_retries) {
  auto p = provider(config::provider_kind::openai);
  p.timeout_ms = 150;
  p.retry = {3, 1, 5};
  make_client({p});
  fake_.set_hang(true);
  auto o = run(request("oa", false));
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, errc::timeout);
  EXPECT_TRUE(o.result.error().retryable);
  EXPECT_NE(o.result.error().message.find("after 3 attempts"), std::string::npos) << o.result.error().message;
  EXPECT_EQ(fake_.counters().total, 3);
  EXPECT_GE(o.elapsed, 450ms);
  EXPECT_LT(o.elapsed, 5s);
}

TEST_F(llm_client_test, a_stream_that_stalls_after_its_first_tokens_times_out_mid_body) {
  // The attempt's deadline covers the reads after the header too: the one timer per
  // attempt closes the socket with the body half read. On a reused connection, so
  // the timer is the one armed without a connect before it.
  auto p = provider(config::provider_kind::openai);
  p.timeout_ms = 1000;  // ample for the first call, even under a sanitizer on a busy box
  make_client({p});
  ASSERT_TRUE(run(request("oa", true)).result);
  fake_.set_token_delay_ms(600);  // "echo:" at once, then a word every 600 ms: the rest outlasts 1 s
  auto o = run(request("oa", true, "one two three four"));
  EXPECT_EQ(fake_.counters().connections, 1);
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, errc::timeout) << o.result.error().message;
  EXPECT_NE(o.result.error().message.find("during read"), std::string::npos) << o.result.error().message;
  EXPECT_FALSE(o.tokens.empty());                      // what arrived in time was forwarded
  EXPECT_NE(o.tokens, "echo: one two three four");     // and not the whole reply
  EXPECT_EQ(fake_.counters().total, 2);                // tokens went out: no retry repeats them
  EXPECT_LT(o.elapsed, 5s);
}

TEST_F(llm_client_test, a_stream_silent_longer_than_its_read_timeout_fails_long_before_the_deadline) {
  // The header and the first event (the role, no text yet) come at once, then
  // nothing for 3 s: each attempt ends 300 ms into the silence, mid-body.
  client_with_read_timeout(300);
  fake_.set_token_delay_ms(3000);
  auto o = run(request("oa", true, "one two three"));
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, errc::timeout) << o.result.error().message;
  EXPECT_NE(o.result.error().message.find(
                "no bytes from the provider for 300 ms (read_timeout_ms) during read (after 2 attempts)"),
            std::string::npos)
      << o.result.error().message;
  EXPECT_TRUE(o.tokens.empty());         // no text had come: the attempt was retried
  EXPECT_EQ(fake_.counters().total, 2);
  EXPECT_LT(o.elapsed, 3000ms);          // the read timeout, not the 30 s deadline
}

TEST_F(llm_client_test, a_steady_stream_may_outlast_its_read_timeout) {
  auto p = provider(config::provider_kind::openai);
  p.read_timeout_ms = 800;
  make_client({p});
  fake_.set_token_delay_ms(80);  // a word every 80 ms: the whole reply takes longer than 800 ms
  const std::string words = "a b c d e f g h i j k l";
  auto o = run(request("oa", true, words));
  ASSERT_TRUE(o.result) << o.result.error().message;
  EXPECT_EQ(o.tokens, "echo: " + words);
  EXPECT_GT(o.elapsed, 800ms);
}

TEST_F(llm_client_test, a_provider_that_never_starts_answering_hits_the_read_timeout_and_is_retried) {
  client_with_read_timeout(150);
  fake_.set_hang(true);
  auto o = run(request("oa", false));
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, errc::timeout);
  EXPECT_NE(o.result.error().message.find("(read_timeout_ms) during read (after 2 attempts)"), std::string::npos)
      << o.result.error().message;
  EXPECT_EQ(fake_.counters().total, 2);
  EXPECT_GE(o.elapsed, 300ms);
  EXPECT_LT(o.elapsed, 5s);
}

TEST_F(llm_client_test, the_call_deadline_bounds_all_attempts) {
  auto p = provider(config::provider_kind::anthropic);
  p.retry = {10, 1, 5};
  make_client({p});
  fake_.set_hang(true);
  auto r = request("an", true);
  r.timeout_ms = 200;
  auto o = run(r);
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, errc::timeout);
  EXPECT_LT(o.elapsed, 2s);
}

TEST_F(llm_client_test, breaker_opens_when_the_provider_is_down_and_recovers) {
  auto p = provider(config::provider_kind::openai);
  p.retry = {1, 1, 1};
  p.breaker = {3, 300};
  make_client({p});
  ASSERT_TRUE(run(request("oa", false)).result);  // leaves a kept-alive connection behind
  fake_.set_down(true);
  for (int i = 0; i < 3; ++i) {
    auto o = run(request("oa", false));
    ASSERT_FALSE(o.result);
    EXPECT_EQ(o.result.error().code, errc::unavailable) << o.result.error().message;
    EXPECT_NE(o.result.error().message.find("connect failed"), std::string::npos) << o.result.error().message;
  }
  EXPECT_EQ(client_->stats()["oa"].breaker_state, "open");
  auto fast = run(request("oa", false));
  ASSERT_FALSE(fast.result);
  EXPECT_EQ(fast.result.error().code, errc::unavailable);
  EXPECT_NE(fast.result.error().message.find("circuit breaker open"), std::string::npos)
      << fast.result.error().message;
  EXPECT_LT(fast.elapsed, 100ms);

  fake_.set_down(false);
  auto before = fake_.counters().total;
  // Calls fail fast until open_ms has passed; then one probe closes the breaker.
  bool recovered = eventually([&] { return static_cast<bool>(run(request("oa", false)).result); }, 5s);
  ASSERT_TRUE(recovered);
  EXPECT_EQ(fake_.counters().total, before + 1);  // only the probe reached the provider
  EXPECT_EQ(client_->stats()["oa"].breaker_state, "closed");
  EXPECT_TRUE(run(request("oa", true)).result);
}

TEST_F(llm_client_test, unauthorized_fails_at_once_with_the_providers_message) {
  make_client({provider(config::provider_kind::openai), provider(config::provider_kind::anthropic)});
  fake_.set_expected_key("sk-some-other-key");
  for (std::string name : {"oa", "an"}) {
    auto o = run(request(name, name == "an"));
    ASSERT_FALSE(o.result);
    EXPECT_EQ(o.result.error().code, errc::provider_error);
    EXPECT_FALSE(o.result.error().retryable);
    const auto& msg = o.result.error().message;
    EXPECT_NE(msg.find("HTTP 401"), std::string::npos) << msg;
    EXPECT_NE(msg.find(name == "oa" ? "Incorrect API key provided" : "authentication_error"), std::string::npos)
        << msg;
    // The fake quotes the presented key back; the client must not pass it on.
    EXPECT_EQ(msg.find(secret_key), std::string::npos) << msg;
    EXPECT_NE(msg.find("[redacted]"), std::string::npos) << msg;
  }
  EXPECT_EQ(fake_.counters().total, 2);  // no retries
}

TEST_F(llm_client_test, status_override_400_is_not_retried) {
  make_client({provider(config::provider_kind::anthropic)});
  fake_.set_status_override(400);
  auto o = run(request("an", false));
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, errc::provider_error);
  EXPECT_NE(o.result.error().message.find("invalid_request_error"), std::string::npos);
  EXPECT_EQ(fake_.counters().total, 1);
}

TEST_F(llm_client_test, retry_after_is_honoured) {
  auto p = provider(config::provider_kind::openai);
  p.retry = {2, 1, 1};
  make_client({p});
  fake_.set_error_rate_429(1.0, 200);
  auto o = run(request("oa", false));
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, errc::provider_error);
  EXPECT_TRUE(o.result.error().retryable);
  EXPECT_NE(o.result.error().message.find("429"), std::string::npos);
  EXPECT_EQ(fake_.counters().total, 2);
  EXPECT_GE(o.elapsed, 200ms);
}

TEST_F(llm_client_test, retry_after_given_as_an_http_date_is_honoured) {
  auto p = provider(config::provider_kind::anthropic);
  p.retry = {2, 1, 1};  // without the hint the retry would follow within a millisecond
  make_client({p});
  fake_.set_error_rate_429(1.0, 1500);
  fake_.set_retry_after_date(true);  // "retry-after: <IMF-fixdate>", no retry-after-ms
  auto o = run(request("an", false));
  ASSERT_FALSE(o.result);
  EXPECT_NE(o.result.error().message.find("429"), std::string::npos) << o.result.error().message;
  EXPECT_EQ(fake_.counters().total, 2);
  // The date is at least 1.5 s after the fake's clock (same machine); allow for
  // the one-second resolution only upwards.
  EXPECT_GE(o.elapsed, 1400ms);
}

TEST_F(llm_client_test, malformed_json_and_truncated_streams_are_clean_errors) {
  make_client({provider(config::provider_kind::openai), provider(config::provider_kind::anthropic)});
  fake_.set_malformed_json(true);
  for (std::string name : {"oa", "an"})
    for (bool stream : {false, true}) {
      auto o = run(request(name, stream));
      ASSERT_FALSE(o.result) << name << stream;
      EXPECT_EQ(o.result.error().code, errc::provider_error);
      EXPECT_NE(o.result.error().message.find("malformed response"), std::string::npos) << o.result.error().message;
    }
  fake_.set_malformed_json(false);
  fake_.set_truncated_stream(true);
  for (std::string name : {"oa", "an"}) {
    auto o = run(request(name, true, "a b c d e f g h"));
    ASSERT_FALSE(o.result) << name;
    EXPECT_EQ(o.result.error().code, errc::provider_error);
    EXPECT_NE(o.result.error().message.find("truncated"), std::string::npos) << o.result.error().message;
    EXPECT_FALSE(o.tokens.empty());  // what arrived was forwarded; the call still failed
  }
  // The client is fine afterwards.
  fake_.set_truncated_stream(false);
  EXPECT_TRUE(run(request("oa", true)).result);
}

TEST_F(llm_client_test, cancel_aborts_an_in_flight_call_at_once) {
  make_client({provider(config::provider_kind::anthropic)});
  fake_.set_hang(true);
  collector c;
  auto handle = client_->call(request("an", true), c.token_fn(), c.done_fn());
  ASSERT_TRUE(eventually([&] { return fake_.counters().total == 1; }));
  EXPECT_FALSE(c.ready());
  auto t0 = steady::now();
  handle->cancel();
  auto o = c.wait();
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, errc::cancelled);
  EXPECT_LT(steady::now() - t0, 500ms);
  handle->cancel();  // a second cancel is harmless
  EXPECT_TRUE(eventually([&] { return fake_.counters().concurrent == 0; }));  // the connection was closed
}

TEST_F(llm_client_test, max_concurrency_is_respected) {
  auto p = provider(config::provider_kind::openai);
  p.max_concurrency = 4;
  make_client({p}, 2);
  fake_.set_latency_ms(20);
  std::vector<std::unique_ptr<collector>> calls;
  for (int i = 0; i < 40; ++i) {
    calls.push_back(std::make_unique<collector>());
    client_->call(request("oa", i % 2 == 0), calls.back()->token_fn(), calls.back()->done_fn());
  }
  for (auto& c : calls) EXPECT_TRUE(c->wait().result);
  EXPECT_LE(fake_.counters().max_concurrent, 4);
  EXPECT_GE(fake_.counters().max_concurrent, 2);  // the limit, not a lack of load, held it down
  EXPECT_LE(fake_.counters().connections, 4);
}

TEST_F(llm_client_test, requests_per_minute_bucket_delays_calls) {
  auto p = provider(config::provider_kind::openai);
  p.limits.requests_per_min = 600;  // a burst of 600, then one every 100 ms
  make_client({p});
  std::vector<std::unique_ptr<collector>> calls;
  auto t0 = steady::now();
  for (int i = 0; i < 605; ++i) {
    calls.push_back(std::make_unique<collector>());
    client_->call(request("oa", false), calls.back()->token_fn(), calls.back()->done_fn());
  }
  for (auto& c : calls) ASSERT_TRUE(c->wait().result);
  EXPECT_GE(steady::now() - t0, 450ms);
  EXPECT_EQ(fake_.counters().total, 605);
}

TEST_F(llm_client_test, tokens_per_minute_bucket_delays_calls_and_counts_real_usage) {
  auto p = provider(config::provider_kind::openai);
  p.limits.tokens_per_min = 6000;  // 100 tokens per second
  make_client({p});
  auto r = request("oa", false);
  r.max_tokens = 3000;  // estimate ~3000 each: two calls fit, the third waits for the refund
  auto t0 = steady::now();
  ASSERT_TRUE(run(r).result);
  ASSERT_TRUE(run(r).result);
  // Real usage (~10 tokens) was given back, so the third call does not wait 30 s.
  ASSERT_TRUE(run(r).result);
  EXPECT_LT(steady::now() - t0, 3s);
  // Spend the bucket for real: a huge estimate that cannot be refunded in time.
  r.max_tokens = 6000;
  collector a, b;
  client_->call(r, a.token_fn(), a.done_fn());
  ASSERT_TRUE(a.wait().result);
  auto t1 = steady::now();
  r.max_tokens = 200;  // needs ~210 tokens: waits until ~2 s of refill after the refund
  client_->call(r, b.token_fn(), b.done_fn());
  ASSERT_TRUE(b.wait().result);
  EXPECT_LT(steady::now() - t1, 5s);
}

TEST_F(llm_client_test, waiting_calls_go_by_priority_then_team_turns) {
  auto p = provider(config::provider_kind::openai);
  p.max_concurrency = 1;
  make_client({p});
  fake_.set_latency_ms(30);
  std::mutex mu;
  std::vector<std::string> order;
  std::vector<std::unique_ptr<collector>> calls;
  auto submit = [&](const std::string& label, int priority, const std::string& team) {
    auto r = request("oa", false, label);
    r.priority = priority;
    r.team = team;
    calls.push_back(std::make_unique<collector>());
    auto done = calls.back()->done_fn();
    client_->call(r, nullptr, [&, label, done](base::result<base::llm_response> res) {
      {
        std::lock_guard lock(mu);
        order.push_back(label);
      }
      done(std::move(res));
    });
  };
  submit("first", 5, "a");  // occupies the only slot
  ASSERT_TRUE(eventually([&] { return fake_.counters().total == 1; }));
  submit("a-low", 2, "a");
  submit("a1", 5, "a");
  submit("a2", 5, "a");
  submit("b1", 5, "b");
  submit("urgent", 9, "c");
  for (auto& c : calls) ASSERT_TRUE(c->wait().result);
  EXPECT_EQ(order, (std::vector<std::string>{"first", "urgent", "a1", "b1", "a2", "a-low"}));
}

TEST_F(llm_client_test, https_to_a_plain_http_server_fails_cleanly) {
  auto p = provider(config::provider_kind::anthropic);
  p.base_url = "https://127.0.0.1:" + std::to_string(fake_.port());
  p.retry = {2, 1, 1};
  p.connect_timeout_ms = 2000;
  make_client({p});
  auto o = run(request("an", false));
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, errc::unavailable);
  EXPECT_NE(o.result.error().message.find("tls failed"), std::string::npos) << o.result.error().message;
}

TEST_F(llm_client_test, a_missing_ca_file_is_a_config_error) {
  auto p = provider(config::provider_kind::openai);
  p.base_url = "https://127.0.0.1:1/v1";
  p.ca_file = "/nonexistent/ca.pem";
  make_client({p});
  auto o = run(request("oa", false));
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, errc::invalid_config);
  EXPECT_NE(o.result.error().message.find("ca_file"), std::string::npos) << o.result.error().message;
}

TEST_F(llm_client_test, waiting_for_a_limit_ends_at_the_call_deadline) {
  auto p = provider(config::provider_kind::openai);
  p.max_concurrency = 1;
  make_client({p});
  fake_.set_hang(true);
  collector blocker;
  auto h = client_->call(request("oa", false), nullptr, blocker.done_fn());
  auto r = request("oa", false);
  r.timeout_ms = 100;
  auto o = run(r);
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, errc::timeout);
  EXPECT_NE(o.result.error().message.find("waiting for provider limits"), std::string::npos);
  h->cancel();
  EXPECT_EQ(blocker.wait().result.error().code, errc::cancelled);
}

TEST_F(llm_client_test, unknown_provider_is_a_bad_request) {
  make_client({provider(config::provider_kind::openai)});
  auto o = run(request("nope", false));
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, errc::bad_request);
  EXPECT_NE(o.result.error().message.find("nope"), std::string::npos);
}

TEST_F(llm_client_test, shutdown_cancels_in_flight_calls_and_refuses_new_ones) {
  make_client({provider(config::provider_kind::openai)});
  fake_.set_hang(true);
  collector c;
  client_->call(request("oa", false), c.token_fn(), c.done_fn());
  ASSERT_TRUE(eventually([&] { return fake_.counters().total == 1; }));
  client_->shutdown();
  auto o = c.wait();
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, errc::cancelled);
  auto late = run(request("oa", false));
  ASSERT_FALSE(late.result);
  EXPECT_EQ(late.result.error().code, errc::unavailable);
}

TEST_F(llm_client_test, a_taken_loop_runs_calls_only_when_polled_and_its_thread_runs_them_once_given_back) {
  make_client({provider(config::provider_kind::openai)});
  auto io = client_->driver();
  ASSERT_NE(io, nullptr);
  ASSERT_TRUE(io->take());
  EXPECT_TRUE(io->take());  // taken already
  // Taken: the I/O thread waits, so a call gets nowhere until someone polls.
  collector polled;
  client_->call(request("oa", false), polled.token_fn(), polled.done_fn());
  std::this_thread::sleep_for(50ms);  // a window for the I/O thread to (wrongly) run it
  EXPECT_EQ(fake_.counters().total, 0);
  EXPECT_FALSE(polled.ready());
  ASSERT_TRUE(eventually([&] {
    io->poll();
    return polled.ready();
  }));
  auto o = polled.wait();
  ASSERT_TRUE(o.result) << o.result.error().message;
  EXPECT_EQ(o.result->text, "echo: hello there");
  // Given back: the I/O thread runs the next call, and a poll does nothing.
  io->give_back();
  EXPECT_FALSE(io->poll());
  auto back = run(request("oa", false));
  ASSERT_TRUE(back.result) << back.result.error().message;
  // Taken again, then shut down while taken: the in-flight call is cancelled by the
  // I/O thread, and the driver is inert.
  ASSERT_TRUE(io->take());
  fake_.set_hang(true);
  collector hung;
  client_->call(request("oa", false), hung.token_fn(), hung.done_fn());
  ASSERT_TRUE(eventually([&] {
    io->poll();
    return fake_.counters().total == 3;
  }));
  client_->shutdown();
  auto h = hung.wait();
  ASSERT_FALSE(h.result);
  EXPECT_EQ(h.result.error().code, errc::cancelled);
  EXPECT_FALSE(io->take());
  EXPECT_FALSE(io->poll());
}

TEST_F(llm_client_test, calls_finish_while_two_threads_take_poll_and_give_back_the_loop_and_a_shutdown_races_them) {
  make_client({provider(config::provider_kind::openai)});
  auto io = client_->driver();
  ASSERT_NE(io, nullptr);
  // Two drivers that keep taking the loop, polling it a while and giving it back (as
  // pollers on two workers would), against calls made meanwhile: every call finishes,
  // whoever runs the loop at the time.
  std::atomic<bool> stop{false};
  auto drive = [&] {
    while (!stop.load()) {
      if (!io->take()) return;  // closed
      for (int i = 0; i < 50 && !stop.load(); ++i) io->poll();
      io->give_back();
      std::this_thread::yield();
    }
  };
  std::thread a(drive), b(drive);
  constexpr int calls = 200;
  std::vector<std::unique_ptr<collector>> done;
  for (int i = 0; i < calls; ++i) {
    done.push_back(std::make_unique<collector>());
    client_->call(request("oa", false), done.back()->token_fn(), done.back()->done_fn());
  }
  int ok = 0;
  for (auto& c : done) ok += c->wait().result ? 1 : 0;
  EXPECT_EQ(ok, calls);
  // A shutdown while they keep at it: in-flight calls are cancelled, the drivers'
  // takes start failing, and nothing hangs.
  fake_.set_hang(true);
  collector hung;
  client_->call(request("oa", false), hung.token_fn(), hung.done_fn());
  ASSERT_TRUE(eventually([&] { return fake_.counters().total == calls + 1; }));
  client_->shutdown();
  auto h = hung.wait();
  ASSERT_FALSE(h.result);
  EXPECT_EQ(h.result.error().code, errc::cancelled);
  stop.store(true);
  a.join();
  b.join();
  EXPECT_FALSE(io->take());
}

TEST_F(llm_client_test, a_pool_of_several_io_threads_has_no_driver) {
  make_client({provider(config::provider_kind::openai)}, 2);
  EXPECT_EQ(client_->driver(), nullptr);
}

TEST_F(llm_client_test, an_unusable_base_url_fails_calls_with_invalid_config) {
  auto p = provider(config::provider_kind::openai);
  p.base_url = "ftp://example.invalid";
  make_client({p});
  auto o = run(request("oa", false));
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, errc::invalid_config);
}

TEST_F(llm_client_test, the_api_key_never_reaches_errors_or_logs) {
  std::ostringstream captured;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
  auto logger = std::make_shared<spdlog::logger>("llm", sink);
  logger->set_level(spdlog::level::trace);
  spdlog::drop("llm");
  spdlog::register_logger(logger);

  auto p = provider(config::provider_kind::openai);
  p.retry = {3, 1, 2};
  p.breaker = {2, 50};
  p.timeout_ms = 100;
  make_client({p, provider(config::provider_kind::anthropic)});
  std::vector<std::string> messages;
  auto record = [&](const outcome& o) {
    if (!o.result) messages.push_back(o.result.error().message);
  };
  fake_.set_expected_key("other");  // 401 quoting the key back
  record(run(request("oa", false)));
  record(run(request("an", true)));
  fake_.set_expected_key(secret_key);
  fake_.set_error_rate_500(1.0);
  record(run(request("oa", false)));
  fake_.set_error_rate_500(0);
  fake_.set_hang(true);
  record(run(request("oa", true)));
  fake_.set_hang(false);
  fake_.set_down(true);
  record(run(request("oa", false)));
  fake_.set_down(false);
  client_->shutdown();
  spdlog::drop("llm");

  ASSERT_GE(messages.size(), 4u);
  for (const auto& m : messages) EXPECT_EQ(m.find(secret_key), std::string::npos) << m;
  auto log = captured.str();
  EXPECT_FALSE(log.empty());  // debug lines were written, so the check below means something
  EXPECT_EQ(log.find(secret_key), std::string::npos) << log;
}

}  // namespace
}  // namespace troupe::protocols::llm
