// The workflow graph: `after` edges (implicit: the previous step) must be
// acyclic, and a decision's `on` may only jump back to an ancestor.
#include <gtest/gtest.h>

#include "test_configs.hpp"

namespace troupe::config {
namespace {

/// A one-team config around the given workflow steps (JSON array body).
load_result with_workflow(const std::string& steps) {
  const std::string text = R"({
    "providers": { "p": { "kind": "scripted" } },
    "models": { "m": { "provider": "p" } },
    "agents": [ { "name": "a", "model": "m", "capabilities": ["write"] }, { "name": "b", "model": "m" } ],
    "teams": [ { "name": "t", "agents": ["a", "b"], "workflow": [ )" +
                           steps + R"( ] } ] })";
  return load_config_text(text, &testing_support::fake_env);
}

std::string problems_text(const load_result& r) {
  std::string s;
  for (const auto& p : r.problems) s += p.path + ": " + p.message + "\n";
  return s;
}

TEST(config_workflow, fan_out_and_join_is_valid) {
  const load_result r = with_workflow(R"(
    { "id": "plan", "agent": "a" },
    { "id": "left", "agent": "a", "after": ["plan"] },
    { "id": "right", "capability": "write", "after": ["plan"], "prompt": "{{step.plan}}" },
    { "id": "join", "agent": "b", "after": ["left", "right"], "prompt": "{{step.left}} + {{ step.right }}" },
    { "id": "check", "decision": { "by": "agent:b", "options": ["ok", "again"], "on": { "again": "plan" } } })");
  ASSERT_TRUE(r.cfg) << problems_text(r);
  EXPECT_EQ(r.cfg->teams[0].workflow[3].after, (std::vector<std::string>{"left", "right"}));
  EXPECT_NE(summarize(*r.cfg).find(
                "join(after left, right) -> check(decision: ok|again by b, loops to plan)"),
            std::string::npos)
      << summarize(*r.cfg);
}

TEST(config_workflow, two_step_cycle_is_reported_where_it_closes) {
  const load_result r = with_workflow(R"(
    { "id": "x", "agent": "a", "after": ["y"] },
    { "id": "y", "agent": "a", "after": ["x"] })");
  ASSERT_EQ(r.problems.size(), 1u) << problems_text(r);
  EXPECT_EQ(r.problems[0],
            (problem{"teams[0].workflow[1].after[0]", "'after' forms a cycle: x -> y -> x"}));
}

TEST(config_workflow, three_step_cycle_names_every_step) {
  const load_result r = with_workflow(R"(
    { "id": "x", "agent": "a", "after": ["z"] },
    { "id": "y", "agent": "a", "after": ["x"] },
    { "id": "z", "agent": "a", "after": ["y"] })");
  ASSERT_EQ(r.problems.size(), 1u) << problems_text(r);
  EXPECT_EQ(r.problems[0],
            (problem{"teams[0].workflow[1].after[0]", "'after' forms a cycle: x -> z -> y -> x"}));
}

TEST(config_workflow, cycle_through_an_implicit_edge_points_at_the_step) {
  // y has no `after`, so it runs after x; x waits for y.
  const load_result r = with_workflow(R"(
    { "id": "x", "agent": "a", "after": ["y"] },
    { "id": "y", "agent": "a" })");
  ASSERT_EQ(r.problems.size(), 1u) << problems_text(r);
  EXPECT_EQ(r.problems[0], (problem{"teams[0].workflow[1]", "'after' forms a cycle: x -> y -> x"}));
}

TEST(config_workflow, decision_may_loop_back_to_an_ancestor_through_after) {
  const load_result r = with_workflow(R"(
    { "id": "draft", "agent": "a" },
    { "id": "side", "agent": "b", "after": [] },
    { "id": "review", "decision": { "by": "human", "options": ["ok", "redo"], "default": "ok",
                                    "on": { "redo": "draft" } }, "after": ["draft"] })");
  ASSERT_TRUE(r.cfg) << problems_text(r);
}

TEST(config_workflow, decision_may_not_jump_to_a_parallel_branch) {
  // `side` starts with no dependency, so it is not an ancestor of `review`.
  const load_result r = with_workflow(R"(
    { "id": "draft", "agent": "a" },
    { "id": "side", "agent": "b", "after": [] },
    { "id": "review", "decision": { "by": "human", "options": ["ok", "redo"], "default": "ok",
                                    "on": { "redo": "side" } }, "after": ["draft"] })");
  ASSERT_EQ(r.problems.size(), 1u) << problems_text(r);
  EXPECT_EQ(r.problems[0], (problem{"teams[0].workflow[2].decision.on.redo",
                                    "expected a step that runs before 'review' (a decision may "
                                    "only loop back), got 'side'"}));
}

TEST(config_workflow, decision_may_not_loop_to_itself) {
  const load_result r = with_workflow(R"(
    { "id": "draft", "agent": "a" },
    { "id": "review", "decision": { "by": "agent:a", "options": ["ok", "redo"], "on": { "redo": "review" } } })");
  ASSERT_EQ(r.problems.size(), 1u) << problems_text(r);
  EXPECT_EQ(r.problems[0].path, "teams[0].workflow[1].decision.on.redo");
}

TEST(config_workflow, every_problem_of_a_workflow_is_listed) {
  const load_result r = with_workflow(R"(
    { "id": "x", "agent": "zed", "after": ["nope"], "prompt": "{{step.ghost}}" },
    { "id": "x", "capability": "fly" })");
  EXPECT_EQ(r.problems,
            (std::vector<problem>{
                {"teams[0].workflow[1].id", "duplicate step id 'x' (also teams[0].workflow[0])"},
                {"teams[0].workflow[0].agent", "agent 'zed' is not in team 't' (members: a, b)"},
                {"teams[0].workflow[1].capability",
                 "no agent of team 't' has capability 'fly' (they have: write)"},
                {"teams[0].workflow[0].after[0]", "unknown step 'nope' (steps: x)"},
                {"teams[0].workflow[0].prompt", "unknown step 'ghost' in {{step.ghost}}"},
            }))
      << problems_text(r);
}

}  // namespace
}  // namespace troupe::config
