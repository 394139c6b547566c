#pragma once
/// Private: the loader's passes. Each reads or checks one part of the document
/// and reports through the shared reader, so all problems are collected.
#include <map>
#include <string>
#include <string_view>

#include "reader.hpp"

namespace troupe::config::detail {

using env_map = std::map<std::string, std::string>;

/// store, control (with tokens) and runtime.
void load_top(reader& r, const json& root, config& cfg);
/// providers and models (shape, types, ranges, kind-specific keys, regexes).
void load_providers(reader& r, const json& root, config& cfg);
void load_models(reader& r, const json& root, config& cfg);
/// agents and teams with their workflows (shape and per-item rules).
void load_agents(reader& r, const json& root, config& cfg);
void load_teams(reader& r, const json& root, config& cfg);

/// Cross references: model -> provider, agent -> model, team -> agents, step -> agent/capability.
void check_references(reader& r, const config& cfg);
/// Per workflow: after/on targets, the dependency graph (acyclic, loops only backwards), templates.
void check_workflows(reader& r, const config& cfg);
/// Things that load but look unintended: unused providers and models, team
/// agents that no step of the team's workflow can use.
void collect_warnings(const config& cfg, std::vector<problem>& out);
/// Resolves token_env and api_key_env values (env == nullptr: the process environment).
void resolve_env(reader& r, config& cfg, const env_map* env);

/// Agent, team and step names: non-empty, letters, digits, '_', '.', '-'.
bool valid_name(std::string_view s);
/// True for localhost, 127.x.x.x and [::1] (with or without brackets).
bool loopback_host(std::string_view host);
/// The host of an http(s) URL ("" when it has none).
std::string url_host(std::string_view url);

}  // namespace troupe::config::detail
