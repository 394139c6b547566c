// Loading valid configs: the DESIGN §7 example, defaults, comments, trailing
// commas, parse errors, environment resolution, files and the summary.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "test_configs.hpp"

namespace troupe::config {
namespace {

using testing_support::design_config;
using testing_support::fake_env;

std::string problems_text(const load_result& r) {
  std::string s;
  for (const auto& p : r.problems) s += p.path + ": " + p.message + "\n";
  return s;
}

TEST(config_load, design_example_is_valid_and_typed) {
  const load_result r = load_config_text(design_config, &fake_env);
  ASSERT_TRUE(r.cfg) << problems_text(r);
  const config& c = *r.cfg;
  EXPECT_EQ(c.store, "sqlite:./troupe.db");
  EXPECT_EQ(c.ctl.listen, "127.0.0.1:7700");
  ASSERT_EQ(c.ctl.tokens.size(), 1u);
  EXPECT_EQ(c.ctl.tokens[0].granted, role::operator_);
  const provider* offline = c.find_provider("offline");
  ASSERT_NE(offline, nullptr);
  EXPECT_EQ(offline->kind, provider_kind::scripted);
  EXPECT_EQ(offline->latency.min_ms, 5);
  EXPECT_EQ(offline->latency.max_ms, 20);
  ASSERT_EQ(offline->replies.size(), 2u);
  EXPECT_EQ(offline->replies[0].match, "review");
  EXPECT_EQ(offline->replies[1].text, "Done: {{prompt}}");
  const provider* claude = c.find_provider("claude");
  ASSERT_NE(claude, nullptr);
  EXPECT_EQ(claude->kind, provider_kind::anthropic);
  EXPECT_EQ(claude->base_url, "https://api.anthropic.com");
  EXPECT_EQ(claude->max_concurrency, 8);
  EXPECT_EQ(claude->limits.requests_per_min, 50);
  EXPECT_EQ(claude->limits.tokens_per_min, 40000);
  const model* haiku = c.find_model("haiku");
  ASSERT_NE(haiku, nullptr);
  EXPECT_EQ(haiku->api_name, "claude-3-5-haiku-20241022");
  EXPECT_DOUBLE_EQ(haiku->usd_per_mtok_out, 4.0);
  EXPECT_EQ(c.find_model("canned")->api_name, "canned");  // defaults to the key
  ASSERT_NE(c.find_agent("researcher"), nullptr);
  EXPECT_EQ(c.find_agent("researcher")->max_concurrent, 2);
  EXPECT_EQ(c.find_agent("researcher")->capabilities, std::vector<std::string>{"research"});
  const team* t = c.find_team("newsroom");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->budget_usd, 20.0);
  ASSERT_EQ(t->workflow.size(), 3u);
  EXPECT_EQ(t->workflow[0].prompt, "Research: {{input}}");
  ASSERT_TRUE(t->workflow[1].decide);
  EXPECT_EQ(t->workflow[1].decide->by, "agent:reviewer");
  EXPECT_EQ(t->workflow[1].decide->on.at("revise"), "research");
  EXPECT_EQ(t->workflow[1].decide->max_loops, 2);
  EXPECT_EQ(t->workflow[2].decide->default_option, "reject");
  EXPECT_EQ(t->workflow[2].decide->timeout_ms, 86400000);
  EXPECT_EQ(c.find_team("nope"), nullptr);
  EXPECT_EQ(c.find_agent("nope"), nullptr);
}

TEST(config_load, empty_object_gets_every_default) {
  const load_result r = load_config_text("{}", &fake_env);
  ASSERT_TRUE(r.cfg) << problems_text(r);
  const config d;
  const config& c = *r.cfg;
  EXPECT_EQ(c.store, d.store);
  EXPECT_EQ(c.ctl.listen, "127.0.0.1:7700");
  EXPECT_EQ(c.ctl.max_body_bytes, 1 << 20);
  EXPECT_EQ(c.ctl.max_clients, 1024);
  EXPECT_EQ(c.ctl.send_queue, 4096);
  EXPECT_EQ(c.rt.threads, 2);
  EXPECT_EQ(c.rt.snapshot_every, 16);
  EXPECT_EQ(c.rt.retention_days, 30);
  EXPECT_EQ(c.rt.commit_batch, 512);
  EXPECT_TRUE(c.providers.empty());
  EXPECT_TRUE(c.teams.empty());
}

TEST(config_load, item_defaults_follow_the_structs) {
  const char* text = R"({
    "providers": { "p": { "kind": "openai", "base_url": "http://localhost:8080/v1" } },
    "models": { "m": { "provider": "p" } },
    "agents": [ { "name": "a", "model": "m" } ],
    "teams": [ { "name": "t", "agents": ["a"], "workflow": [ { "id": "s", "agent": "a" } ] } ] })";
  const load_result r = load_config_text(text, &fake_env);
  ASSERT_TRUE(r.cfg) << problems_text(r);
  const provider& p = r.cfg->providers.at("p");
  EXPECT_EQ(p.api_key, "");
  EXPECT_EQ(p.max_concurrency, 16);
  EXPECT_EQ(p.retry.max_attempts, 4);
  EXPECT_EQ(p.breaker.failures, 5);
  EXPECT_EQ(p.timeout_ms, 60000);
  const model& m = r.cfg->models.at("m");
  EXPECT_EQ(m.max_tokens, 1024);
  EXPECT_FALSE(m.temperature);
  const agent& a = r.cfg->agents[0];
  EXPECT_EQ(a.max_concurrent, 1);
  EXPECT_FALSE(a.budget_usd);
  const team& t = r.cfg->teams[0];
  EXPECT_EQ(t.max_queued, 10000);
  EXPECT_EQ(t.max_attempts, 3);
  EXPECT_EQ(t.sup.strategy, supervision_strategy::one_for_one);
  EXPECT_EQ(t.sup.max_restarts, 5);
  EXPECT_EQ(t.limits.max_llm_calls, 100);
  EXPECT_EQ(t.workflow[0].prompt, "{{input}}");
  EXPECT_FALSE(t.workflow[0].after);
  EXPECT_FALSE(t.workflow[0].max_attempts);
}

