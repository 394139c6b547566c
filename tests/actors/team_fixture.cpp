#include "team_fixture.hpp"

#include "troupe/config/config.hpp"

namespace troupe::actors::testing {

using nlohmann::json;

json team_config(json replies, json workflow, int agents, json supervision, int latency_ms) {
  json cfg;
  cfg["store"] = "sqlite:unused.db";
  cfg["providers"]["p"] = {{"kind", "scripted"}, {"latency_ms", latency_ms}, {"replies", std::move(replies)}};
  cfg["models"]["m"] = {{"provider", "p"}};
  json names = json::array();
  for (int i = 1; i <= agents; ++i) {
    auto name = "a" + std::to_string(i);
    cfg["agents"].push_back({{"name", name}, {"model", "m"}, {"max_concurrent", 1}, {"capabilities", {"work"}}});
    names.push_back(name);
  }
  cfg["teams"].push_back({{"name", "t"}, {"agents", names}, {"workflow", std::move(workflow)},
                          {"supervision", std::move(supervision)}, {"backoff_ms", 1}, {"backoff_max_ms", 5}});
  return cfg;
}

team_spec spec_of(const json& cfg_json, const std::string& team_name) {
  auto loaded = config::load_config_text(cfg_json.dump());
  std::string problems;
  for (const auto& p : loaded.problems) problems += p.path + ": " + p.message + "\n";
  EXPECT_TRUE(loaded.cfg) << problems;
  team_spec spec;
  if (!loaded.cfg) return spec;
  const auto& c = *loaded.cfg;
  spec.team = *c.find_team(team_name);
  for (const auto& name : spec.team.agents) {
    agent_spec a;
    a.agent = std::make_shared<const config::agent>(*c.find_agent(name));
    a.model = std::make_shared<const config::model>(*c.find_model(a.agent->model));
    a.provider = std::make_shared<const config::provider>(*c.find_provider(a.model->provider));
    spec.agents.push_back(std::move(a));
  }
  spec.task_ids = std::make_shared<base::id_generator>("t");
  spec.stats = std::make_shared<team_stats>();
  spec.tick_ms = 50;
  return spec;
}

team_fixture::team_fixture() {
  // Listeners run on the publisher's thread: here always the test thread.
  token_ = bus->subscribe([this](const agents::event_ptr& ev) {
    events.emplace_back(ev->name, ev->data);
    if (ev->name == "task.update" && ev->data.value("what", "") == "finished") finished[ev->task] = ev->data;
  });
}

team_fixture::~team_fixture() {
  if (team) caf::anon_send_exit(team, caf::exit_reason::user_shutdown);
  sched.run();
}

void team_fixture::spawn(team_spec spec) {
  spec.bus = bus;
  team = spawn_team(sys, std::move(spec));
  sched.run();
}

base::result<json> team_fixture::ask(const caf::message& msg, caf::actor to) {
  std::optional<base::result<json>> out;
  reply_fn reply = [&out](base::result<json> r) { out = std::move(r); };
  caf::anon_send(to ? to : team, msg + caf::make_message(reply));
  while (!out && sched.try_run_once()) {
  }
  if (!out) return base::fail(base::errc::timeout, "no reply");
  return *out;
}

std::string team_fixture::submit(const std::string& input, const std::string& agent, int max_attempts) {
  agents::task_spec ts;
  ts.team = "t";
  ts.agent = agent;
  ts.input = input;
  ts.max_attempts = max_attempts;
  auto r = ask(caf::make_message(submit_atom::value, ts));
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  sched.run();
  return r ? (*r)["id"].get<std::string>() : std::string();
}

json team_fixture::status() {
  auto r = ask(caf::make_message(status_atom::value));
  EXPECT_TRUE(r);
  return r ? *r : json{};
}

bool team_fixture::run_until(const std::function<bool()>& done, std::int64_t max_ms, std::int64_t step_ms) {
  for (std::int64_t t = 0; t <= max_ms; t += step_ms) {
    sched.run();
    if (done()) return true;
    sched.advance_time(std::chrono::milliseconds(step_ms));
  }
  sched.run();
  return done();
}

std::size_t team_fixture::count(const std::string& name, const std::function<bool(const json&)>& pred) const {
  std::size_t n = 0;
  for (const auto& [en, d] : events)
    if (en == name && pred(d)) ++n;
  return n;
}

std::vector<std::string> team_fixture::agent_states(const std::string& agent) const {
  std::vector<std::string> out;
  for (const auto& [en, d] : events)
    if (en == "agent.status" && d.value("agent", "") == agent) out.push_back(d.value("state", ""));
  return out;
}

}  // namespace troupe::actors::testing
