#include <gtest/gtest.h>

#include "troupe/agents/backoff.hpp"
#include "troupe/agents/scripted.hpp"

namespace troupe::agents {
namespace {

config::scripted_reply reply(std::string match, std::string text) {
  config::scripted_reply r;
  r.match = std::move(match);
  r.text = std::move(text);
  return r;
}

const template_lookup no_vars = [](std::string_view name, std::string& out) {
  if (name == "input") {
    out = "bikes";
    return true;
  }
  if (name == "step.research") {
    out = "notes";
    return true;
  }
  return false;
};

TEST(scripted, first_matching_reply_wins_and_templates_render) {
  config::provider p;
  p.replies = {reply("review", "approve"), reply("", "Done: {{prompt}} / {{input}} / {{step.research}}")};
  scripted_model m{p};
  EXPECT_EQ(m.answer("", "please review", no_vars).text, "approve");
  auto out = m.answer("sys", "write", no_vars);
  EXPECT_EQ(out.text, "Done: write / bikes / notes");
  EXPECT_EQ(out.tokens_in, estimate_tokens("sys") + estimate_tokens("write"));
  EXPECT_EQ(out.tokens_out, estimate_tokens(out.text));
}

TEST(scripted, regex_match_and_times_limit) {
  config::provider p;
  auto r = reply("^rev(iew|ise)", "first");
  r.regex = true;
  r.times = 1;
  p.replies = {r, reply("", "later")};
  scripted_model m{p};
  EXPECT_EQ(m.answer("", "review it", no_vars).text, "first");
  EXPECT_EQ(m.answer("", "review it", no_vars).text, "later");
  EXPECT_EQ(m.answer("", "a review", no_vars).text, "later");
}

TEST(scripted, faults_every_nth_call) {
  config::provider p;
  auto r = reply("", "ok");
  r.fault = config::scripted_fault::throw_;
  r.every = 3;
  r.error = "boom";
  p.replies = {r};
  scripted_model m{p};
  std::vector<config::scripted_fault> seen;
  for (int i = 0; i < 6; ++i) seen.push_back(m.answer("", "x", no_vars).fault);
  using f = config::scripted_fault;
  EXPECT_EQ(seen, (std::vector<f>{f::none, f::none, f::throw_, f::none, f::none, f::throw_}));
}

TEST(scripted, latency_fixed_range_and_override) {
  config::provider p;
  p.latency = {10, 20};
  auto slow = reply("slow", "s");
  slow.latency = config::millis_range{500, 500};
  p.replies = {slow, reply("", "x")};
  scripted_model m{p};
  for (int i = 0; i < 50; ++i) {
    auto l = m.answer("", "fast", no_vars).latency_ms;
    EXPECT_GE(l, 10);
    EXPECT_LE(l, 20);
  }
  EXPECT_EQ(m.answer("", "slow", no_vars).latency_ms, 500);
}

TEST(scripted, same_seed_same_latencies) {
  config::provider p;
  p.latency = {0, 1000};
  scripted_model a{p}, b{p};
  for (int i = 0; i < 20; ++i) EXPECT_EQ(a.answer("", "x", no_vars).latency_ms, b.answer("", "x", no_vars).latency_ms);
}

TEST(backoff, grows_exponentially_with_jitter_and_cap) {
  std::mt19937_64 rng{1};
  for (int i = 0; i < 100; ++i) {
    auto first = backoff_ms(1, 100, 10000, rng);
    EXPECT_GE(first, 50);
    EXPECT_LE(first, 100);
    auto third = backoff_ms(3, 100, 10000, rng);
    EXPECT_GE(third, 200);
    EXPECT_LE(third, 400);
    auto capped = backoff_ms(20, 100, 1000, rng);
    EXPECT_GE(capped, 500);
    EXPECT_LE(capped, 1000);
  }
}

}  // namespace
}  // namespace troupe::agents
