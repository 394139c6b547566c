#pragma once
// The latency and batch-size histograms of /metrics, rendered from the stats
// the team and store actors record (runtime::metrics_text appends them).
#include <memory>
#include <string>
#include <unordered_map>

#include "troupe/actors/store_actor.hpp"
#include "troupe/actors/team_actor.hpp"

namespace troupe::host {

/// troupe_llm_call_duration_seconds{team,provider,model},
/// troupe_step_duration_seconds{team}, troupe_task_duration_seconds{team},
/// troupe_store_commit_duration_seconds, troupe_store_batch_rows.
std::string histogram_text(const std::unordered_map<std::string, std::shared_ptr<actors::team_stats>>& teams,
                           const actors::store_stats& store);

}  // namespace troupe::host