TEST(config_load, comments_and_trailing_commas_are_allowed) {
  const char* text = R"(// leading comment
  {
    /* block, with a comma, */ "store": "sqlite:/tmp/x.db", // trailing
    "runtime": { "threads": 4, "retention_days": 7, },
    "control": { "tokens": [], },
    "models": {},
  })";
  const load_result r = load_config_text(text, &fake_env);
  ASSERT_TRUE(r.cfg) << problems_text(r);
  EXPECT_EQ(r.cfg->store, "sqlite:/tmp/x.db");
  EXPECT_EQ(r.cfg->rt.threads, 4);
  EXPECT_EQ(r.cfg->rt.retention_days, 7);
}

TEST(config_load, commas_inside_strings_are_kept) {
  const load_result r = load_config_text(R"({ "store": "sqlite:a,]b", })", &fake_env);
  ASSERT_TRUE(r.cfg) << problems_text(r);
  EXPECT_EQ(r.cfg->store, "sqlite:a,]b");
}

TEST(config_load, parse_error_gives_line_and_column) {
  const load_result r =
      load_config_text("{\n  \"store\": \"sqlite:x\"\n  \"runtime\": {}\n}", &fake_env);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_FALSE(r.cfg);
  EXPECT_EQ(r.problems[0].path, "");
  EXPECT_EQ(r.problems[0].message,
            "invalid JSON at line 3, column 11: syntax error while parsing object - unexpected "
            "string literal; expected '}'");
}

TEST(config_load, a_lone_comma_is_still_an_error) {
  const load_result r = load_config_text("{ \"agents\": [ , ] }", &fake_env);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].message.rfind("invalid JSON at line 1, column 15: ", 0), 0u)
      << r.problems[0].message;
}

TEST(config_load, top_level_must_be_an_object) {
  const load_result r = load_config_text("[1, 2]", &fake_env);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0], (problem{"", "expected an object at the top level, got array"}));
}

