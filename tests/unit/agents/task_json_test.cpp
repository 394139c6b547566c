#include <gtest/gtest.h>

#include "troupe/agents/task_json.hpp"

namespace troupe::agents {
namespace {

task sample() {
  task t;
  t.id = "t_1";
  t.team = "newsroom";
  t.input = "bikes \"quoted\" ✓";
  t.priority = 7;
  t.idempotency_key = "k1";
  t.depends_on = {"t_0"};
  t.metadata = R"({"source":"test"})";
  t.state = task_state::running;
  step_run s;
  s.id = "research";
  s.state = step_state::succeeded;
  s.output = "notes";
  s.attempts = 2;
  s.cost = {10, 20, 0.5, 1};
  s.error = base::make_error(base::errc::timeout, "first try timed out");
  t.steps.push_back(s);
  step_run w;
  w.id = "write";
  t.steps.push_back(w);
  decision_record d;
  d.id = "d_1";
  d.step = "review";
  d.by = "human";
  d.options = {"approve", "revise"};
  d.deadline_ms = 123;
  t.decisions.push_back(d);
  t.cost = {10, 20, 0.5, 1};
  t.seq = 4;
  return t;
}

TEST(task_json, snapshot_round_trips) {
  auto t = sample();
  auto back = task_from_json(nlohmann::json::parse(to_json(t).dump()));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(to_json(*back), to_json(t));
  EXPECT_EQ(back->steps[0].error->code, base::errc::timeout);
  EXPECT_EQ(back->snapshot_seq, 4);
}

TEST(task_json, patch_applies_changed_steps_only) {
  auto old = sample();
  auto now = old;
  now.steps[1].state = step_state::succeeded;
  now.steps[1].output = "article";
  now.decisions[0].pending = false;
  now.decisions[0].chosen = "approve";
  now.state = task_state::succeeded;
  now.result = "article";
  now.seq = 5;
  auto patch = make_patch(now, {1}, {0});
  ASSERT_TRUE(apply_patch(old, nlohmann::json::parse(patch.dump())));
  EXPECT_EQ(to_json(old), to_json(now));
}

TEST(task_json, malformed_snapshot_is_an_error_not_a_crash) {
  auto r = task_from_json(nlohmann::json{{"state", "running"}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, base::errc::bad_request);
  auto bad_state = task_from_json(nlohmann::json{{"id", "x"}, {"state", "dancing"}});
  ASSERT_FALSE(bad_state);
  EXPECT_NE(bad_state.error().message.find("unknown state"), std::string::npos);
}

}  // namespace
}  // namespace troupe::agents
