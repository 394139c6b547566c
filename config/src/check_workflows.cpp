// The workflow graph of each team. A step depends on the steps in its `after`
// (or, without `after`, on the step before it). That graph must be acyclic; the
// only way back is a decision's `on`, which must target an ancestor so every
// loop is bounded by the decision's max_loops.
#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "sections.hpp"

namespace troupe::config::detail {
namespace {

struct edge {
  std::size_t to;
  std::optional<std::size_t> after_index;  ///< position in `after`; none for the implicit edge
};

/// Reports bad placeholders in a template: only {{input}}, {{prompt}}, {{agent}},
/// {{attempt}} and {{step.ID}} exist, and ID must be a step of this workflow
/// (`steps` == nullptr: any ID is accepted, e.g. in provider replies).
void check_template(reader& r, const std::string& text, const std::string& path,
                    const std::map<std::string, std::size_t>* steps) {
  std::size_t pos = 0;
  while ((pos = text.find("{{", pos)) != std::string::npos) {
    const auto close = text.find("}}", pos + 2);
    if (close == std::string::npos) return;  // not a placeholder: rendered as written
    std::string name = text.substr(pos + 2, close - pos - 2);
    // The renderer trims spaces, so "{{ input }}" is {{input}}.
    name.erase(0, name.find_first_not_of(' '));
    name.erase(name.find_last_not_of(' ') + 1);
    pos = close + 2;
    if (name == "input" || name == "prompt" || name == "agent" || name == "attempt") continue;
    if (name.rfind("step.", 0) == 0 && name.size() > 5) {
      const std::string id = name.substr(5);
      if (steps && !steps->count(id)) {
        std::vector<std::string> ids;
        for (const auto& [k, v] : *steps) ids.push_back(k);
        r.add(path, "unknown step " + quote(id) + " in {{" + name + "}}" + did_you_mean(id, ids));
      }
      continue;
    }
    r.add(path, "unknown placeholder '{{" + name +
                    "}}'; expected {{input}}, {{prompt}}, {{agent}}, {{attempt}} or {{step.ID}}");
  }
}

class workflow_checker {
 public:
  workflow_checker(reader& r, const team& t, const where& tw)
      : r_(r), t_(t), ww_(tw.key("workflow")) {}

  void run() {
    for (std::size_t k = 0; k < steps().size(); ++k)
      if (!steps()[k].id.empty())
        ids_.emplace(steps()[k].id, k);  // first wins; duplicates already reported
    build_edges();
    const bool acyclic = find_cycles();
    for (std::size_t k = 0; k < steps().size(); ++k) {
      check_template(r_, steps()[k].prompt, ww_.index(k).key("prompt").path, &ids_);
      if (steps()[k].decide) check_decision(k, acyclic);
    }
  }

 private:
  const std::vector<step>& steps() const { return t_.workflow; }

  std::string unknown_step(const std::string& id) const {
    std::vector<std::string> known;
    for (const auto& [k, v] : ids_) known.push_back(k);
    std::string hint = did_you_mean(id, known);
    if (hint.empty()) hint = " (steps: " + join(known) + ")";
    return "unknown step " + quote(id) + hint;
  }

  void build_edges() {
    deps_.assign(steps().size(), {});
    unresolved_.assign(steps().size(), false);
    for (std::size_t k = 0; k < steps().size(); ++k) {
      const step& s = steps()[k];
      if (!s.after) {
        if (k > 0) deps_[k].push_back({k - 1, std::nullopt});
        continue;
      }
      for (std::size_t j = 0; j < s.after->size(); ++j) {
        const std::string& id = (*s.after)[j];
        const std::string path = ww_.index(k).key("after").index(j).path;
        if (id.empty()) {  // a non-string, already reported
          unresolved_[k] = true;
          continue;
        }
        if (id == s.id) {
          r_.add(path, "a step cannot run after itself (" + quote(id) + ")");
          continue;
        }
        auto it = ids_.find(id);
        if (it == ids_.end()) {
          r_.add(path, unknown_step(id));
          unresolved_[k] = true;
          continue;
        }
        deps_[k].push_back({it->second, j});
      }
    }
  }

  /// Depth-first search; each back edge closes a cycle, reported at the step it leaves.
  bool find_cycles() {
    std::vector<int> color(steps().size(), 0);  // 0 new, 1 on the stack, 2 done
    std::vector<std::size_t> stack;
    bool acyclic = true;
    std::function<void(std::size_t)> visit = [&](std::size_t u) {
      color[u] = 1;
      stack.push_back(u);
      for (const edge& e : deps_[u]) {
        if (color[e.to] == 0) {
          visit(e.to);
        } else if (color[e.to] == 1) {
          acyclic = false;
          const auto from = std::find(stack.begin(), stack.end(), e.to);
          std::string cycle;
          for (auto it = from; it != stack.end(); ++it) cycle += label(*it) + " -> ";
          cycle += label(e.to);
          const where sw = ww_.index(u);
          const std::string path =
              e.after_index ? sw.key("after").index(*e.after_index).path : sw.path;
          r_.add(path, "'after' forms a cycle: " + cycle);
        }
      }
      stack.pop_back();
      color[u] = 2;
    };
    for (std::size_t k = 0; k < steps().size(); ++k)
      if (color[k] == 0) visit(k);
    return acyclic;
  }

  std::string label(std::size_t k) const {
    return steps()[k].id.empty() ? "workflow[" + std::to_string(k) + "]" : steps()[k].id;
  }

  /// The steps `k` transitively runs after; nullopt when a broken `after` on the
  /// way makes the set unknowable (that `after` is reported already).
  std::optional<std::set<std::size_t>> ancestors(std::size_t k) const {
    std::set<std::size_t> seen;
    std::vector<std::size_t> todo{k};
    while (!todo.empty()) {
      const std::size_t u = todo.back();
      todo.pop_back();
      if (unresolved_[u]) return std::nullopt;
      for (const edge& e : deps_[u])
        if (seen.insert(e.to).second) todo.push_back(e.to);
    }
    return seen;
  }

  void check_decision(std::size_t k, bool acyclic) {
    const decision& d = *steps()[k].decide;
    const where dw = ww_.index(k).key("decision");
    check_template(r_, d.prompt, dw.key("prompt").path, &ids_);
    const auto before = acyclic ? ancestors(k) : std::nullopt;
    for (const auto& [option, target] : d.on) {
      const std::string path = dw.key("on").entry(option).path;
      auto it = ids_.find(target);
      if (it == ids_.end()) {
        r_.add(path, unknown_step(target));
      } else if (before && !before->count(it->second)) {
        // A jump forward or sideways would skip steps or run them twice without a bound.
        r_.add(path, "expected a step that runs before " + quote(steps()[k].id) +
                         " (a decision may only loop back), got " + quote(target));
      }
    }
  }

  reader& r_;
  const team& t_;
  where ww_;
  std::map<std::string, std::size_t> ids_;
  std::vector<std::vector<edge>> deps_;
  std::vector<bool> unresolved_;  ///< the step has an `after` entry that names no step
};

}  // namespace

void check_workflows(reader& r, const config& cfg) {
  for (std::size_t i = 0; i < cfg.teams.size(); ++i)
    workflow_checker(r, cfg.teams[i], where{"teams", "teams"}.index(i)).run();
  for (const auto& [name, p] : cfg.providers)
    for (std::size_t j = 0; j < p.replies.size(); ++j)
      check_template(
          r, p.replies[j].text,
          where{"providers", "providers"}.entry(name).key("replies").index(j).key("text").path,
          nullptr);
}

}  // namespace troupe::config::detail
