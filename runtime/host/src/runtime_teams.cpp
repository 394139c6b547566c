// Team specs from the config, for start() and for hot reload.
#include "runtime_impl.hpp"

namespace troupe::host {
base::result<std::vector<actors::agent_spec>> runtime::impl::agent_specs_of(
    const std::shared_ptr<const config::config>& from, const config::team& team) {
  const auto& c = *from;
  std::vector<actors::agent_spec> out;
  out.reserve(team.agents.size());
  for (const auto& agent_name : team.agents) {
    const auto* agent = c.find_agent(agent_name);
    const auto* model = agent ? c.find_model(agent->model) : nullptr;
    const auto* provider = model ? c.find_provider(model->provider) : nullptr;
    if (!provider)
      return base::fail(base::errc::invalid_config, "agent '" + agent_name + "' has no usable model/provider");
    actors::agent_spec as;
    // Aliasing pointers: they keep the whole config alive and copy nothing.
    as.agent = std::shared_ptr<const config::agent>(from, agent);
    as.model = std::shared_ptr<const config::model>(from, model);
    as.provider = std::shared_ptr<const config::provider>(from, provider);
    out.push_back(std::move(as));
  }
  return out;
}

base::result<actors::team_spec> runtime::impl::team_spec_of(const std::shared_ptr<const config::config>& from,
                                                            const config::team& team) {
  actors::team_spec spec;
  auto agents = agent_specs_of(from, team);
  if (!agents) return base::fail(agents.error());
  spec.team = team;
  spec.agents = std::move(*agents);
  spec.store = store_actor;
  spec.bus = bus;
  spec.llm = llm;
  spec.task_ids = ids;
  spec.stats = std::make_shared<actors::team_stats>();
  spec.snapshot_every = from->rt.snapshot_every;
  spec.tick_ms = opts.team_tick_ms;
  return spec;
}

}  // namespace troupe::host
