#include "troupe/agents/task_json.hpp"

#include "troupe/base/clock.hpp"
#include "troupe/base/json_text.hpp"

namespace troupe::agents {
using nlohmann::json;

namespace {
std::string ts(std::int64_t ms) { return ms ? base::format_rfc3339(ms) : std::string(); }

base::error error_from_json(const json& j) {
  base::error e;
  e.code = base::errc_from_string(j.value("code", "internal")).value_or(base::errc::internal);
  e.message = j.value("message", "");
  return e;
}

usage_cost cost_from_json(const json& j) {
  usage_cost c;
  c.tokens_in = j.value("tokens_in", std::int64_t{0});
  c.tokens_out = j.value("tokens_out", std::int64_t{0});
  c.usd = j.value("usd", 0.0);
  c.calls = j.value("calls", std::int64_t{0});
  return c;
}

step_run step_from_json(const json& j) {
  step_run s;
  s.id = j.at("id").get<std::string>();
  s.state = step_state_from(j.value("state", "pending")).value_or(step_state::pending);
  s.agent = j.value("agent", "");
  s.output = j.value("output", "");
  s.attempts = j.value("attempts", 0);
  s.loops = j.value("loops", 0);
  if (auto it = j.find("error"); it != j.end() && it->is_object()) s.error = error_from_json(*it);
  s.cost.tokens_in = j.value("tokens_in", std::int64_t{0});
  s.cost.tokens_out = j.value("tokens_out", std::int64_t{0});
  s.cost.usd = j.value("cost_usd", 0.0);
  s.cost.calls = j.value("calls", std::int64_t{0});
  s.started_ms = j.value("started_ms", std::int64_t{0});
  s.finished_ms = j.value("finished_ms", std::int64_t{0});
  return s;
}

decision_record decision_from_json(const json& j) {
  decision_record d;
  d.id = j.at("id").get<std::string>();
  d.step = j.value("step", "");
  d.by = j.value("by", "");
  d.options = j.value("options", std::vector<std::string>{});
  d.chosen = j.value("chosen", "");
  d.decided_by = j.value("decided_by", "");
  d.comment = j.value("comment", "");
  d.pending = j.value("state", "pending") == "pending";
  d.created_ms = j.value("created_ms", std::int64_t{0});
  d.resolved_ms = j.value("resolved_ms", std::int64_t{0});
  d.deadline_ms = j.value("deadline_ms", std::int64_t{0});
  return d;
}
}  // namespace

json to_json(const base::error& e) {
  return json{{"code", base::to_string(e.code)}, {"message", e.message}};
}

json to_json(const usage_cost& c) {
  return json{{"usd", c.usd}, {"tokens_in", c.tokens_in}, {"tokens_out", c.tokens_out}, {"calls", c.calls}};
}

json to_json(const step_run& s) {
  json j{{"id", s.id},
         {"state", to_string(s.state)},
         {"agent", s.agent},
         {"output", s.output},
         {"attempts", s.attempts},
         {"loops", s.loops},
         {"tokens_in", s.cost.tokens_in},
         {"tokens_out", s.cost.tokens_out},
         {"cost_usd", s.cost.usd},
         {"calls", s.cost.calls},
         {"started_ms", s.started_ms},
         {"finished_ms", s.finished_ms},
         {"started", ts(s.started_ms)},
         {"finished", ts(s.finished_ms)}};
  if (s.error) j["error"] = to_json(*s.error);
  return j;
}

json to_json(const decision_record& d) {
  return json{{"id", d.id},
              {"step", d.step},
              {"by", d.by},
              {"options", d.options},
              {"chosen", d.chosen},
              {"decided_by", d.decided_by},
              {"comment", d.comment},
              {"state", d.pending ? "pending" : "resolved"},
              {"created_ms", d.created_ms},
              {"resolved_ms", d.resolved_ms},
              {"deadline_ms", d.deadline_ms}};
}

json to_json(const task& t) {
  json steps = json::array();
  for (const auto& s : t.steps) steps.push_back(to_json(s));
  json decisions = json::array();
  for (const auto& d : t.decisions) decisions.push_back(to_json(d));
  json metadata = json::parse(t.metadata, nullptr, false);
  if (metadata.is_discarded()) metadata = json::object();
  json j{{"id", t.id},
         {"team", t.team},
         {"agent", t.agent},
         {"state", to_string(t.state)},
         {"priority", t.priority},
         {"input", t.input},
         {"idempotency_key", t.idempotency_key},
         {"deadline_at_ms", t.deadline_at_ms},
         {"max_attempts", t.max_attempts},
         {"depends_on", t.depends_on},
         {"metadata", std::move(metadata)},
         {"steps", std::move(steps)},
         {"decisions", std::move(decisions)},
         {"result", t.result},
         {"cost", to_json(t.cost)},
         {"created_ms", t.created_ms},
         {"updated_ms", t.updated_ms},
         {"created", ts(t.created_ms)},
         {"updated", ts(t.updated_ms)},
         {"seq", t.seq}};
  if (t.error) j["error"] = to_json(*t.error);
  return j;
}

base::result<task> task_from_json(const json& j) {
  try {
    task t;
    t.id = j.at("id").get<std::string>();
    t.team = j.value("team", "");
    t.agent = j.value("agent", "");
    auto state = task_state_from(j.value("state", "queued"));
    if (!state) return base::fail(base::errc::bad_request, "task snapshot: unknown state");
    t.state = *state;
    t.priority = j.value("priority", 5);
    t.input = j.value("input", "");
    t.idempotency_key = j.value("idempotency_key", "");
    t.deadline_at_ms = j.value("deadline_at_ms", std::int64_t{0});
    t.max_attempts = j.value("max_attempts", 0);
    t.depends_on = j.value("depends_on", std::vector<std::string>{});
    if (auto it = j.find("metadata"); it != j.end()) t.metadata = it->dump();
    for (const auto& s : j.value("steps", json::array())) t.steps.push_back(step_from_json(s));
    for (const auto& d : j.value("decisions", json::array())) t.decisions.push_back(decision_from_json(d));
    t.result = j.value("result", "");
    if (auto it = j.find("error"); it != j.end() && it->is_object()) t.error = error_from_json(*it);
    if (auto it = j.find("cost"); it != j.end()) t.cost = cost_from_json(*it);
    t.created_ms = j.value("created_ms", std::int64_t{0});
    t.updated_ms = j.value("updated_ms", std::int64_t{0});
    t.seq = j.value("seq", std::int64_t{0});
    t.snapshot_seq = t.seq;
    return t;
  } catch (const json::exception& e) {
    return base::fail(base::errc::bad_request, std::string("task snapshot: ") + e.what());
  }
}

json make_patch(const task& t, const std::vector<std::size_t>& steps,
                const std::vector<std::size_t>& decisions) {
  json j{{"state", to_string(t.state)}, {"cost", to_json(t.cost)}, {"updated_ms", t.updated_ms},
         {"seq", t.seq}};
  json s = json::array();
  for (auto i : steps) s.push_back(to_json(t.steps[i]));
  j["steps"] = std::move(s);
  json d = json::array();
  for (auto i : decisions) d.push_back(to_json(t.decisions[i]));
  j["decisions"] = std::move(d);
  if (!t.result.empty()) j["result"] = t.result;
  if (t.error) j["error"] = to_json(*t.error);
  return j;
}

base::result<void> apply_patch(task& t, const json& patch) {
  try {
    if (auto st = task_state_from(patch.value("state", "")); st) t.state = *st;
    if (auto it = patch.find("cost"); it != patch.end()) t.cost = cost_from_json(*it);
    t.updated_ms = patch.value("updated_ms", t.updated_ms);
    t.seq = patch.value("seq", t.seq);
    for (const auto& sj : patch.value("steps", json::array())) {
      auto s = step_from_json(sj);
      if (auto* existing = t.find_step(s.id))
        *existing = std::move(s);
      else
        t.steps.push_back(std::move(s));
    }
    for (const auto& dj : patch.value("decisions", json::array())) {
      auto d = decision_from_json(dj);
      if (auto* existing = t.find_decision(d.id))
        *existing = std::move(d);
      else
        t.decisions.push_back(std::move(d));
    }
    if (auto it = patch.find("result"); it != patch.end()) t.result = it->get<std::string>();
    if (auto it = patch.find("error"); it != patch.end()) t.error = error_from_json(*it);
    return {};
  } catch (const json::exception& e) {
    return base::fail(base::errc::bad_request, std::string("task journal delta: ") + e.what());
  }
}

namespace {

/// The task's parts, written with the base writer.
struct text_writer : base::json_text_writer {
  void error(const base::error& e) {
    key("error");
    open('{');
    str("code", base::to_string(e.code));
    str("message", e.message);
    close('}');
  }
  void cost(const usage_cost& c) {
    key("cost");
    open('{');
    dbl("usd", c.usd);
    num("tokens_in", c.tokens_in);
    num("tokens_out", c.tokens_out);
    num("calls", c.calls);
    close('}');
  }
  void step(const step_run& s) {
    next();
    open('{');
    str("id", s.id);
    str("state", to_string(s.state));
    str("agent", s.agent);
    str("output", s.output);
    num("attempts", s.attempts);
    num("loops", s.loops);
    num("tokens_in", s.cost.tokens_in);
    num("tokens_out", s.cost.tokens_out);
    dbl("cost_usd", s.cost.usd);
    num("calls", s.cost.calls);
    num("started_ms", s.started_ms);
    num("finished_ms", s.finished_ms);
    if (s.error) error(*s.error);
    close('}');
  }
  void decision(const decision_record& d) {
    next();
    open('{');
    str("id", d.id);
    str("step", d.step);
    str("by", d.by);
    key("options");
    open('[');
    for (const auto& o : d.options) {
      next();
      base::append_json_string(out, o);
    }
    close(']');
    str("chosen", d.chosen);
    str("decided_by", d.decided_by);
    str("comment", d.comment);
    str("state", d.pending ? "pending" : "resolved");
    num("created_ms", d.created_ms);
    num("resolved_ms", d.resolved_ms);
    num("deadline_ms", d.deadline_ms);
    close('}');
  }
};

std::size_t text_size_hint(const task& t) {
  std::size_t n = 512 + t.input.size() + t.result.size() + t.metadata.size();
  for (const auto& s : t.steps) n += 256 + s.output.size();
  return n + 256 * t.decisions.size();
}

}  // namespace

std::string snapshot_text(const task& t) {
  text_writer w;
  w.out.reserve(text_size_hint(t));
  w.open('{');
  w.str("id", t.id);
  w.str("team", t.team);
  w.str("agent", t.agent);
  w.str("state", to_string(t.state));
  w.num("priority", t.priority);
  w.str("input", t.input);
  w.str("idempotency_key", t.idempotency_key);
  w.num("deadline_at_ms", t.deadline_at_ms);
  w.num("max_attempts", t.max_attempts);
  w.key("depends_on");
  w.open('[');
  for (const auto& d : t.depends_on) {
    w.next();
    base::append_json_string(w.out, d);
  }
  w.close(']');
  w.raw("metadata", t.metadata.empty() ? std::string_view("{}") : std::string_view(t.metadata));
  w.key("steps");
  w.open('[');
  for (const auto& s : t.steps) w.step(s);
  w.close(']');
  w.key("decisions");
  w.open('[');
  for (const auto& d : t.decisions) w.decision(d);
  w.close(']');
  w.str("result", t.result);
  w.cost(t.cost);
  w.num("created_ms", t.created_ms);
  w.num("updated_ms", t.updated_ms);
  w.num("seq", t.seq);
  if (t.error) w.error(*t.error);
  w.close('}');
  return std::move(w.out);
}

std::string patch_text(const task& t, const std::vector<std::size_t>& steps,
                       const std::vector<std::size_t>& decisions) {
  text_writer w;
  std::size_t n = 256;
  for (auto i : steps) n += 256 + t.steps[i].output.size();
  w.out.reserve(n + 256 * decisions.size() + t.result.size());
  w.open('{');
  w.str("state", to_string(t.state));
  w.cost(t.cost);
  w.num("updated_ms", t.updated_ms);
  w.num("seq", t.seq);
  w.key("steps");
  w.open('[');
  for (auto i : steps) w.step(t.steps[i]);
  w.close(']');
  w.key("decisions");
  w.open('[');
  for (auto i : decisions) w.decision(t.decisions[i]);
  w.close(']');
  if (!t.result.empty()) w.str("result", t.result);
  if (t.error) w.error(*t.error);
  w.close('}');
  return std::move(w.out);
}

}  // namespace troupe::agents
