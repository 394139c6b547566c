#include <gtest/gtest.h>

#include "troupe/agents/template.hpp"
#include "troupe/agents/workflow.hpp"

namespace troupe::agents {
namespace {

config::team newsroom() {
  config::team t;
  t.name = "newsroom";
  config::step research;
  research.id = "research";
  research.agent = "researcher";
  config::step write;
  write.id = "write";
  write.agent = "writer";
  config::step review;
  review.id = "review";
  config::decision d;
  d.by = "agent:editor";
  d.options = {"approve", "revise"};
  d.on = {{"revise", "write"}};
  d.max_loops = 2;
  review.decide = d;
  config::step publish;
  publish.id = "publish";
  publish.agent = "publisher";
  t.workflow = {research, write, review, publish};
  return t;
}

std::vector<std::string> ready_ids(const task& t, const workflow& wf) {
  std::vector<std::string> out;
  for (auto i : ready_steps(t, wf)) out.push_back(wf.nodes[i].id);
  return out;
}

TEST(workflow, steps_without_after_run_in_array_order) {
  auto wf = workflow::from_team(newsroom());
  task t;
  init_steps(t, *wf);
  EXPECT_EQ(ready_ids(t, *wf), std::vector<std::string>{"research"});
  t.steps[0].state = step_state::succeeded;
  EXPECT_EQ(ready_ids(t, *wf), std::vector<std::string>{"write"});
  EXPECT_EQ(wf->nodes[2].agent, "editor");
  EXPECT_TRUE(wf->nodes[2].is_decision);
  EXPECT_EQ(wf->result_node, 3u);
}

TEST(workflow, after_edges_fan_out_and_join) {
  config::team t;
  auto step = [](std::string id, std::optional<std::vector<std::string>> after) {
    config::step s;
    s.id = std::move(id);
    s.agent = "a";
    s.after = std::move(after);
    return s;
  };
  t.workflow = {step("brief", std::nullopt), step("copy", std::vector<std::string>{"brief"}),
                step("visuals", std::vector<std::string>{"brief"}),
                step("assemble", std::vector<std::string>{"copy", "visuals"})};
  auto wf = workflow::from_team(t);
  task tk;
  init_steps(tk, *wf);
  tk.steps[0].state = step_state::succeeded;
  EXPECT_EQ(ready_ids(tk, *wf), (std::vector<std::string>{"copy", "visuals"}));
  tk.steps[1].state = step_state::succeeded;
  EXPECT_TRUE(ready_ids(tk, *wf).size() == 1 && ready_ids(tk, *wf)[0] == "visuals");
  tk.steps[2].state = step_state::succeeded;
  EXPECT_EQ(ready_ids(tk, *wf), std::vector<std::string>{"assemble"});
  EXPECT_FALSE(all_done(tk));
  tk.steps[3].state = step_state::succeeded;
  EXPECT_TRUE(all_done(tk));
}

TEST(workflow, decision_loops_back_until_max_loops) {
  auto wf = workflow::from_team(newsroom());
  task t;
  init_steps(t, *wf);
  for (std::size_t i = 0; i < 2; ++i) t.steps[i].state = step_state::succeeded;
  EXPECT_EQ(apply_decision(t, *wf, 2, "revise"), decision_effect::loop_back);
  EXPECT_EQ(t.steps[0].state, step_state::succeeded);  // research is not redone
  EXPECT_EQ(t.steps[1].state, step_state::pending);
  EXPECT_EQ(t.steps[2].state, step_state::pending);
  EXPECT_EQ(ready_ids(t, *wf), std::vector<std::string>{"write"});
  t.steps[1].state = step_state::succeeded;
  EXPECT_EQ(apply_decision(t, *wf, 2, "revise"), decision_effect::loop_back);
  t.steps[1].state = step_state::succeeded;
  // The third "revise" finds the loop budget (2) spent: the workflow moves on.
  EXPECT_EQ(apply_decision(t, *wf, 2, "revise"), decision_effect::loop_limit);
  EXPECT_EQ(ready_ids(t, *wf), std::vector<std::string>{"publish"});
}

TEST(workflow, approve_proceeds) {
  auto wf = workflow::from_team(newsroom());
  task t;
  init_steps(t, *wf);
  t.steps[0].state = t.steps[1].state = step_state::succeeded;
  EXPECT_EQ(apply_decision(t, *wf, 2, "approve"), decision_effect::proceed);
  EXPECT_EQ(t.steps[2].output, "approve");
  EXPECT_EQ(ready_ids(t, *wf), std::vector<std::string>{"publish"});
}

TEST(decision_parsing, finds_whole_word_options_case_insensitively) {
  std::vector<std::string> opts{"approve", "revise"};
  EXPECT_EQ(parse_decision("Approve: looks good", opts), "approve");
  EXPECT_EQ(parse_decision("I would revise this; do not approve yet", opts), "revise");
  EXPECT_EQ(parse_decision("approved!", opts), "");  // not a whole word
  EXPECT_EQ(parse_decision("no idea", opts), "");
}

TEST(templating, replaces_known_and_keeps_unknown_placeholders) {
  auto out = render_template("A {{input}} B {{ step.x }} C {{nope}}", [](std::string_view n, std::string& v) {
    if (n == "input") v = "in";
    else if (n == "step.x") v = "X";
    else return false;
    return true;
  });
  EXPECT_EQ(out, "A in B X C {{nope}}");
  EXPECT_EQ(render_template("unclosed {{input", [](std::string_view, std::string&) { return true; }), "unclosed {{input");
}

TEST(priority, names_and_digits) {
  EXPECT_EQ(parse_priority("low"), 2);
  EXPECT_EQ(parse_priority("normal"), 5);
  EXPECT_EQ(parse_priority("high"), 7);
  EXPECT_EQ(parse_priority("urgent"), 9);
  EXPECT_EQ(parse_priority("0"), 0);
  EXPECT_EQ(parse_priority("10"), std::nullopt);
  EXPECT_EQ(parse_priority("7x"), std::nullopt);
}

}  // namespace
}  // namespace troupe::agents
