#include "metrics_histograms.hpp"

#include <map>

namespace troupe::host {

std::string histogram_text(const std::unordered_map<std::string, std::shared_ptr<actors::team_stats>>& teams,
                           const actors::store_stats& store) {
  // Teams in name order, so a scrape reads the same way every time.
  std::map<std::string, const actors::team_stats*> sorted;
  for (const auto& [name, s] : teams)
    if (s) sorted[name] = s.get();
  auto team_label = [](const std::string& name) { return "team=\"" + base::prometheus_label(name) + "\""; };

  std::string out;
  base::histogram::render_header(out, "troupe_llm_call_duration_seconds",
                                 "LLM call latency (request to result, retries included) by team, provider and model.");
  for (const auto& [name, s] : sorted)
    s->llm_seconds.render(out, "troupe_llm_call_duration_seconds", team_label(name), "provider", "model");
  base::histogram::render_header(out, "troupe_step_duration_seconds",
                                 "Agent step latency, from dispatch to a successful result, by team.");
  for (const auto& [name, s] : sorted) s->step_seconds.render(out, "troupe_step_duration_seconds", team_label(name));
  base::histogram::render_header(out, "troupe_task_duration_seconds",
                                 "Task end-to-end latency, from submit to its terminal state, by team.");
  for (const auto& [name, s] : sorted) s->task_seconds.render(out, "troupe_task_duration_seconds", team_label(name));
  base::histogram::render_header(out, "troupe_store_commit_duration_seconds", "Duration of successful group commits.");
  store.commit_seconds.render(out, "troupe_store_commit_duration_seconds", "");
  base::histogram::render_header(out, "troupe_store_batch_rows", "Rows per successful group commit.");
  store.batch_rows.render(out, "troupe_store_batch_rows", "");
  return out;
}

}  // namespace troupe::host
