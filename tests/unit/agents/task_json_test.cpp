#include <gtest/gtest.h>

#include "troupe/agents/task_json.hpp"
#include "troupe/base/json_text.hpp"

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

/// to_json's wire shape without the derived RFC 3339 strings the stored forms leave out.
nlohmann::json without_derived_times(nlohmann::json j) {
  for (const char* k : {"created", "updated"}) j.erase(k);
  for (auto& s : j["steps"])
    for (const char* k : {"started", "finished"}) s.erase(k);
  return j;
}

TEST(task_json, stored_snapshot_text_parses_to_the_wire_shape_and_round_trips) {
  auto t = sample();
  t.created_ms = 1'700'000'000'123;
  t.updated_ms = 1'700'000'000'456;
  t.steps[0].started_ms = 1'700'000'000'200;
  t.steps[0].finished_ms = 1'700'000'000'300;
  t.steps[0].cost.usd = 0.1 + 0.2;  // the shortest form must read back as this very double
  t.steps[1].output = std::string("ctrl \x01 tab\t newline\n quote\" back\\ ") + "\xff bad byte, ✓ good";
  t.result = "r";
  t.error = base::make_error(base::errc::provider_error, "boom \"x\"");
  t.decisions[0].comment = "ok\n";
  auto text = snapshot_text(t);
  auto parsed = nlohmann::json::parse(text);  // throws on invalid JSON
  auto wire = without_derived_times(to_json(t));
  // The invalid byte is U+FFFD in the text (nlohmann's dump would throw on it).
  wire["steps"][1]["output"] = "ctrl \x01 tab\t newline\n quote\" back\\ \xef\xbf\xbd bad byte, ✓ good";
  EXPECT_EQ(parsed, wire);
  auto back = task_from_json(parsed);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->steps[0].cost.usd, 0.1 + 0.2);
  EXPECT_EQ(back->error->message, "boom \"x\"");
  EXPECT_EQ(back->seq, t.seq);
  // Empty metadata stands for an empty object.
  t.metadata.clear();
  EXPECT_EQ(nlohmann::json::parse(snapshot_text(t))["metadata"], nlohmann::json::object());
}

TEST(task_json, stored_patch_text_parses_to_make_patch_and_applies_alike) {
  auto old = sample();
  auto now = old;
  now.steps[1].state = step_state::failed;
  now.steps[1].output = "article";
  now.steps[1].finished_ms = 1'700'000'000'999;
  now.steps[1].error = base::make_error(base::errc::timeout, "slow");
  now.decisions[0].pending = false;
  now.decisions[0].chosen = "approve";
  now.state = task_state::failed;
  now.error = base::make_error(base::errc::timeout, "step 'write' failed");
  now.seq = 5;
  auto parsed = nlohmann::json::parse(patch_text(now, {1}, {0}));
  auto expected = make_patch(now, {1}, {0});
  for (auto& s : expected["steps"])
    for (const char* k : {"started", "finished"}) s.erase(k);
  EXPECT_EQ(parsed, expected);
  ASSERT_TRUE(apply_patch(old, parsed));
  EXPECT_EQ(to_json(old), to_json(now));
}

TEST(json_text_writer, places_commas_in_nested_objects_and_arrays) {
  base::json_text_writer w;
  w.open('{');
  w.str("a", "x\"y");
  w.key("list");
  w.open('[');
  for (int i = 0; i < 3; ++i) {
    w.next();
    base::append_json_int(w.out, i);
  }
  w.close(']');
  w.key("empty");
  w.open('[');
  w.close(']');
  w.key("inner");
  w.open('{');
  w.dbl("d", 0.5);
  w.raw("j", R"({"k":[1]})");
  w.close('}');
  w.num("n", -7);
  w.close('}');
  EXPECT_EQ(w.out, R"({"a":"x\"y","list":[0,1,2],"empty":[],"inner":{"d":0.5,"j":{"k":[1]}},"n":-7})");
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
