#include "troupe/agents/recovery.hpp"

#include <unordered_map>

#include "troupe/agents/task_json.hpp"

namespace troupe::agents {

rebuilt_tasks rebuild_tasks(const base::recovered_state& state, const std::string& team) {
  rebuilt_tasks out;
  std::unordered_map<std::string, std::vector<const base::journal_row*>> journal;
  for (const auto& j : state.journal) journal[j.task_id].push_back(&j);
  for (const auto& row : state.active_tasks) {
    if (!team.empty() && row.team != team) continue;
    auto doc = nlohmann::json::parse(row.snapshot, nullptr, false);
    if (doc.is_discarded()) {
      out.problems.push_back("task=" + row.id + " error=\"unreadable snapshot\"");
      continue;
    }
    auto t = task_from_json(doc);
    if (!t) {
      out.problems.push_back("task=" + row.id + " error=\"" + t.error().message + "\"");
      continue;
    }
    if (auto it = journal.find(row.id); it != journal.end())
      for (const auto* j : it->second) {
        auto patch = nlohmann::json::parse(j->payload, nullptr, false);
        if (!patch.is_discarded()) (void)apply_patch(*t, patch);
      }
    t->snapshot_seq = row.seq;
    out.tasks.push_back(std::move(*t));
  }
  return out;
}

}  // namespace troupe::agents
