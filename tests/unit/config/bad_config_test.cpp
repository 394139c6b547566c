// Table of bad configs: each edit of the valid DESIGN §7 config must produce
// exactly the listed problems (path and message), and no config.
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "test_configs.hpp"

namespace troupe::config {
namespace {

using nlohmann::json;
using testing_support::design_config;
using testing_support::fake_env;

struct bad_case {
  const char* name;
  std::function<void(json&)> edit;
  std::vector<problem> expected;
};

void PrintTo(const bad_case& c, std::ostream* os) { *os << c.name; }

json& team0(json& j) { return j["teams"][0]; }
json& step(json& j, int k) { return j["teams"][0]["workflow"][k]; }

// One case per entry; kept unformatted so each reads as a table row.
// clang-format off
const std::vector<bad_case> cases = {
    // --- unknown keys and top-level shape
    {"typo_at_top_level", [](json& j) { j["agnets"] = j["agents"]; },
     {{"agnets", "unknown key 'agnets'; did you mean 'agents'?"}}},
    {"unknown_key_without_suggestion", [](json& j) { j["zzzz"] = 1; },
     {{"zzzz", "unknown key 'zzzz'; expected one of: store, control, runtime, providers, models, agents, teams"}}},
    {"typo_in_step", [](json& j) { step(j, 1)["aftr"] = json::array({"research"}); },
     {{"teams[0].workflow[1].aftr", "unknown key 'aftr'; did you mean 'after'?"}}},
    {"typo_in_decision", [](json& j) { step(j, 2)["decision"]["timeout"] = 5; },
     {{"teams[0].workflow[2].decision.timeout", "unknown key 'timeout'; did you mean 'timeout_ms'?"}}},
    {"providers_not_an_object", [](json& j) { j["providers"] = json::array(); },
     {{"providers", "expected an object of named providers, got array"},
      {"models.canned.provider", "unknown provider 'offline' (none defined)"},
      {"models.haiku.provider", "unknown provider 'claude' (none defined)"}}},
    // --- store and control
    {"store_unknown_scheme", [](json& j) { j["store"] = "mysql://user:hunter2@db/x"; },
     {{"store", "expected 'sqlite:PATH' or 'postgresql://...', got scheme 'mysql'"}}},
    {"store_not_a_string", [](json& j) { j["store"] = 5; }, {{"store", "expected a string, got integer"}}},
    {"listen_without_port", [](json& j) { j["control"]["listen"] = "localhost"; },
     {{"control.listen", "expected 'host:port' with a port in 0..65535, got 'localhost'"}}},
    {"listen_port_too_large", [](json& j) { j["control"]["listen"] = "127.0.0.1:70000"; },
     {{"control.listen", "expected 'host:port' with a port in 0..65535, got '127.0.0.1:70000'"}}},
    {"public_listen_without_tokens",
     [](json& j) {
       j["control"]["listen"] = "0.0.0.0:7700";
       j["control"].erase("tokens");
     },
     {{"control.listen",
       "a non-loopback address needs control.tokens (no tokens: listen on 127.0.0.1 or [::1]), got '0.0.0.0:7700'"}}},
    {"token_role_unknown", [](json& j) { j["control"]["tokens"][0]["role"] = "root"; },
     {{"control.tokens[0].role", "expected one of 'viewer', 'operator', 'admin', got 'root'"}}},
    {"token_role_typo", [](json& j) { j["control"]["tokens"][0]["role"] = "opertor"; },
     {{"control.tokens[0].role", "expected one of 'viewer', 'operator', 'admin', got 'opertor'; did you mean 'operator'?"}}},
    {"token_without_env", [](json& j) { j["control"]["tokens"][0].erase("token_env"); },
     {{"control.tokens[0].token_env", "missing required key 'token_env'"}}},
    {"token_env_not_set", [](json& j) { j["control"]["tokens"][0]["token_env"] = "NOT_SET_ANYWHERE"; },
     {{"control.tokens[0].token_env", "environment variable 'NOT_SET_ANYWHERE' is not set or empty"}}},
    {"duplicate_token_name", [](json& j) { j["control"]["tokens"].push_back({{"name", "ops"}, {"token_env", "ANTHROPIC_API_KEY"}}); },
     {{"control.tokens[1].name", "duplicate token name 'ops' (also control.tokens[0])"}}},
    {"tokens_share_a_secret",
     [](json& j) { j["control"]["tokens"].push_back({{"name", "admin"}, {"token_env", "TROUPE_OPS_TOKEN"}, {"role", "admin"}}); },
     {{"control.tokens[1].token_env", "token has the same value as control.tokens[0]; each token needs its own secret"}}},
    {"max_clients_zero", [](json& j) { j["control"]["max_clients"] = 0; },
     {{"control.max_clients", "expected an integer in 1..1000000, got 0"}}},
    // --- runtime ranges and types
    {"threads_zero", [](json& j) { j["runtime"]["threads"] = 0; }, {{"runtime.threads", "expected an integer in 1..64, got 0"}}},
    {"threads_as_string", [](json& j) { j["runtime"]["threads"] = "2"; },
     {{"runtime.threads", "expected an integer in 1..64, got string"}}},
    {"threads_fractional", [](json& j) { j["runtime"]["threads"] = 2.5; },
     {{"runtime.threads", "expected an integer in 1..64, got 2.5"}}},
    {"retention_too_long", [](json& j) { j["runtime"]["retention_days"] = 4000; },
     {{"runtime.retention_days", "expected an integer in 0..3650, got 4000"}}},
    {"runtime_not_an_object", [](json& j) { j["runtime"] = true; }, {{"runtime", "expected an object, got boolean"}}},
    // --- providers
    {"provider_without_kind", [](json& j) { j["providers"]["offline"].erase("kind"); },
     {{"providers.offline.kind", "missing required key 'kind'"}}},
    {"provider_kind_unknown", [](json& j) { j["providers"]["offline"]["kind"] = "gemini"; },
     {{"providers.offline.kind", "expected one of 'scripted', 'openai', 'anthropic', got 'gemini'"}}},
    {"replies_on_anthropic", [](json& j) { j["providers"]["claude"]["replies"] = json::array(); },
     {{"providers.claude.replies", "key 'replies' is only valid for kind scripted, not anthropic"}}},
    {"base_url_on_scripted", [](json& j) { j["providers"]["offline"]["base_url"] = "http://127.0.0.1:1"; },
     {{"providers.offline.base_url", "key 'base_url' is only valid for kind openai or anthropic, not scripted"}}},
    {"latency_range_reversed", [](json& j) { j["providers"]["offline"]["latency_ms"] = json::array({20, 5}); },
     {{"providers.offline.latency_ms", "expected min <= max, got [20, 5]"}}},
    {"latency_range_three_items", [](json& j) { j["providers"]["offline"]["latency_ms"] = json::array({1, 2, 3}); },
     {{"providers.offline.latency_ms", "expected [min, max] with 2 integers, got 3 items"}}},
    {"latency_negative", [](json& j) { j["providers"]["offline"]["latency_ms"] = -1; },
     {{"providers.offline.latency_ms", "expected an integer >= 0 or [min, max], got -1"}}},
    {"reply_latency_item_negative",
     [](json& j) { j["providers"]["offline"]["replies"][1]["latency_ms"] = json::array({-3, 4}); },
     {{"providers.offline.replies[1].latency_ms[0]", "expected an integer >= 0 or [min, max], got -3"}}},
    {"reply_regex_invalid",
     [](json& j) {
       j["providers"]["offline"]["replies"][0]["match"] = "(unclosed";
       j["providers"]["offline"]["replies"][0]["regex"] = true;
     },
     {{"providers.offline.replies[0].match",
       "invalid regular expression '(unclosed': Mismatched '(' and ')' in regular expression"}}},
    {"reply_fault_unknown", [](json& j) { j["providers"]["offline"]["replies"][0]["fault"] = "explode"; },
     {{"providers.offline.replies[0].fault", "expected one of 'error', 'fatal', 'throw', 'hang', got 'explode'"}}},
    {"reply_unknown_placeholder", [](json& j) { j["providers"]["offline"]["replies"][1]["text"] = "{{promt}}"; },
     {{"providers.offline.replies[1].text",
       "unknown placeholder '{{promt}}'; expected {{input}}, {{prompt}}, {{agent}}, {{attempt}} or {{step.ID}}"}}},
    {"base_url_not_http", [](json& j) { j["providers"]["claude"]["base_url"] = "ftp://example.test"; },
     {{"providers.claude.base_url", "expected a URL starting with http:// or https://, got 'ftp://example.test'"}}},
    {"remote_provider_without_key", [](json& j) { j["providers"]["claude"].erase("api_key_env"); },
     {{"providers.claude.api_key_env",
       "missing required key 'api_key_env' (only a loopback base_url such as http://127.0.0.1:8080/v1 may go without a key)"}}},
    {"api_key_env_not_set", [](json& j) { j["providers"]["claude"]["api_key_env"] = "NO_SUCH_KEY"; },
     {{"providers.claude.api_key_env", "environment variable 'NO_SUCH_KEY' is not set or empty (needed by agent 'researcher')"}}},
    {"retry_attempts_zero", [](json& j) { j["providers"]["claude"]["retry"] = {{"max_attempts", 0}}; },
     {{"providers.claude.retry.max_attempts", "expected an integer in 1..20, got 0"}}},
    {"retry_cap_below_base", [](json& j) { j["providers"]["claude"]["retry"] = {{"base_ms", 500}, {"max_ms", 100}}; },
     {{"providers.claude.retry.max_ms", "expected max_ms >= base_ms (500), got 100"}}},
    {"limits_negative", [](json& j) { j["providers"]["claude"]["limits"]["tokens_per_min"] = -5; },
     {{"providers.claude.limits.tokens_per_min", "expected an integer >= 0, got -5"}}},
    {"read_timeout_negative", [](json& j) { j["providers"]["claude"]["read_timeout_ms"] = -1; },
     {{"providers.claude.read_timeout_ms", "expected an integer >= 0, got -1"}}},
    {"max_concurrency_zero", [](json& j) { j["providers"]["claude"]["max_concurrency"] = 0; },
     {{"providers.claude.max_concurrency", "expected an integer in 1..10000, got 0"}}},
    // --- models
    {"model_provider_typo", [](json& j) { j["models"]["haiku"]["provider"] = "claud"; },
     {{"models.haiku.provider", "unknown provider 'claud'; did you mean 'claude'?"}}},
    {"model_temperature_too_high", [](json& j) { j["models"]["haiku"]["temperature"] = 3; },
     {{"models.haiku.temperature", "expected a number in 0..2, got 3"}}},
    {"model_max_tokens_zero", [](json& j) { j["models"]["haiku"]["max_tokens"] = 0; },
     {{"models.haiku.max_tokens", "expected an integer in 1..1000000, got 0"}}},
    {"model_price_negative", [](json& j) { j["models"]["haiku"]["usd_per_mtok_in"] = -0.5; },
     {{"models.haiku.usd_per_mtok_in", "expected a number >= 0, got -0.5"}}},
    {"model_stop_not_strings", [](json& j) { j["models"]["haiku"]["stop"] = json::array({"\n\n", 7}); },
     {{"models.haiku.stop[1]", "expected a string, got integer"}}},
    {"model_name_with_dot_in_path", [](json& j) { j["models"]["gpt-4.1"] = {{"provider", "nope"}}; },
     {{"models[\"gpt-4.1\"].provider", "unknown provider 'nope' (defined: claude, offline)"}}},
    // --- agents
    {"agent_model_unknown", [](json& j) { j["agents"][1]["model"] = "sonnet"; },
     {{"agents[1].model", "unknown model 'sonnet' (defined: canned, haiku)"}}},
    {"agent_without_model", [](json& j) { j["agents"][0].erase("model"); },
     {{"agents[0].model", "missing required key 'model'"}}},
    {"agent_name_with_space", [](json& j) { j["agents"][1]["name"] = "bad name"; },
     {{"agents[1].name", "expected a non-empty name of letters, digits, '_', '.' or '-', got 'bad name'"},
      {"teams[0].agents[1]", "unknown agent 'reviewer' (defined: researcher, bad name)"}}},
    {"agent_name_duplicate", [](json& j) { j["agents"][1]["name"] = "researcher"; },
     {{"agents[1].name", "duplicate agent name 'researcher' (also agents[0])"},
      {"teams[0].agents[1]", "unknown agent 'reviewer' (defined: researcher)"}}},
    {"agent_budget_zero", [](json& j) { j["agents"][0]["budget_usd"] = 0; },
     {{"agents[0].budget_usd", "expected a number > 0, got 0"}}},
    {"agent_max_concurrent_zero", [](json& j) { j["agents"][0]["max_concurrent"] = 0; },
     {{"agents[0].max_concurrent", "expected an integer in 1..10000, got 0"}}},
    {"agent_capabilities_not_array", [](json& j) { j["agents"][0]["capabilities"] = "research"; },
     {{"agents[0].capabilities", "expected an array of strings, got string"}}},
    {"agents_not_array", [](json& j) { j["agents"] = json::object(); },
     {{"agents", "expected an array, got object"},
      {"teams[0].agents[0]", "unknown agent 'researcher' (none defined)"},
      {"teams[0].agents[1]", "unknown agent 'reviewer' (none defined)"}}},
    // --- teams
    {"team_agent_typo", [](json& j) { team0(j)["agents"][1] = "reviewr"; },
     {{"teams[0].agents[1]", "unknown agent 'reviewr'; did you mean 'reviewer'?"},
      {"teams[0].workflow[1].decision.by",
       "agent 'reviewer' is not in team 'newsroom'; did you mean 'reviewr'? (members: researcher, reviewr)"}}},
    {"team_without_agents", [](json& j) { team0(j)["agents"] = json::array(); },
     {{"teams[0].agents", "expected at least one agent, got []"}}},
    {"team_agent_listed_twice", [](json& j) { team0(j)["agents"].push_back("researcher"); },
     {{"teams[0].agents[2]", "agent 'researcher' is listed twice"}}},
    {"team_name_duplicate", [](json& j) { j["teams"].push_back(j["teams"][0]); },
     {{"teams[1].name", "duplicate team name 'newsroom' (also teams[0])"}}},
    {"team_max_queued_zero", [](json& j) { team0(j)["max_queued"] = 0; },
     {{"teams[0].max_queued", "expected an integer in 1..10000000, got 0"}}},
    {"team_backoff_cap_below_base", [](json& j) { team0(j)["backoff_ms"] = 5000; team0(j)["backoff_max_ms"] = 10; },
     {{"teams[0].backoff_max_ms", "expected backoff_max_ms >= backoff_ms (5000), got 10"}}},
    {"supervision_strategy_typo", [](json& j) { team0(j)["supervision"]["strategy"] = "one_for_none"; },
     {{"teams[0].supervision.strategy",
       "expected one of 'one_for_one', 'one_for_all', 'rest_for_one', got 'one_for_none'; did you mean 'one_for_one'?"}}},
    {"supervision_window_zero", [](json& j) { team0(j)["supervision"]["within_ms"] = 0; },
     {{"teams[0].supervision.within_ms", "expected an integer >= 1, got 0"}}},
    {"team_limits_calls_zero", [](json& j) { team0(j)["limits"] = {{"max_llm_calls", 0}}; },
     {{"teams[0].limits.max_llm_calls", "expected an integer in 1..2147483647, got 0"}}},
    {"workflow_empty", [](json& j) { team0(j)["workflow"] = json::array(); },
     {{"teams[0].workflow", "expected at least one step, got []"}}},
    {"workflow_missing", [](json& j) { team0(j).erase("workflow"); },
     {{"teams[0].workflow", "missing required key 'workflow'"}}},
    // --- steps
    {"step_agent_and_decision", [](json& j) { step(j, 1)["agent"] = "reviewer"; },
     {{"teams[0].workflow[1]", "expected exactly one of 'agent', 'capability' or 'decision', got 'agent', 'decision'"}}},
    {"step_without_kind", [](json& j) { step(j, 0).erase("agent"); },
     {{"teams[0].workflow[0]", "expected exactly one of 'agent', 'capability' or 'decision', got none"}}},
    {"step_without_id", [](json& j) { step(j, 0).erase("id"); },
     {{"teams[0].workflow[0].id", "missing required key 'id'"},
      {"teams[0].workflow[1].decision.on.revise", "unknown step 'research' (steps: publish, review)"}}},
    {"step_id_duplicate", [](json& j) { step(j, 2)["id"] = "review"; },
     {{"teams[0].workflow[2].id", "duplicate step id 'review' (also teams[0].workflow[1])"}}},
    {"step_agent_not_in_team",
     [](json& j) {
       j["agents"].push_back({{"name", "outsider"}, {"model", "canned"}});
       step(j, 0)["agent"] = "outsider";
     },
     {{"teams[0].workflow[0].agent", "agent 'outsider' is not in team 'newsroom' (members: researcher, reviewer)"}}},
    {"step_capability_missing", [](json& j) { step(j, 0).erase("agent"); step(j, 0)["capability"] = "reserch"; },
     {{"teams[0].workflow[0].capability", "no agent of team 'newsroom' has capability 'reserch'; did you mean 'research'?"}}},
    {"step_max_attempts_zero", [](json& j) { step(j, 0)["max_attempts"] = 0; },
     {{"teams[0].workflow[0].max_attempts", "expected an integer in 1..100, got 0"}}},
    {"prompt_unknown_step", [](json& j) { step(j, 0)["prompt"] = "Use {{ step.nope }} and {{input}}"; },
     {{"teams[0].workflow[0].prompt", "unknown step 'nope' in {{step.nope}}"}}},
    {"prompt_unknown_placeholder", [](json& j) { step(j, 0)["prompt"] = "{{inptu}}"; },
     {{"teams[0].workflow[0].prompt",
       "unknown placeholder '{{inptu}}'; expected {{input}}, {{prompt}}, {{agent}}, {{attempt}} or {{step.ID}}"}}},
    {"after_unknown_step", [](json& j) { step(j, 1)["after"] = json::array({"reserch"}); },
     {{"teams[0].workflow[1].after[0]", "unknown step 'reserch'; did you mean 'research'?"}}},
    {"after_itself", [](json& j) { step(j, 2)["after"] = json::array({"review", "publish"}); },
     {{"teams[0].workflow[2].after[1]", "a step cannot run after itself ('publish')"}}},
    // --- decisions
    {"decision_by_unknown_form", [](json& j) { step(j, 1)["decision"]["by"] = "robot"; },
     {{"teams[0].workflow[1].decision.by", "expected 'human' or 'agent:NAME', got 'robot'"}}},
    {"decision_by_agent_not_in_team", [](json& j) { step(j, 1)["decision"]["by"] = "agent:ghost"; },
     {{"teams[0].workflow[1].decision.by", "agent 'ghost' is not in team 'newsroom' (members: researcher, reviewer)"}}},
    {"decision_one_option", [](json& j) { step(j, 2)["decision"]["options"] = json::array({"reject"}); },
     {{"teams[0].workflow[2].decision.options", "expected at least 2 options, got 1"}}},
    {"decision_duplicate_option", [](json& j) { step(j, 2)["decision"]["options"] = json::array({"publish", "reject", "publish"}); },
     {{"teams[0].workflow[2].decision.options[2]", "duplicate option 'publish'"}}},
    {"decision_on_unknown_option", [](json& j) { step(j, 1)["decision"]["on"] = {{"revse", "research"}}; },
     {{"teams[0].workflow[1].decision.on.revse", "unknown option 'revse'; did you mean 'revise'? (options: approve, revise)"}}},
    {"decision_on_unknown_step", [](json& j) { step(j, 1)["decision"]["on"]["revise"] = "draft"; },
     {{"teams[0].workflow[1].decision.on.revise", "unknown step 'draft' (steps: publish, research, review)"}}},
    {"decision_on_jumps_forward", [](json& j) { step(j, 1)["decision"]["on"]["revise"] = "publish"; },
     {{"teams[0].workflow[1].decision.on.revise",
       "expected a step that runs before 'review' (a decision may only loop back), got 'publish'"}}},
    {"decision_default_not_an_option", [](json& j) { step(j, 2)["decision"]["default"] = "maybe"; },
     {{"teams[0].workflow[2].decision.default", "expected one of the options (publish, reject), got 'maybe'"}}},
    {"human_decision_without_default", [](json& j) { step(j, 2)["decision"].erase("default"); },
     {{"teams[0].workflow[2].decision.default",
       "missing required key 'default' (a human decision needs an option to take on timeout)"}}},
    {"decision_max_loops_too_high", [](json& j) { step(j, 1)["decision"]["max_loops"] = 5000; },
     {{"teams[0].workflow[1].decision.max_loops", "expected an integer in 0..1000, got 5000"}}},
    {"decision_without_options", [](json& j) { step(j, 1)["decision"].erase("options"); },
     {{"teams[0].workflow[1].decision.options", "missing required key 'options'"}}},
};
// clang-format on

class bad_config : public ::testing::TestWithParam<bad_case> {};

TEST_P(bad_config, reports_exact_path_and_message) {
  json j = json::parse(design_config, nullptr, true, true);
  GetParam().edit(j);
  const load_result r = load_config_text(j.dump(2), &fake_env);
  EXPECT_FALSE(r.cfg.has_value());
  EXPECT_EQ(r.problems, GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(config, bad_config, ::testing::ValuesIn(cases),
                         [](const ::testing::TestParamInfo<bad_case>& p) {
                           return std::string(p.param.name);
                         });

TEST(config_bad_table, has_at_least_25_distinct_cases) {
  std::set<std::string> names;
  for (const auto& c : cases) names.insert(c.name);
  EXPECT_EQ(names.size(), cases.size());
  EXPECT_GE(cases.size(), 25u);
}

TEST(config_bad_env, a_key_with_a_line_break_is_refused_without_showing_it) {
  // A key read from a file with `export KEY=$(cat key.txt)` easily keeps its newline;
  // sent as a header it would forge further header lines.
  json j = json::parse(design_config, nullptr, true, true);
  auto env = fake_env;
  env["ANTHROPIC_API_KEY"] = "sk-ant-secret-value\n";
  const load_result r = load_config_text(j.dump(), &env);
  EXPECT_FALSE(r.cfg);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].path, "providers.claude.api_key_env");
  EXPECT_EQ(r.problems[0].message,
            "environment variable 'ANTHROPIC_API_KEY' holds a control character (a trailing newline?); an HTTP "
            "header cannot carry it");
  EXPECT_EQ(r.problems[0].message.find("secret-value"), std::string::npos);
}

TEST(config_bad_all, every_problem_is_reported_at_once) {
  json j = json::parse(design_config, nullptr, true, true);
  j["runtime"]["threads"] = 0;
  j["agnets"] = 1;
  j["agents"][0]["model"] = "nope";
  team0(j)["workflow"][1]["decision"]["on"]["revise"] = "publish";
  const load_result r = load_config_text(j.dump(), &fake_env);
  ASSERT_EQ(r.problems.size(), 4u);
  EXPECT_FALSE(r.cfg);
}

}  // namespace
}  // namespace troupe::config
