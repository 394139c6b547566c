// The one-screen summary printed by `troupe check`, lookups and enum names.
// The summary never contains a secret: token and key values are not printed,
// and a store URL loses its password.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "troupe/config/config.hpp"

namespace troupe::config {
namespace {

std::string joined(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string money(double v) {
  std::ostringstream o;
  o << "$" << v;
  return o.str();
}

/// postgresql://user:secret@host/db?password=x -> postgresql://user:***@host/db?password=***
std::string redact_store(std::string s) {
  const auto scheme = s.find("://");
  if (scheme != std::string::npos) {
    const auto at = s.find('@', scheme + 3);
    const auto colon = s.find(':', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at)
      s.replace(colon + 1, at - colon - 1, "***");
  }
  for (auto p = s.find("password="); p != std::string::npos; p = s.find("password=", p + 1)) {
    const auto end = s.find('&', p);
    s.replace(p + 9, (end == std::string::npos ? s.size() : end) - p - 9, "***");
  }
  return s;
}

std::string pad(const std::string& s, std::size_t width) {
  return s.size() >= width ? s + " " : s + std::string(width - s.size(), ' ');
}

/// research -> review(decision: approve|revise, loops to research) -> publish
std::string render_workflow(const team& t) {
  std::string out;
  for (std::size_t k = 0; k < t.workflow.size(); ++k) {
    const step& s = t.workflow[k];
    std::string node = s.id;
    std::vector<std::string> notes;
    if (s.decide) {
      std::string d = "decision: " + joined(s.decide->options, "|");
      if (s.decide->by != "human") d += " by " + s.decide->by.substr(s.decide->by.find(':') + 1);
      std::vector<std::string> targets;
      for (const auto& [opt, target] : s.decide->on)
        if (std::find(targets.begin(), targets.end(), target) == targets.end())
          targets.push_back(target);
      if (!targets.empty()) d += ", loops to " + joined(targets, ", ");
      notes.push_back(d);
    } else if (!s.capability.empty()) {
      notes.push_back("any " + s.capability);
    }
    const bool sequential =
        !s.after || (k > 0 && s.after->size() == 1 && (*s.after)[0] == t.workflow[k - 1].id) ||
        (k == 0 && s.after->empty());
    if (!sequential)
      notes.push_back(s.after->empty() ? "no wait" : "after " + joined(*s.after, ", "));
    if (!notes.empty()) node += "(" + joined(notes, "; ") + ")";
    out += (k == 0 ? "" : " -> ") + node;
  }
  return out;
}

}  // namespace

std::string summarize(const config& cfg) {
  std::ostringstream o;
  o << "store:     " << redact_store(cfg.store) << "\n";
  o << "listen:    " << cfg.ctl.listen;
  if (cfg.ctl.tokens.empty()) {
    o << " (no tokens: loopback only)\n";
  } else {
    std::vector<std::string> toks;
    for (const auto& t : cfg.ctl.tokens) toks.push_back(t.name + "=" + to_string(t.granted));
    o << " (tokens: " << joined(toks, ", ") << ")\n";
  }
  o << "runtime:   " << cfg.rt.threads << " threads, snapshot every " << cfg.rt.snapshot_every
    << " deltas, retention " << cfg.rt.retention_days << " days\n";
  o << "providers: " << cfg.providers.size() << "\n";
  for (const auto& [name, p] : cfg.providers) {
    o << "  " << pad(name, 12) << to_string(p.kind);
    if (p.kind == provider_kind::scripted) {
      o << ", " << p.replies.size() << " replies, latency " << p.latency.min_ms;
      if (p.latency.max_ms != p.latency.min_ms) o << ".." << p.latency.max_ms;
      o << " ms";
    } else {
      o << " " << p.base_url << ", max_concurrency " << p.max_concurrency;
      if (!p.api_key_env.empty()) o << ", key from $" << p.api_key_env;
    }
    o << "\n";
  }
  o << "models:    " << cfg.models.size() << "\n";
  for (const auto& [name, m] : cfg.models) {
    o << "  " << pad(name, 12) << m.provider << "/" << m.api_name << ", "
      << money(m.usd_per_mtok_in) << " in, " << money(m.usd_per_mtok_out) << " out per Mtok\n";
  }
  o << "agents:    " << cfg.agents.size() << "\n";
  for (const auto& a : cfg.agents) {
    o << "  " << pad(a.name, 12) << "model " << a.model << ", max_concurrent " << a.max_concurrent;
    if (!a.capabilities.empty()) o << ", capabilities " << joined(a.capabilities, ", ");
    if (a.budget_usd) o << ", budget " << money(*a.budget_usd);
    o << "\n";
  }
  o << "teams:     " << cfg.teams.size() << "\n";
  for (const auto& t : cfg.teams) {
    o << "  " << pad(t.name, 12) << "agents " << joined(t.agents, ", ") << "; max_queued "
      << t.max_queued << "; " << to_string(t.sup.strategy) << " (" << t.sup.max_restarts
      << " restarts in " << t.sup.within_ms << " ms)";
    if (t.budget_usd) o << "; budget " << money(*t.budget_usd);
    o << "\n    workflow: " << render_workflow(t) << "\n";
  }
  return o.str();
}

std::string to_string(const problem& p) {
  return p.path.empty() ? p.message : p.path + ": " + p.message;
}

std::string check_report(const load_result& r) {
  std::string out;
  if (r.cfg) {
    out = summarize(*r.cfg);
  } else {
    for (const auto& p : r.problems) out += to_string(p) + "\n";
    const std::size_t n = r.problems.size();
    out += std::to_string(n) + (n == 1 ? " problem found\n" : " problems found\n");
  }
  for (const auto& w : r.warnings) out += "warning: " + to_string(w) + "\n";
  return out;
}

std::string to_string(provider_kind k) {
  switch (k) {
    case provider_kind::scripted:
      return "scripted";
    case provider_kind::openai:
      return "openai";
    case provider_kind::anthropic:
      return "anthropic";
  }
  return "?";
}

std::string to_string(supervision_strategy s) {
  switch (s) {
    case supervision_strategy::one_for_one:
      return "one_for_one";
    case supervision_strategy::one_for_all:
      return "one_for_all";
    case supervision_strategy::rest_for_one:
      return "rest_for_one";
  }
  return "?";
}

std::string to_string(role r) {
  switch (r) {
    case role::viewer:
      return "viewer";
    case role::operator_:
      return "operator";
    case role::admin:
      return "admin";
  }
  return "?";
}

const agent* config::find_agent(const std::string& name) const {
  auto it =
      std::find_if(agents.begin(), agents.end(), [&](const agent& a) { return a.name == name; });
  return it == agents.end() ? nullptr : &*it;
}

const team* config::find_team(const std::string& name) const {
  auto it = std::find_if(teams.begin(), teams.end(), [&](const team& t) { return t.name == name; });
  return it == teams.end() ? nullptr : &*it;
}

const model* config::find_model(const std::string& name) const {
  auto it = models.find(name);
  return it == models.end() ? nullptr : &it->second;
}

const provider* config::find_provider(const std::string& name) const {
  auto it = providers.find(name);
  return it == providers.end() ? nullptr : &it->second;
}

}  // namespace troupe::config
