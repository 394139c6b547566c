// Any value in any place: replacing each node of a valid config with a value
// of every JSON type must give a config or problems, never a crash (the suite
// also runs under ASan+UBSan) and never an empty path-less message.
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "test_configs.hpp"

namespace troupe::config {
namespace {

using nlohmann::json;

/// Calls f with a JSON pointer to every node of j.
void each_pointer(const json& j, const json::json_pointer& at,
                  const std::function<void(const json::json_pointer&)>& f) {
  f(at);
  if (j.is_object())
    for (const auto& [k, v] : j.items()) each_pointer(v, at / k, f);
  if (j.is_array())
    for (std::size_t i = 0; i < j.size(); ++i) each_pointer(j[i], at / i, f);
}

TEST(config_robustness, every_node_replaced_by_every_type_is_handled) {
  const json base = json::parse(testing_support::design_config, nullptr, true, true);
  const std::vector<json> replacements{
      nullptr, true, -1, 2.5, "", json::array({1, "a"}), json::object({{"zz", 1}})};
  std::size_t runs = 0, rejected = 0;
  each_pointer(base, json::json_pointer(), [&](const json::json_pointer& p) {
    if (p.empty()) return;
    for (const json& value : replacements) {
      json j = base;
      j[p] = value;
      const load_result r = load_config_text(j.dump(), &testing_support::fake_env);
      ++runs;
      EXPECT_NE(r.cfg.has_value(), !r.problems.empty()) << p.to_string();
      for (const auto& prob : r.problems) EXPECT_FALSE(prob.message.empty()) << p.to_string();
      if (!r.cfg) ++rejected;
    }
  });
  EXPECT_GT(runs, 400u);
  EXPECT_GT(rejected, runs / 2);
}

TEST(config_robustness, deep_nesting_is_a_problem_not_a_crash) {
  const std::string deep = "{ \"x\": " + std::string(100000, '[') + std::string(100000, ']') + " }";
  const load_result r = load_config_text(deep, &testing_support::fake_env);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].path, "x");
}

TEST(config_robustness, unterminated_comment_is_a_parse_problem) {
  const load_result r = load_config_text("{ /* open\n \"store\": \"sqlite:x\" }", &testing_support::fake_env);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].message.rfind("invalid JSON at line 2, column ", 0), 0u) << r.problems[0].message;
}

}  // namespace
}  // namespace troupe::config
