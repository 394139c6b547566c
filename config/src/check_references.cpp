// Cross references between sections: names used in one place must be defined
// in another. Runs after every section is loaded, so it sees the whole config.
#include <algorithm>

#include "sections.hpp"

namespace troupe::config::detail {
namespace {

/// "unknown model 'x'; did you mean 'y'?" or "unknown model 'x' (defined: a, b)".
std::string unknown(std::string_view what, const std::string& name,
                    const std::vector<std::string>& defined) {
  std::string hint = did_you_mean(name, defined);
  if (hint.empty())
    hint = defined.empty() ? std::string(" (none defined)") : " (defined: " + join(defined) + ")";
  return "unknown " + std::string(what) + " " + quote(name) + hint;
}

template <class Map>
std::vector<std::string> keys_of(const Map& m) {
  std::vector<std::string> out;
  for (const auto& [k, v] : m) out.push_back(k);
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

void check_steps(reader& r, const config& cfg, const team& t, const where& tw) {
  if (t.agents.empty()) return;   // already reported; every step check would repeat it
  std::vector<std::string> caps;  // capabilities offered by the team's agents
  for (const auto& name : t.agents)
    if (const agent* a = cfg.find_agent(name))
      for (const auto& c : a->capabilities)
        if (!contains(caps, c)) caps.push_back(c);
  for (std::size_t k = 0; k < t.workflow.size(); ++k) {
    const step& s = t.workflow[k];
    const where sw = tw.key("workflow").index(k);
    if (!s.agent.empty() && !contains(t.agents, s.agent)) {
      r.add(sw.key("agent").path, "agent " + quote(s.agent) + " is not in team " + quote(t.name) +
                                      did_you_mean(s.agent, t.agents) +
                                      " (members: " + join(t.agents) + ")");
    }
    if (!s.capability.empty() && !contains(caps, s.capability)) {
      std::string hint = did_you_mean(s.capability, caps);
      if (hint.empty())
        hint = caps.empty() ? " (they have none)" : " (they have: " + join(caps) + ")";
      r.add(sw.key("capability").path,
            "no agent of team " + quote(t.name) + " has capability " + quote(s.capability) + hint);
    }
    if (s.decide && s.decide->by.rfind("agent:", 0) == 0 && s.decide->by.size() > 6) {
      const std::string name = s.decide->by.substr(6);
      if (!contains(t.agents, name))
        r.add(sw.key("decision").key("by").path, "agent " + quote(name) + " is not in team " +
                                                     quote(t.name) + did_you_mean(name, t.agents) +
                                                     " (members: " + join(t.agents) + ")");
    }
  }
}

}  // namespace

void check_references(reader& r, const config& cfg) {
  const std::vector<std::string> providers = keys_of(cfg.providers);
  for (const auto& [name, m] : cfg.models)
    if (!m.provider.empty() && !cfg.find_provider(m.provider))
      r.add(where{"models", "models"}.entry(name).key("provider").path,
            unknown("provider", m.provider, providers));

  const std::vector<std::string> models = keys_of(cfg.models);
  std::vector<std::string> agents;
  for (const auto& a : cfg.agents)
    if (!a.name.empty() && !contains(agents, a.name)) agents.push_back(a.name);
  for (std::size_t i = 0; i < cfg.agents.size(); ++i) {
    const agent& a = cfg.agents[i];
    if (!a.model.empty() && !cfg.find_model(a.model))
      r.add("agents[" + std::to_string(i) + "].model", unknown("model", a.model, models));
  }

  for (std::size_t i = 0; i < cfg.teams.size(); ++i) {
    const team& t = cfg.teams[i];
    const where tw = where{"teams", "teams"}.index(i);
    for (std::size_t j = 0; j < t.agents.size(); ++j)
      if (!t.agents[j].empty() && !cfg.find_agent(t.agents[j]))
        r.add(tw.key("agents").index(j).path, unknown("agent", t.agents[j], agents));
    check_steps(r, cfg, t, tw);
  }
}

void collect_warnings(const config& cfg, std::vector<problem>& out) {
  for (const auto& [name, p] : cfg.providers) {
    const bool used = std::any_of(cfg.models.begin(), cfg.models.end(),
                                  [&](const auto& m) { return m.second.provider == name; });
    if (!used)
      out.push_back({where{"providers", "providers"}.entry(name).path,
                     "provider " + quote(name) + " is not used by any model"});
  }
  for (const auto& [name, m] : cfg.models) {
    const bool used = std::any_of(cfg.agents.begin(), cfg.agents.end(),
                                  [&](const agent& a) { return a.model == name; });
    if (!used)
      out.push_back({where{"models", "models"}.entry(name).path,
                     "model " + quote(name) + " is not used by any agent"});
  }
  for (std::size_t i = 0; i < cfg.teams.size(); ++i) {
    const team& t = cfg.teams[i];
    for (std::size_t j = 0; j < t.agents.size(); ++j) {
      const agent* a = cfg.find_agent(t.agents[j]);
      if (!a) continue;
      // A member is reachable when a step names it, asks for one of its
      // capabilities, or lets it decide.
      const bool reachable = std::any_of(t.workflow.begin(), t.workflow.end(), [&](const step& s) {
        return s.agent == a->name || contains(a->capabilities, s.capability) ||
               (s.decide && s.decide->by == "agent:" + a->name);
      });
      if (!reachable)
        out.push_back(
            {"teams[" + std::to_string(i) + "].agents[" + std::to_string(j) + "]",
             "agent " + quote(a->name) + " runs no step of the workflow of team " + quote(t.name)});
    }
  }
}

}  // namespace troupe::config::detail
