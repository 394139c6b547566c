// The audit log of control-plane commands, end to end in-process: real actors,
// a real SQLite store, commands through the control port as a named principal,
// the log read back through the `audit` op (and so from the database).
#include <filesystem>
#include <future>

#include <unistd.h>

#include "runtime_fixture.hpp"
#include "troupe/persistence/open_store.hpp"
#include "troupe/base/clock.hpp"

namespace troupe::test {
namespace {

using nlohmann::json;

base::result<json> call_as(host::runtime& rt, const std::string& who, const std::string& op, json args) {
  auto p = std::make_shared<std::promise<base::result<json>>>();
  auto f = p->get_future();
  rt.call(protocols::principal{who, config::role::admin}, op, std::move(args),
          [p](base::result<json> r) { p->set_value(std::move(r)); });
  if (f.wait_for(std::chrono::seconds(10)) != std::future_status::ready)
    return base::fail(base::errc::timeout, "no reply to '" + op + "' within the test deadline");
  return f.get();
}

/// One team "t" with agent "a1": a step, then a human sign-off.
json config_with_signoff(const std::string& store) {
  json cfg;
  cfg["store"] = store;
  cfg["providers"]["p"] = {{"kind", "scripted"}, {"latency_ms", 0}, {"replies", json::array({{{"text", "ok"}}})}};
  cfg["models"]["m"] = {{"provider", "p"}};
  cfg["agents"].push_back({{"name", "a1"}, {"model", "m"}, {"capabilities", {"work"}}});
  cfg["teams"].push_back(
      {{"name", "t"},
       {"agents", {"a1"}},
       {"workflow", json::array({
                        {{"id", "draft"}, {"agent", "a1"}, {"prompt", "{{input}}"}},
                        {{"id", "signoff"}, {"decision", {{"by", "human"}, {"options", {"ship", "hold"}}, {"default", "hold"}}}},
                    })}});
  return cfg;
}

struct scratch_dir {
  std::filesystem::path path = std::filesystem::temp_directory_path() /
                               ("troupe-audit-" + std::to_string(::getpid()) + "-" +
                                testing::UnitTest::GetInstance()->current_test_info()->name());
  scratch_dir() {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~scratch_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

/// The newest audit entry with this action (the log is newest first).
json newest(const json& entries, const std::string& action) {
  for (const auto& e : entries)
    if (e["action"] == action) return e;
  ADD_FAILURE() << "no audit entry for '" << action << "' in " << entries.dump(1);
  return json::object();
}

TEST(audit, every_command_is_logged_with_principal_args_outcome_and_time_and_no_secrets) {
  scratch_dir dir;
  const std::string url = "sqlite:" + (dir.path / "t.db").string();
  host::runtime rt(load(config_with_signoff(url).dump()), host::runtime_options{true, {}, 20});
  ASSERT_TRUE(rt.start());
  event_log log(rt);
  const auto t0 = base::now_ms();

  const std::string long_input(5000, 'x');
  auto submitted = call_as(rt, "alice", "submit",
                           {{"team", "t"}, {"input", long_input}, {"metadata", {{"api_key", "sk-live-123"}}}});
  ASSERT_TRUE(submitted) << submitted.error().message;
  const std::string id = (*submitted)["id"];
  auto refused = call_as(rt, "alice", "submit", {{"team", "nope"}, {"input", "x"}});
  ASSERT_FALSE(refused);

  auto pending = log.wait_event("decision.pending", [&](const json& d) { return d["task"] == id; });
  auto decided = call_as(rt, "bob", "decide",
                         {{"decision_id", pending["id"]}, {"option", "ship"}, {"comment", "lgtm"}});
  ASSERT_TRUE(decided) << decided.error().message;
  ASSERT_EQ(log.wait_terminal(id)["state"], "succeeded");
  auto paused = call_as(rt, "carol", "pause", {{"team", "t"}, {"access_token", "s3cr3t-value"}});
  ASSERT_TRUE(paused) << paused.error().message;
  auto cancelled = call_as(rt, "dave", "cancel", {{"id", "no-such-task"}});
  ASSERT_FALSE(cancelled);
  EXPECT_EQ(cancelled.error().code, base::errc::not_found);
  const auto t1 = base::now_ms();

  auto audit = call_as(rt, "viewer", "audit", {{"limit", 50}});
  ASSERT_TRUE(audit) << audit.error().message;
  const auto& entries = (*audit)["entries"];
  const std::string text = entries.dump();
  EXPECT_EQ(text.find("sk-live-123"), std::string::npos) << "a secret reached the audit log: " << text;
  EXPECT_EQ(text.find("s3cr3t-value"), std::string::npos) << "a secret reached the audit log: " << text;
  for (const auto& e : entries) {
    EXPECT_GE(e["ts_ms"].get<std::int64_t>(), t0) << e.dump();
    EXPECT_LE(e["ts_ms"].get<std::int64_t>(), t1) << e.dump();
  }

  // Submits: the accepted one names its new task; the refused one its error.
  std::vector<json> submits;
  for (const auto& e : entries)
    if (e["action"] == "submit") submits.push_back(e);
  ASSERT_EQ(submits.size(), 2u) << text;
  const auto& refused_entry = submits[0];  // newest first
  EXPECT_EQ(refused_entry["principal"], "alice");
  EXPECT_EQ(refused_entry["outcome"], "not_found");
  EXPECT_EQ(refused_entry["detail"]["args"]["team"], "nope");
  EXPECT_NE(refused_entry["detail"]["error"].get<std::string>().find("no team 'nope'"), std::string::npos);
  const auto& accepted = submits[1];
  EXPECT_EQ(accepted["principal"], "alice");
  EXPECT_EQ(accepted["outcome"], "ok");
  EXPECT_EQ(accepted["target"], id);
  EXPECT_EQ(accepted["detail"]["args"]["team"], "t");
  EXPECT_EQ(accepted["detail"]["args"]["metadata"]["api_key"], "***");
  // A 5,000-byte input is kept short, with its length.
  const std::string kept = accepted["detail"]["args"]["input"];
  EXPECT_LT(kept.size(), 300u);
  EXPECT_NE(kept.find("(5000 bytes)"), std::string::npos) << kept;

  auto decide = newest(entries, "decide");
  EXPECT_EQ(decide["principal"], "bob");
  EXPECT_EQ(decide["target"], pending["id"]);
  EXPECT_EQ(decide["outcome"], "ok");
  EXPECT_EQ(decide["detail"]["args"]["option"], "ship");
  EXPECT_EQ(decide["detail"]["args"]["comment"], "lgtm");

  auto pause = newest(entries, "pause");
  EXPECT_EQ(pause["principal"], "carol");
  EXPECT_EQ(pause["target"], "t");
  EXPECT_EQ(pause["outcome"], "ok");
  EXPECT_EQ(pause["detail"]["args"]["access_token"], "***");

  auto cancel = newest(entries, "cancel");
  EXPECT_EQ(cancel["principal"], "dave");
  EXPECT_EQ(cancel["target"], "no-such-task");
  EXPECT_EQ(cancel["outcome"], "not_found");

  // Order: the log is newest first and the commands ran in this order.
  std::vector<std::string> actions;
  for (const auto& e : entries) actions.push_back(e["action"]);
  EXPECT_EQ(actions, (std::vector<std::string>{"cancel", "pause", "decide", "submit", "submit"})) << text;
  rt.stop(1000);
}

// Durability of the log: an acknowledged submit's row is committed with its task,
// so it is in the database when the answer arrives (read here on a connection of
// our own, not through the store actor, which would first flush what is queued).
TEST(audit, an_acknowledged_submit_finds_its_row_already_committed) {
  scratch_dir dir;
  const std::string url = "sqlite:" + (dir.path / "t.db").string();
  host::runtime rt(load(config_with_signoff(url).dump()), host::runtime_options{true, {}, 20});
  ASSERT_TRUE(rt.start());
  auto reader = persistence::open_store(url);
  ASSERT_TRUE(reader) << reader.error().message;
  for (int i = 0; i < 20; ++i) {
    auto submitted = call_as(rt, "frank", "submit", {{"team", "t"}, {"input", "story " + std::to_string(i)}});
    ASSERT_TRUE(submitted) << submitted.error().message;
    const std::string id = (*submitted)["id"];
    auto rows = (*reader)->load_audit(100);
    ASSERT_TRUE(rows) << rows.error().message;
    int found = 0;
    for (const auto& r : *rows)
      if (r.action == "submit" && r.target == id && r.principal == "frank" && r.outcome == "ok") ++found;
    ASSERT_EQ(found, 1) << "submit " << i << " (" << id << ") was answered before its audit row was committed";
  }
  // With an idempotency key the row is written once the answer is known: the repeat
  // names the task it found.
  auto first = call_as(rt, "frank", "submit", {{"team", "t"}, {"input", "keyed"}, {"idempotency_key", "k-1"}});
  auto again = call_as(rt, "grace", "submit", {{"team", "t"}, {"input", "keyed"}, {"idempotency_key", "k-1"}});
  ASSERT_TRUE(first && again);
  EXPECT_EQ((*first)["id"], (*again)["id"]);
  auto audit = call_as(rt, "viewer", "audit", {{"limit", 2}});
  ASSERT_TRUE(audit) << audit.error().message;
  const auto& e = (*audit)["entries"];
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0]["principal"], "grace");
  EXPECT_EQ(e[0]["target"], (*first)["id"]);
  EXPECT_EQ(e[0]["detail"].value("existing", false), true) << e.dump();
  EXPECT_EQ(e[1]["principal"], "frank");
  EXPECT_EQ(e[1]["target"], (*first)["id"]);
  rt.stop(1000);
}

TEST(audit, the_log_survives_a_restart) {
  scratch_dir dir;
  const std::string url = "sqlite:" + (dir.path / "t.db").string();
  {
    host::runtime rt(load(config_with_signoff(url).dump()), host::runtime_options{true, {}, 20});
    ASSERT_TRUE(rt.start());
    ASSERT_TRUE(call_as(rt, "erin", "pause", {{"agent", "a1"}}));
    rt.stop(1000);
  }
  host::runtime rt(load(config_with_signoff(url).dump()), host::runtime_options{true, {}, 20});
  ASSERT_TRUE(rt.start());
  auto audit = call_as(rt, "viewer", "audit", {{"limit", 10}});
  ASSERT_TRUE(audit) << audit.error().message;
  ASSERT_EQ((*audit)["entries"].size(), 1u) << audit->dump();
  const auto& e = (*audit)["entries"][0];
  EXPECT_EQ(e["principal"], "erin");
  EXPECT_EQ(e["action"], "pause");
  EXPECT_EQ(e["target"], "a1");
  EXPECT_EQ(e["outcome"], "ok");
  rt.stop(1000);
}

}  // namespace
}  // namespace troupe::test
