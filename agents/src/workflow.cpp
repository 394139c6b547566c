#include "troupe/agents/workflow.hpp"

#include <algorithm>
#include <cctype>

namespace troupe::agents {

std::shared_ptr<const workflow> workflow::from_team(const config::team& team) {
  auto wf = std::make_shared<workflow>();
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < team.workflow.size(); ++i) index[team.workflow[i].id] = i;
  for (std::size_t i = 0; i < team.workflow.size(); ++i) {
    const auto& s = team.workflow[i];
    workflow_node n;
    n.id = s.id;
    n.agent = s.agent;
    n.capability = s.capability;
    n.prompt = s.prompt;
    n.max_attempts = s.max_attempts.value_or(0);
    if (s.decide) {
      n.is_decision = true;
      n.decide = *s.decide;
      n.human = s.decide->by == "human";
      if (!n.human && s.decide->by.rfind("agent:", 0) == 0) n.agent = s.decide->by.substr(6);
      for (const auto& [option, target] : s.decide->on)
        if (auto it = index.find(target); it != index.end()) n.on[option] = it->second;
    }
    if (s.after) {
      for (const auto& dep : *s.after)
        if (auto it = index.find(dep); it != index.end()) n.deps.push_back(it->second);
    } else if (i > 0) {
      n.deps.push_back(i - 1);
    }
    wf->nodes.push_back(std::move(n));
  }
  // The result is the output of the last agent (non-decision) step.
  for (std::size_t i = wf->nodes.size(); i-- > 0;)
    if (!wf->nodes[i].is_decision) {
      wf->result_node = i;
      break;
    }
  return wf;
}

std::shared_ptr<const workflow> workflow::single_agent(const std::string& agent) {
  auto wf = std::make_shared<workflow>();
  workflow_node n;
  n.id = "run";
  n.agent = agent;
  n.prompt = "{{input}}";
  wf->nodes.push_back(std::move(n));
  return wf;
}

std::vector<std::size_t> workflow::descendants(std::size_t from) const {
  std::vector<bool> seen(nodes.size(), false);
  seen[from] = true;
  // Nodes are not necessarily topologically ordered by index (after may point
  // forward), so iterate to a fixed point; workflows are small.
  for (bool changed = true; changed;) {
    changed = false;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      if (seen[i]) continue;
      for (auto d : nodes[i].deps)
        if (seen[d]) {
          seen[i] = changed = true;
          break;
        }
    }
  }
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < nodes.size(); ++i)
    if (seen[i]) out.push_back(i);
  return out;
}

void init_steps(task& t, const workflow& wf) {
  t.steps.clear();
  t.steps.reserve(wf.nodes.size());
  for (const auto& n : wf.nodes) {
    step_run s;
    s.id = n.id;
    t.steps.push_back(std::move(s));
  }
}

std::vector<std::size_t> ready_steps(const task& t, const workflow& wf) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < wf.nodes.size() && i < t.steps.size(); ++i) {
    if (t.steps[i].state != step_state::pending) continue;
    bool ok = std::all_of(wf.nodes[i].deps.begin(), wf.nodes[i].deps.end(), [&](std::size_t d) {
      return t.steps[d].state == step_state::succeeded || t.steps[d].state == step_state::skipped;
    });
    if (ok) out.push_back(i);
  }
  return out;
}

bool all_done(const task& t) {
  return std::all_of(t.steps.begin(), t.steps.end(), [](const step_run& s) {
    return s.state == step_state::succeeded || s.state == step_state::skipped;
  });
}

decision_effect apply_decision(task& t, const workflow& wf, std::size_t node, const std::string& option) {
  auto& step = t.steps[node];
  step.output = option;
  step.state = step_state::succeeded;
  const auto& n = wf.nodes[node];
  auto edge = n.on.find(option);
  if (edge == n.on.end()) return decision_effect::proceed;
  if (step.loops >= n.decide.max_loops) return decision_effect::loop_limit;
  int loops = step.loops + 1;
  for (auto i : wf.descendants(edge->second)) {
    auto& s = t.steps[i];
    s.state = step_state::pending;
    s.attempts = 0;
    s.error.reset();
  }
  // The decision itself is a descendant of its loop target; keep its loop count.
  step.loops = loops;
  return decision_effect::loop_back;
}

namespace {
std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}
bool word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
}  // namespace

std::string parse_decision(std::string_view reply, const std::vector<std::string>& options) {
  auto text = lower(reply);
  std::size_t best_pos = std::string::npos;
  std::string best;
  for (const auto& option : options) {
    auto needle = lower(option);
    if (needle.empty()) continue;
    for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
      bool left = pos == 0 || !word_char(text[pos - 1]);
      auto end = pos + needle.size();
      bool right = end >= text.size() || !word_char(text[end]);
      if (left && right) {
        if (pos < best_pos) {
          best_pos = pos;
          best = option;
        }
        break;
      }
    }
  }
  return best;
}

}  // namespace troupe::agents
