// The restart policy as a pure value: strategies, the sliding window, escalation.
#include <gtest/gtest.h>

#include "troupe/actors/supervision/restart_policy.hpp"

namespace troupe::actors::supervision {
namespace {

using positions = std::vector<std::size_t>;

TEST(restart_policy, one_for_one_restarts_only_the_failed_child) {
  restart_policy p{strategy::one_for_one, 5, 1000};
  auto plan = p.on_failure(2, 4, 0);
  EXPECT_FALSE(plan.escalate);
  EXPECT_EQ(plan.restart, positions({2}));
}

TEST(restart_policy, one_for_all_restarts_every_child_in_start_order) {
  restart_policy p{strategy::one_for_all, 5, 1000};
  auto plan = p.on_failure(2, 4, 0);
  EXPECT_FALSE(plan.escalate);
  EXPECT_EQ(plan.restart, positions({0, 1, 2, 3}));
}

TEST(restart_policy, rest_for_one_restarts_the_failed_child_and_those_started_after_it) {
  restart_policy p{strategy::rest_for_one, 5, 1000};
  EXPECT_EQ(p.on_failure(1, 4, 0).restart, positions({1, 2, 3}));
  EXPECT_EQ(p.on_failure(3, 4, 1).restart, positions({3}));
  EXPECT_EQ(p.on_failure(0, 4, 2).restart, positions({0, 1, 2, 3}));
}

TEST(restart_policy, the_failure_past_max_restarts_within_the_window_escalates) {
  restart_policy p{strategy::one_for_one, 2, 1000};
  EXPECT_FALSE(p.on_failure(0, 1, 0).escalate);
  EXPECT_FALSE(p.on_failure(0, 1, 10).escalate);
  EXPECT_EQ(p.restarts_in_window(10), 2u);
  auto plan = p.on_failure(0, 1, 999);
  EXPECT_TRUE(plan.escalate);
  EXPECT_TRUE(plan.restart.empty());
}

TEST(restart_policy, failures_spread_wider_than_the_window_never_escalate) {
  restart_policy p{strategy::one_for_all, 2, 1000};
  for (std::int64_t t = 0; t < 100000; t += 500) EXPECT_FALSE(p.on_failure(0, 3, t).escalate) << "at " << t;
}

TEST(restart_policy, the_window_slides_a_restart_exactly_within_ms_old_no_longer_counts) {
  restart_policy p{strategy::one_for_one, 1, 1000};
  EXPECT_FALSE(p.on_failure(0, 1, 0).escalate);
  EXPECT_EQ(p.restarts_in_window(999), 1u);
  EXPECT_EQ(p.restarts_in_window(1000), 0u);
  EXPECT_FALSE(p.on_failure(0, 1, 1000).escalate);  // the first one left the window
  EXPECT_TRUE(p.on_failure(0, 1, 1500).escalate);   // the second is still in it
}

TEST(restart_policy, escalation_starts_a_fresh_budget) {
  restart_policy p{strategy::one_for_one, 1, 1000};
  EXPECT_FALSE(p.on_failure(0, 1, 0).escalate);
  EXPECT_TRUE(p.on_failure(0, 1, 1).escalate);
  EXPECT_EQ(p.restarts_in_window(1), 0u);
  EXPECT_FALSE(p.on_failure(0, 1, 2).escalate);
}

TEST(restart_policy, zero_max_restarts_escalates_on_the_first_failure) {
  restart_policy p{strategy::rest_for_one, 0, 1000};
  EXPECT_TRUE(p.on_failure(0, 3, 0).escalate);
}

TEST(restart_policy, reset_forgets_the_history) {
  restart_policy p{strategy::one_for_one, 1, 1000};
  EXPECT_FALSE(p.on_failure(0, 1, 0).escalate);
  p.reset();
  EXPECT_FALSE(p.on_failure(0, 1, 1).escalate);
}

TEST(restart_policy, built_from_the_team_config) {
  config::supervision cfg;
  cfg.strategy = strategy::rest_for_one;
  cfg.max_restarts = 1;
  cfg.within_ms = 50;
  restart_policy p{cfg};
  EXPECT_EQ(p.kind(), strategy::rest_for_one);
  EXPECT_EQ(p.on_failure(1, 3, 0).restart, positions({1, 2}));
  EXPECT_TRUE(p.on_failure(1, 3, 49).escalate);
}

}  // namespace
}  // namespace troupe::actors::supervision