TEST(config_load, duplicate_keys_are_reported_with_their_path) {
  const char* text = R"({
    "runtime": { "threads": 2, "threads": 3 },
    "control": { "tokens": [], "listen": "127.0.0.1:1", "tokens": [] },
    "providers": { "a b": { "kind": "scripted", "replies": [ { "text": "x" }, { "text": "y", "text": "z" } ] } } })";
  const load_result r = load_config_text(text, &fake_env);
  EXPECT_FALSE(r.cfg);
  EXPECT_EQ(r.problems,
            (std::vector<problem>{
                {"runtime.threads", "duplicate key 'threads' (only the last one would count)"},
                {"control.tokens", "duplicate key 'tokens' (only the last one would count)"},
                {"providers[\"a b\"].replies[1].text",
                 "duplicate key 'text' (only the last one would count)"},
            }));
}

TEST(config_problem, prints_as_path_colon_message) {
  EXPECT_EQ(to_string(problem{"runtime.threads", "expected an integer in 1..64, got 0"}),
            "runtime.threads: expected an integer in 1..64, got 0");
  EXPECT_EQ(to_string(problem{"", "invalid JSON at line 1, column 1: x"}),
            "invalid JSON at line 1, column 1: x");
}

TEST(config_warnings, unused_parts_are_warned_about_but_load) {
  const char* text = R"({
    "providers": { "p": { "kind": "scripted" }, "spare": { "kind": "scripted" } },
    "models": { "m": { "provider": "p" }, "old": { "provider": "p" } },
    "agents": [ { "name": "a", "model": "m", "capabilities": ["x"] }, { "name": "b", "model": "m" },
                { "name": "c", "model": "m" }, { "name": "idle", "model": "m" } ],
    "teams": [ { "name": "t", "agents": ["a", "b", "c", "idle"],
                 "workflow": [ { "id": "s1", "capability": "x" }, { "id": "s2", "agent": "b" },
                               { "id": "d", "decision": { "by": "agent:c", "options": ["y", "n"] } } ] } ] })";
  const load_result r = load_config_text(text, &fake_env);
  ASSERT_TRUE(r.cfg) << problems_text(r);
  EXPECT_EQ(r.warnings,
            (std::vector<problem>{
                {"providers.spare", "provider 'spare' is not used by any model"},
                {"models.old", "model 'old' is not used by any agent"},
                {"teams[0].agents[3]", "agent 'idle' runs no step of the workflow of team 't'"},
            }));
  const std::string report = check_report(r);
  EXPECT_NE(report.find("\nwarning: providers.spare: provider 'spare' is not used by any model\n"),
            std::string::npos)
      << report;
}

TEST(config_problem, check_report_lists_problems_then_a_count) {
  const load_result bad =
      load_config_text(R"({ "runtime": { "threads": 0 }, "stor": "x" })", &fake_env);
  EXPECT_EQ(check_report(bad),
            "stor: unknown key 'stor'; did you mean 'store'?\n"
            "runtime.threads: expected an integer in 1..64, got 0\n"
            "2 problems found\n");
  const load_result good = load_config_text(design_config, &fake_env);
  ASSERT_TRUE(good.cfg);
  EXPECT_EQ(
      check_report(good),
      summarize(*good.cfg) + "warning: models.canned: model 'canned' is not used by any agent\n");
}

TEST(config_reload, only_restart_keys_are_named) {
  const config running = *load_config_text(design_config, &fake_env).cfg;
  config next = running;
  next.rt.snapshot_every = 99;
  next.teams[0].max_queued = 5;
  EXPECT_TRUE(restart_needed(running, next).empty());
  next.store = "sqlite:other.db";
  next.ctl.listen = "127.0.0.1:7701";
  next.rt.threads = 8;
  EXPECT_EQ(restart_needed(running, next),
            (std::vector<std::string>{"store", "control.listen", "runtime.threads"}));
}

