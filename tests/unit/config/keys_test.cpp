// The declared key table: unique, complete, and in agreement with docs/config.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "troupe/config/config.hpp"

namespace troupe::config {
namespace {

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(config_keys, each_key_is_declared_once_with_help) {
  std::set<std::string> seen;
  for (const auto& k : declared_keys()) {
    EXPECT_TRUE(seen.insert(k.path).second) << "declared twice: " << k.path;
    EXPECT_FALSE(k.help.empty()) << k.path;
    if (k.type == value_type::choice) {
      EXPECT_FALSE(k.choices.empty()) << k.path;
    }
    EXPECT_FALSE(k.required && !k.default_value.empty())
        << "required keys have no default: " << k.path;
  }
  EXPECT_GE(declared_keys().size(), 90u);
}

TEST(config_keys, restart_keys_are_the_ones_read_once_at_start) {
  std::set<std::string> restart;
  for (const auto& k : declared_keys())
    if (k.needs_restart) restart.insert(k.path);
  const std::set<std::string> expected{
      "store", "control.listen", "control.tokens", "control.tokens[].name", "control.tokens[].token_env",
      "control.tokens[].role", "control.max_body_bytes", "control.max_clients", "control.max_frame_bytes",
      "control.requests_per_sec", "control.send_queue", "control.idle_timeout_ms", "control.io_threads",
      "runtime.threads",
      "runtime.retention_days", "runtime.commit_interval_ms", "runtime.end_commit_interval_ms", "runtime.commit_batch",
      "providers.*.base_url",
      "providers.*.api_key_env", "providers.*.anthropic_version", "providers.*.ca_file",
      "providers.*.max_concurrency", "providers.*.limits.requests_per_min", "providers.*.limits.tokens_per_min",
      "providers.*.connect_timeout_ms", "providers.*.timeout_ms", "providers.*.read_timeout_ms",
      "providers.*.retry.max_attempts",
      "providers.*.retry.base_ms", "providers.*.retry.max_ms", "providers.*.breaker.failures",
      "providers.*.breaker.open_ms"};
  EXPECT_EQ(restart, expected);
}

/// "providers.x.timeout_ms" -> "providers.*.timeout_ms", "control.tokens[0].name" -> "control.tokens[].name".
std::string pattern_of(std::string path) {
  if (path.rfind("providers.", 0) == 0) {
    auto dot = path.find('.', 10);
    path = "providers.*" + (dot == std::string::npos ? std::string() : path.substr(dot));
  }
  if (auto open = path.find('['); open != std::string::npos) path.erase(open + 1, path.find(']') - open - 1);
  return path;
}

TEST(config_keys, restart_needed_covers_every_restart_key) {
  config a;
  provider net;
  net.name = "x";
  net.kind = provider_kind::openai;
  a.providers["x"] = net;
  a.ctl.tokens.push_back({"ops", "OPS", "secret", role::operator_});
  config b = a;
  b.store = "sqlite:other.db";
  b.ctl.listen = "127.0.0.1:1";
  b.ctl.tokens[0] = {"ops2", "OPS2", "secret2", role::admin};
  b.ctl.max_body_bytes += 1;
  b.ctl.max_clients += 1;
  b.ctl.max_frame_bytes += 1;
  b.ctl.requests_per_sec += 1;
  b.ctl.send_queue += 1;
  b.ctl.idle_timeout_ms += 1;
  b.ctl.io_threads += 1;
  b.rt.threads = a.rt.threads + 1;
  b.rt.retention_days += 1;
  b.rt.commit_interval_ms += 1;
  b.rt.end_commit_interval_ms += 1;
  b.rt.commit_batch += 1;
  auto& p = b.providers["x"];
  p.base_url = "http://127.0.0.1:1";
  p.api_key_env = "K";
  p.anthropic_version = "v";
  p.ca_file = "ca.pem";
  p.max_concurrency += 1;
  p.limits.requests_per_min += 1;
  p.limits.tokens_per_min += 1;
  p.connect_timeout_ms += 1;
  p.timeout_ms += 1;
  p.read_timeout_ms += 1;
  p.retry.max_attempts += 1;
  p.retry.base_ms += 1;
  p.retry.max_ms += 1;
  p.breaker.failures += 1;
  p.breaker.open_ms += 1;
  std::set<std::string> changed;
  for (const auto& path : restart_needed(a, b)) changed.insert(pattern_of(path));
  std::set<std::string> declared;
  for (const auto& k : declared_keys())
    if (k.needs_restart) declared.insert(k.path);
  declared.erase("control.tokens");  // reported when the number of tokens changes
  EXPECT_EQ(changed, declared);
  config c = a;
  c.ctl.tokens.clear();
  EXPECT_EQ(restart_needed(a, c), std::vector<std::string>{"control.tokens"});
}

TEST(config_keys, scripted_providers_apply_but_network_ones_need_a_restart) {
  config a;
  provider s;
  s.name = "s";
  a.providers["s"] = s;
  config b = a;
  b.providers["s"].replies.push_back({});
  b.providers["s"].latency = {5, 10};
  EXPECT_TRUE(restart_needed(a, b).empty());
  provider n;
  n.name = "n";
  n.kind = provider_kind::anthropic;
  b.providers["n"] = n;
  EXPECT_EQ(restart_needed(a, b), std::vector<std::string>{"providers.n"});
  b.providers["s"].kind = provider_kind::openai;
  EXPECT_EQ(restart_needed(a, b), (std::vector<std::string>{"providers.s.kind", "providers.n"}));
}

TEST(config_keys, declared_defaults_match_the_structs) {
  // The table's default column is what users read; it must be what the code uses.
  const config c;
  const provider p;
  const model m;
  const agent a;
  const team t;
  const step s;
  const decision d;
  const scripted_reply rep;
  auto str = [](const std::string& v) { return "\"" + v + "\""; };
  auto num = [](auto v) { return std::to_string(v); };
  const std::map<std::string, std::string> actual{
      {"store", str(c.store)},
      {"control.listen", str(c.ctl.listen)},
      {"control.max_body_bytes", num(c.ctl.max_body_bytes)},
      {"control.max_clients", num(c.ctl.max_clients)},
      {"control.max_frame_bytes", num(c.ctl.max_frame_bytes)},
      {"control.requests_per_sec", num(c.ctl.requests_per_sec)},
      {"control.send_queue", num(c.ctl.send_queue)},
      {"control.idle_timeout_ms", num(c.ctl.idle_timeout_ms)},
      {"control.tokens[].role", str(to_string(token{}.granted))},
      {"runtime.threads", num(c.rt.threads)},
      {"runtime.snapshot_every", num(c.rt.snapshot_every)},
      {"runtime.retention_days", num(c.rt.retention_days)},
      {"runtime.commit_interval_ms", num(c.rt.commit_interval_ms)},
      {"runtime.end_commit_interval_ms", num(c.rt.end_commit_interval_ms)},
      {"runtime.commit_batch", num(c.rt.commit_batch)},
      {"runtime.supervision.max_restarts", num(c.rt.teams_sup.max_restarts)},
      {"runtime.supervision.within_ms", num(c.rt.teams_sup.within_ms)},
      {"providers.*.latency_ms", num(p.latency.max_ms)},
      {"providers.*.seed", num(p.seed)},
      {"providers.*.anthropic_version", str(p.anthropic_version)},
      {"providers.*.max_concurrency", num(p.max_concurrency)},
      {"providers.*.limits.requests_per_min", num(p.limits.requests_per_min)},
      {"providers.*.limits.tokens_per_min", num(p.limits.tokens_per_min)},
      {"providers.*.connect_timeout_ms", num(p.connect_timeout_ms)},
      {"providers.*.timeout_ms", num(p.timeout_ms)},
      {"providers.*.retry.max_attempts", num(p.retry.max_attempts)},
      {"providers.*.retry.base_ms", num(p.retry.base_ms)},
      {"providers.*.retry.max_ms", num(p.retry.max_ms)},
      {"providers.*.breaker.failures", num(p.breaker.failures)},
      {"providers.*.breaker.open_ms", num(p.breaker.open_ms)},
      {"providers.*.replies[].every", num(rep.every)},
      {"providers.*.replies[].times", num(rep.times)},
      {"providers.*.replies[].regex", rep.regex ? "true" : "false"},
      {"models.*.usd_per_mtok_in", num(static_cast<int>(m.usd_per_mtok_in))},
      {"models.*.usd_per_mtok_out", num(static_cast<int>(m.usd_per_mtok_out))},
      {"models.*.max_tokens", num(m.max_tokens)},
      {"models.*.stream", m.stream ? "true" : "false"},
      {"agents[].max_concurrent", num(a.max_concurrent)},
      {"teams[].max_queued", num(t.max_queued)},
      {"teams[].max_attempts", num(t.max_attempts)},
      {"teams[].backoff_ms", num(t.backoff_ms)},
      {"teams[].backoff_max_ms", num(t.backoff_max_ms)},
      {"teams[].stall_ms", num(t.stall_ms)},
      {"teams[].aging_ms", num(t.aging_ms)},
      {"teams[].supervision.strategy", str(to_string(t.sup.strategy))},
      {"teams[].supervision.max_restarts", num(t.sup.max_restarts)},
      {"teams[].supervision.within_ms", num(t.sup.within_ms)},
      {"teams[].limits.max_llm_calls", num(t.limits.max_llm_calls)},
      {"teams[].limits.max_cost_usd", num(static_cast<int>(t.limits.max_cost_usd))},
      {"teams[].workflow[].prompt", str(s.prompt)},
      {"teams[].workflow[].decision.max_loops", num(d.max_loops)},
      {"teams[].workflow[].decision.timeout_ms", num(d.timeout_ms)},
  };
  for (const auto& [path, value] : actual) {
    const auto it = std::find_if(declared_keys().begin(), declared_keys().end(),
                                 [&](const key_info& k) { return k.path == path; });
    ASSERT_NE(it, declared_keys().end()) << path;
    EXPECT_EQ(it->default_value, value) << path;
  }
}

TEST(config_keys, docs_carry_the_generated_key_table) {
  const std::filesystem::path docs =
      std::filesystem::path(TROUPE_SOURCE_DIR) / "docs" / "config.md";
  const std::string text = read_file(docs);
  ASSERT_FALSE(text.empty()) << "cannot read " << docs;
  const std::string table = key_reference_markdown();
  if (text.find(table) == std::string::npos) {
    const auto expected = std::filesystem::path(TROUPE_BINARY_DIR) / "config_keys.md";
    std::ofstream(expected) << table;
    ADD_FAILURE() << "docs/config.md does not contain the current key table; the expected table "
                     "was written to "
                  << expected << " (paste it over the table in docs/config.md)";
  }
  for (const auto& k : declared_keys())
    EXPECT_NE(text.find("`" + k.path + "`"), std::string::npos) << k.path;
}

TEST(config_keys, every_key_is_accepted_where_declared) {
  // A declared key must never be reported as unknown: build one config that uses
  // the container keys and check no "unknown key" problem comes back.
  const char* text = R"({
    "store": "sqlite:x.db",
    "control": { "listen": "127.0.0.1:0", "tokens": [], "max_body_bytes": 1, "max_clients": 1, "max_frame_bytes": 1,
                 "requests_per_sec": 1, "send_queue": 1, "idle_timeout_ms": 1 },
    "runtime": { "threads": 1, "snapshot_every": 1, "retention_days": 0, "commit_interval_ms": 0, "end_commit_interval_ms": 0, "commit_batch": 1 },
    "providers": {
      "s": { "kind": "scripted", "latency_ms": [1, 2], "seed": 7,
             "replies": [ { "match": "a.*", "regex": true, "text": "t", "latency_ms": 3, "fault": "hang", "error": "e",
                            "every": 2, "times": 1 } ] },
      "o": { "kind": "openai", "base_url": "http://127.0.0.1:1/v1", "api_key_env": "K", "ca_file": "ca.pem",
             "max_concurrency": 1, "limits": { "requests_per_min": 1, "tokens_per_min": 1 }, "connect_timeout_ms": 1,
             "timeout_ms": 1, "retry": { "max_attempts": 1, "base_ms": 1, "max_ms": 1 },
             "breaker": { "failures": 1, "open_ms": 1 } },
      "c": { "kind": "anthropic", "api_key_env": "K", "anthropic_version": "2023-06-01" } },
    "models": { "m": { "provider": "s", "name": "n", "usd_per_mtok_in": 1, "usd_per_mtok_out": 1, "max_tokens": 1,
                       "temperature": 0.5, "stop": ["x"], "stream": true } },
    "agents": [ { "name": "a", "model": "m", "system": "s", "capabilities": ["c"], "max_concurrent": 1, "budget_usd": 1 } ],
    "teams": [ { "name": "t", "agents": ["a"], "budget_usd": 1, "max_queued": 1, "max_attempts": 1, "backoff_ms": 1,
                 "backoff_max_ms": 1, "stall_ms": 1, "aging_ms": 1,
                 "supervision": { "strategy": "rest_for_one", "max_restarts": 0, "within_ms": 1 },
                 "limits": { "max_llm_calls": 1, "max_cost_usd": 0 },
                 "workflow": [ { "id": "s1", "capability": "c", "prompt": "{{input}}", "after": [], "max_attempts": 1 },
                               { "id": "s2", "agent": "a" },
                               { "id": "d", "decision": { "by": "human", "options": ["x", "y"], "on": { "y": "s1" },
                                 "max_loops": 1, "default": "x", "timeout_ms": 1, "prompt": "p" } } ] } ] })";
  const std::map<std::string, std::string> env{{"K", "k"}};
  const load_result r = load_config_text(text, &env);
  std::string all;
  for (const auto& p : r.problems) all += p.path + ": " + p.message + "\n";
  EXPECT_TRUE(r.cfg) << all;
}

}  // namespace
}  // namespace troupe::config
