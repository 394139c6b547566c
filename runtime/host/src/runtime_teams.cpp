// Team specs from the config, for start() and for hot reload.
#include "runtime_impl.hpp"

namespace troupe::host {
namespace {

template <class T>
std::shared_ptr<const T> shared(std::unordered_map<std::string, std::shared_ptr<const T>>& cache, const T& value,
                                const std::string& name) {
  auto& slot = cache[name];
  if (!slot) slot = std::make_shared<const T>(value);
  return slot;
}

}  // namespace

base::result<std::vector<actors::agent_spec>> runtime::impl::agent_specs_of(const config::config& c,
                                                                             const config::team& team,
                                                                             detail::shared_parts& parts) {
  std::vector<actors::agent_spec> out;
  out.reserve(team.agents.size());
  for (const auto& agent_name : team.agents) {
    const auto* agent = c.find_agent(agent_name);
    const auto* model = agent ? c.find_model(agent->model) : nullptr;
    const auto* provider = model ? c.find_provider(model->provider) : nullptr;
    if (!provider)
      return base::fail(base::errc::invalid_config, "agent '" + agent_name + "' has no usable model/provider");
    actors::agent_spec as;
    as.agent = shared(parts.agents, *agent, agent->name);
    as.model = shared(parts.models, *model, model->name);
    as.provider = shared(parts.providers, *provider, provider->name);
    out.push_back(std::move(as));
  }
  return out;
}

base::result<actors::team_spec> runtime::impl::team_spec_of(const config::config& c, const config::team& team,
                                                            detail::shared_parts& parts) {
  actors::team_spec spec;
  auto agents = agent_specs_of(c, team, parts);
  if (!agents) return base::fail(agents.error());
  spec.team = team;
  spec.agents = std::move(*agents);
  spec.store = store_actor;
  spec.bus = bus;
  spec.llm = llm;
  spec.task_ids = ids;
  spec.stats = std::make_shared<actors::team_stats>();
  spec.snapshot_every = c.rt.snapshot_every;
  spec.tick_ms = opts.team_tick_ms;
  return spec;
}

}  // namespace troupe::host