TEST(config_env, secrets_are_resolved_from_the_environment_map) {
  const load_result r = load_config_text(design_config, &fake_env);
  ASSERT_TRUE(r.cfg) << problems_text(r);
  EXPECT_EQ(r.cfg->ctl.tokens[0].value, "ops-secret-value");
  EXPECT_EQ(r.cfg->providers.at("claude").api_key, "sk-ant-secret-value");
}

TEST(config_env, unused_provider_may_lack_its_key) {
  const std::map<std::string, std::string> env{{"TROUPE_OPS_TOKEN", "t"}};
  const char* text = R"({
    "control": { "tokens": [ { "name": "ops", "token_env": "TROUPE_OPS_TOKEN" } ] },
    "providers": { "claude": { "kind": "anthropic", "api_key_env": "ANTHROPIC_API_KEY" },
                   "offline": { "kind": "scripted" } },
    "models": { "haiku": { "provider": "claude" }, "canned": { "provider": "offline" } },
    "agents": [ { "name": "a", "model": "canned" } ] })";
  const load_result r = load_config_text(text, &env);
  ASSERT_TRUE(r.cfg) << problems_text(r);
  EXPECT_EQ(r.cfg->providers.at("claude").api_key, "");
  EXPECT_EQ(r.cfg->ctl.tokens[0].granted, role::viewer);  // least privilege by default
}

TEST(config_env, empty_variable_counts_as_missing) {
  const std::map<std::string, std::string> env{{"TROUPE_OPS_TOKEN", ""},
                                               {"ANTHROPIC_API_KEY", "k"}};
  const load_result r = load_config_text(design_config, &env);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0],
            (problem{"control.tokens[0].token_env",
                     "environment variable 'TROUPE_OPS_TOKEN' is not set or empty"}));
}

TEST(config_env, process_environment_is_used_without_a_map) {
  ::setenv("TROUPE_CONFIG_TEST_TOKEN", "from-process", 1);
  const load_result r = load_config_text(
      R"({ "control": { "tokens": [ { "name": "t", "token_env": "TROUPE_CONFIG_TEST_TOKEN", "role": "admin" } ] } })");
  ::unsetenv("TROUPE_CONFIG_TEST_TOKEN");
  ASSERT_TRUE(r.cfg) << problems_text(r);
  EXPECT_EQ(r.cfg->ctl.tokens[0].value, "from-process");
  EXPECT_EQ(r.cfg->ctl.tokens[0].granted, role::admin);
}

TEST(config_load, loopback_openai_needs_no_key) {
  for (const char* url :
       {"http://127.0.0.1:8080/v1", "http://localhost:11434/v1", "http://[::1]:8000/v1"}) {
    const std::string text =
        std::string(R"({ "providers": { "local": { "kind": "openai", "base_url": ")") + url +
        R"(" } }, "models": { "m": { "provider": "local" } }, "agents": [ { "name": "a", "model": "m" } ] })";
    const load_result r = load_config_text(text, &fake_env);
    EXPECT_TRUE(r.cfg) << url << "\n" << problems_text(r);
  }
  const load_result r = load_config_text(
      R"({ "providers": { "x": { "kind": "openai", "base_url": "http://127.evil.test/v1" } } })",
      &fake_env);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].path, "providers.x.api_key_env");
}

TEST(config_load, postgres_store_and_ipv6_listen_are_accepted) {
  const load_result r = load_config_text(
      R"({ "store": "postgresql://troupe@db.internal/troupe", "control": { "listen": "[::1]:0" } })",
      &fake_env);
  ASSERT_TRUE(r.cfg) << problems_text(r);
  EXPECT_EQ(r.cfg->ctl.listen, "[::1]:0");
}

TEST(config_file, loads_from_disk_and_remembers_the_path) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("troupe_config_test_" + std::to_string(::getpid()) + ".jsonc");
  {
    std::ofstream out(path);
    out << "// a file\n{ \"runtime\": { \"threads\": 3 } }\n";
  }
  const load_result r = load_config_file(path.string());
  std::filesystem::remove(path);
  ASSERT_TRUE(r.cfg) << problems_text(r);
  EXPECT_EQ(r.cfg->rt.threads, 3);
  EXPECT_EQ(r.cfg->source_path, path.string());
}

