// agents and teams sections: shape, types, ranges and the rules local to one
// item (unique names, a step's kind, a decision's options). Cross references
// are checked later, in check_references.cpp and check_workflows.cpp.
#include <algorithm>
#include <set>

#include "sections.hpp"

namespace troupe::config::detail {
namespace {

const char* const name_rule = "letters, digits, '_', '.' or '-'";

/// Reports a name that is empty or has other characters, and returns whether it is usable.
bool check_name(reader& r, const json& obj, const where& w, std::string_view key,
                const std::string& name) {
  if (!obj.contains(std::string(key)) || !obj[std::string(key)].is_string()) return false;
  if (valid_name(name)) return true;
  r.add(w.key(key).path,
        std::string("expected a non-empty name of ") + name_rule + ", got " + quote(name));
  return false;
}

void load_decision(reader& r, const json& j, const where& w, decision& d) {
  if (!r.object(j, w)) return;
  if (r.read(j, w, "by", d.by) && d.by != "human" &&
      (d.by.rfind("agent:", 0) != 0 || d.by.size() == 6))
    r.add(w.key("by").path, "expected 'human' or 'agent:NAME', got " + quote(d.by));
  if (r.read(j, w, "options", d.options)) {
    if (d.options.size() < 2)
      r.add(w.key("options").path,
            "expected at least 2 options, got " + std::to_string(d.options.size()));
    for (std::size_t i = 0; i < d.options.size(); ++i) {
      if (!j["options"][i].is_string()) continue;  // already reported
      if (d.options[i].empty())
        r.add(w.key("options").index(i).path, "expected a non-empty option, got ''");
      for (std::size_t k = 0; k < i; ++k)
        if (d.options[k] == d.options[i] && !d.options[i].empty())
          r.add(w.key("options").index(i).path, "duplicate option " + quote(d.options[i]));
    }
  }
  auto is_option = [&d](const std::string& o) {
    return std::find(d.options.begin(), d.options.end(), o) != d.options.end();
  };
  if (const json* on = r.member(j, w, "on")) {
    const where ow = w.key("on");
    if (!on->is_object()) {
      r.add(ow.path, "expected an object of option -> step id, got " + json_type_name(*on));
    } else {
      for (const auto& [option, target] : on->items()) {
        const where ew = ow.entry(option);
        if (!target.is_string()) {
          r.add(ew.path, "expected a step id (string), got " + json_type_name(target));
          continue;
        }
        if (!d.options.empty() && !is_option(option))
          r.add(ew.path, "unknown option " + quote(option) + did_you_mean(option, d.options) +
                             " (options: " + join(d.options) + ")");
        d.on.emplace(option, target.get<std::string>());
      }
    }
  }
  r.read(j, w, "max_loops", d.max_loops);
  const bool has_default = r.read(j, w, "default", d.default_option);
  if (has_default && !d.options.empty() && !is_option(d.default_option))
    r.add(w.key("default").path,
          "expected one of the options (" + join(d.options) + "), got " + quote(d.default_option));
  if (!j.contains("default") && d.by == "human")
    r.add(w.key("default").path,
          "missing required key 'default' (a human decision needs an option to take on timeout)");
  r.read(j, w, "timeout_ms", d.timeout_ms);
  r.read(j, w, "prompt", d.prompt);
}

void load_step(reader& r, const json& j, const where& w, step& s) {
  if (!r.object(j, w)) return;
  if (r.read(j, w, "id", s.id)) check_name(r, j, w, "id", s.id);
  r.read(j, w, "agent", s.agent);
  r.read(j, w, "capability", s.capability);
  r.read(j, w, "prompt", s.prompt);
  std::vector<std::string> after;
  if (r.read(j, w, "after", after)) s.after = std::move(after);
  r.read(j, w, "max_attempts", s.max_attempts);
  if (const json* d = r.member(j, w, "decision")) {
    decision dec;
    load_decision(r, *d, w.key("decision"), dec);
    s.decide = std::move(dec);
  }
  std::vector<std::string> kinds;
  for (const char* k : {"agent", "capability", "decision"})
    if (j.contains(k)) kinds.emplace_back(k);
  if (kinds.empty())
    r.add(w.path, "expected exactly one of 'agent', 'capability' or 'decision', got none");
  else if (kinds.size() > 1)
    r.add(w.path,
          "expected exactly one of 'agent', 'capability' or 'decision', got " + join(kinds, true));
}

void load_workflow(reader& r, const json& team_json, const where& tw, team& t) {
  const json* wf = r.member(team_json, tw, "workflow");
  if (!wf) return;
  const where ww = tw.key("workflow");
  if (!r.array(*wf, ww)) return;
  if (wf->empty()) r.add(ww.path, "expected at least one step, got []");
  for (std::size_t i = 0; i < wf->size(); ++i) {
    step s;
    load_step(r, (*wf)[i], ww.index(i), s);
    for (std::size_t k = 0; k < i && !s.id.empty(); ++k) {
      if (t.workflow[k].id == s.id) {
        r.add(ww.index(i).key("id").path,
              "duplicate step id " + quote(s.id) + " (also " + ww.index(k).path + ")");
        break;
      }
    }
    t.workflow.push_back(std::move(s));
  }
}

void load_team(reader& r, const json& j, const where& w, team& t, const std::vector<team>& before) {
  if (!r.object(j, w)) return;
  if (r.read(j, w, "name", t.name) && check_name(r, j, w, "name", t.name)) {
    for (std::size_t k = 0; k < before.size(); ++k) {
      if (before[k].name == t.name) {
        r.add(w.key("name").path,
              "duplicate team name " + quote(t.name) + " (also teams[" + std::to_string(k) + "])");
        break;
      }
    }
  }
  if (r.read(j, w, "agents", t.agents)) {
    if (t.agents.empty()) r.add(w.key("agents").path, "expected at least one agent, got []");
    for (std::size_t i = 0; i < t.agents.size(); ++i)
      for (std::size_t k = 0; k < i; ++k)
        if (!t.agents[i].empty() && t.agents[k] == t.agents[i])
          r.add(w.key("agents").index(i).path, "agent " + quote(t.agents[i]) + " is listed twice");
  }
  r.read(j, w, "budget_usd", t.budget_usd);
  r.read(j, w, "max_queued", t.max_queued);
  r.read(j, w, "max_attempts", t.max_attempts);
  const bool b = r.read(j, w, "backoff_ms", t.backoff_ms);
  const bool m = r.read(j, w, "backoff_max_ms", t.backoff_max_ms);
  if ((b || m) && t.backoff_max_ms < t.backoff_ms)
    r.add(w.key("backoff_max_ms").path, "expected backoff_max_ms >= backoff_ms (" +
                                            std::to_string(t.backoff_ms) + "), got " +
                                            std::to_string(t.backoff_max_ms));
  r.read(j, w, "stall_ms", t.stall_ms);
  r.read(j, w, "aging_ms", t.aging_ms);
  if (const json* sup = r.member(j, w, "supervision");
      sup && r.object(*sup, w.key("supervision"))) {
    const where sw = w.key("supervision");
    std::string strategy;
    if (r.read_choice(*sup, sw, "strategy", strategy))
      t.sup.strategy = strategy == "one_for_all"    ? supervision_strategy::one_for_all
                       : strategy == "rest_for_one" ? supervision_strategy::rest_for_one
                                                    : supervision_strategy::one_for_one;
    r.read(*sup, sw, "max_restarts", t.sup.max_restarts);
    r.read(*sup, sw, "within_ms", t.sup.within_ms);
  }
  if (const json* lim = r.member(j, w, "limits"); lim && r.object(*lim, w.key("limits"))) {
    r.read(*lim, w.key("limits"), "max_llm_calls", t.limits.max_llm_calls);
    r.read(*lim, w.key("limits"), "max_cost_usd", t.limits.max_cost_usd);
  }
  load_workflow(r, j, w, t);
}

}  // namespace

void load_agents(reader& r, const json& root, config& cfg) {
  const json* all = r.member(root, where{"", ""}, "agents");
  const where w{"agents", "agents"};
  if (!all || !r.array(*all, w)) return;
  for (std::size_t i = 0; i < all->size(); ++i) {
    const json& j = (*all)[i];
    const where aw = w.index(i);
    agent a;
    if (r.object(j, aw)) {
      if (r.read(j, aw, "name", a.name) && check_name(r, j, aw, "name", a.name)) {
        for (std::size_t k = 0; k < cfg.agents.size(); ++k) {
          if (cfg.agents[k].name == a.name) {
            r.add(aw.key("name").path, "duplicate agent name " + quote(a.name) + " (also agents[" +
                                           std::to_string(k) + "])");
            break;
          }
        }
      }
      r.read(j, aw, "model", a.model);
      r.read(j, aw, "system", a.system);
      r.read(j, aw, "capabilities", a.capabilities);
      r.read(j, aw, "max_concurrent", a.max_concurrent);
      r.read(j, aw, "budget_usd", a.budget_usd);
    }
    cfg.agents.push_back(std::move(a));  // kept even when bad, so indices match the document
  }
}

void load_teams(reader& r, const json& root, config& cfg) {
  const json* all = r.member(root, where{"", ""}, "teams");
  const where w{"teams", "teams"};
  if (!all || !r.array(*all, w)) return;
  for (std::size_t i = 0; i < all->size(); ++i) {
    team t;
    load_team(r, (*all)[i], w.index(i), t, cfg.teams);
    cfg.teams.push_back(std::move(t));
  }
}

}  // namespace troupe::config::detail
