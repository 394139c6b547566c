// Team actor: the state of the team and of its agents that outlives a restart
// (paused, failed, budget spent), applied at init and written as whole rows
// through the store actor. See docs/durability.md, "Agent and team state".
#include <algorithm>

#include <spdlog/spdlog.h>

#include "team_state.hpp"
#include "troupe/base/clock.hpp"

namespace troupe::actors::detail {

void team_state::apply_entities() {
  for (const auto& row : spec.recovered_entities) {
    if (row.team != spec.team.name) continue;
    if (row.agent.empty()) {
      paused = row.paused;
      failed = failed || row.failed;
      // What a crashed incarnation left in memory may be ahead of the last commit.
      spent_usd = std::max(spent_usd, row.spent_usd);
      continue;
    }
    auto it = agent_index.find(row.agent);
    if (it == agent_index.end()) continue;  // no longer in the team
    auto& a = agents[it->second];
    a.paused = row.paused;
    a.failed = row.failed;
    a.spent_usd = std::max(a.spent_usd, row.spent_usd);
  }
  spec.recovered_entities.clear();
  spec.recovered_entities.shrink_to_fit();
}

base::entity_row team_state::entity_row_of(std::optional<std::size_t> agent) const {
  base::entity_row row;
  row.team = spec.team.name;
  row.updated_ms = base::now_ms();
  if (!agent) {
    row.paused = paused;
    row.failed = failed;
    row.spent_usd = spent_usd;
    return row;
  }
  const auto& a = agents[*agent];
  row.agent = a.spec->agent->name;
  row.paused = a.paused;
  row.failed = a.failed;
  row.spent_usd = a.spent_usd;
  return row;
}

std::vector<base::entity_row> team_state::all_entity_rows() const {
  std::vector<base::entity_row> rows{entity_row_of(std::nullopt)};
  for (std::size_t i = 0; i < agents.size(); ++i)
    if (!agents[i].retired) rows.push_back(entity_row_of(i));
  return rows;
}

void team_state::write_entities(self_ptr self, std::vector<base::entity_row> rows,
                                std::function<void(std::optional<base::error>)> then) {
  if (!spec.store) return then(std::nullopt);
  auto batch = std::make_shared<base::write_batch>();
  batch->entities = std::move(rows);
  self->request(spec.store, caf::infinite, write_atom::value, batch)
      .then([then](commit_reply& r) { then(r.ok ? std::nullopt : std::optional<base::error>(r.error)); },
            [self, then](caf::error& err) {
              then(base::make_error(base::errc::unavailable, "store actor failed: " + self->system().render(err)));
            });
}

void team_state::mark_failed(self_ptr self) {
  failed = true;
  for (auto& a : agents)
    if (!a.retired) a.failed = true;
  write_entities(self, all_entity_rows(), [team = spec.team.name](std::optional<base::error> err) {
    if (err) spdlog::error("could not commit the team's failed state team={} error=\"{}\"", team, err->message);
  });
}

void team_state::ack_after_commit(self_ptr self, std::vector<base::entity_row> rows, const reply_fn& reply) {
  write_entities(self, std::move(rows), [self, reply](std::optional<base::error> err) {
    if (err) return reply(base::fail(*err));
    reply(self->state.status_json());
  });
}

}  // namespace troupe::actors::detail