TEST(config_file, missing_file_is_one_problem) {
  const load_result r = load_config_file("no/such/troupe.json");
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(
      r.problems[0],
      (problem{"", "cannot read config file 'no/such/troupe.json': No such file or directory"}));
}

TEST(config_file, load_config_returns_a_result) {
  const auto bad = load_config("no/such/troupe.json");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, base::errc::invalid_config);
  EXPECT_EQ(bad.error().message,
            "config 'no/such/troupe.json' has 1 problem:\ncannot read config file "
            "'no/such/troupe.json': No such file or directory");
  const auto path = std::filesystem::temp_directory_path() /
                    ("troupe_config_result_" + std::to_string(::getpid()) + ".json");
  std::ofstream(path) << R"({ "runtime": { "threads": 5 } })";
  const auto good = load_config(path.string());
  std::filesystem::remove(path);
  ASSERT_TRUE(good) << good.error().message;
  EXPECT_EQ(good->rt.threads, 5);
  EXPECT_EQ(good->source_path, path.string());
}

TEST(config_file, directory_is_one_problem) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  const load_result r = load_config_file(dir);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0],
            (problem{"", "cannot read config file '" + dir + "': it is a directory"}));
}

TEST(config_summary, shows_the_shape_but_no_secrets) {
  const load_result r = load_config_text(design_config, &fake_env);
  ASSERT_TRUE(r.cfg) << problems_text(r);
  const std::string s = summarize(*r.cfg);
  EXPECT_NE(s.find("store:     sqlite:./troupe.db\n"), std::string::npos) << s;
  EXPECT_NE(s.find("listen:    127.0.0.1:7700 (tokens: ops=operator)"), std::string::npos) << s;
  EXPECT_NE(s.find("offline     scripted, 2 replies, latency 5..20 ms"), std::string::npos) << s;
  EXPECT_NE(s.find("claude      anthropic https://api.anthropic.com, max_concurrency 8, key from "
                   "$ANTHROPIC_API_KEY"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("haiku       claude/claude-3-5-haiku-20241022, $0.8 in, $4 out per Mtok"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("researcher  model haiku, max_concurrent 2, capabilities research"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("newsroom    agents researcher, reviewer; max_queued 10000; one_for_one (5 "
                   "restarts in 60000 ms); budget $20"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("workflow: research -> review(decision: approve|revise by reviewer, loops to "
                   "research) -> "
                   "publish(decision: publish|reject)\n"),
            std::string::npos)
      << s;
  EXPECT_EQ(s.find("secret"), std::string::npos) << s;
  EXPECT_LE(std::count(s.begin(), s.end(), '\n'), 24) << "one screen";
}

TEST(config_summary, hides_the_store_password) {
  const load_result r = load_config_text(
      R"({ "store": "postgresql://troupe:hunter2@db/troupe?sslmode=require&password=hunter3" })",
      &fake_env);
  ASSERT_TRUE(r.cfg) << problems_text(r);
  const std::string s = summarize(*r.cfg);
  EXPECT_EQ(s.find("hunter"), std::string::npos) << s;
  EXPECT_NE(s.find("postgresql://troupe:***@db/troupe?sslmode=require&password=***"),
            std::string::npos)
      << s;
}

TEST(config_names, enums_have_stable_names) {
  EXPECT_EQ(to_string(provider_kind::scripted), "scripted");
  EXPECT_EQ(to_string(provider_kind::openai), "openai");
  EXPECT_EQ(to_string(provider_kind::anthropic), "anthropic");
  EXPECT_EQ(to_string(supervision_strategy::rest_for_one), "rest_for_one");
  EXPECT_EQ(to_string(role::operator_), "operator");
  EXPECT_EQ(to_string(role::viewer), "viewer");
  EXPECT_EQ(to_string(role::admin), "admin");
}

}  // namespace
}  // namespace troupe::config
