// Secrets arrive only through the environment variables named by *_env keys.
// Values are stored in the config but never appear in a problem or summary.
#include <algorithm>
#include <cstdlib>
#include <set>

#include "sections.hpp"

namespace troupe::config::detail {
namespace {

std::optional<std::string> lookup(const env_map* env, const std::string& name) {
  if (env) {
    auto it = env->find(name);
    if (it == env->end() || it->second.empty()) return std::nullopt;
    return it->second;
  }
  const char* v = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe): read once at load
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

}  // namespace

void resolve_env(reader& r, config& cfg, const env_map* env) {
  for (std::size_t i = 0; i < cfg.ctl.tokens.size(); ++i) {
    token& t = cfg.ctl.tokens[i];
    if (t.token_env.empty()) continue;  // missing or bad: already reported
    const std::string path = "control.tokens[" + std::to_string(i) + "].token_env";
    auto v = lookup(env, t.token_env);
    if (!v) {
      r.add(path, "environment variable " + quote(t.token_env) + " is not set or empty");
      continue;
    }
    t.value = std::move(*v);
    // Two tokens with one secret: the role a client gets would depend on the order.
    for (std::size_t k = 0; k < i; ++k) {
      if (cfg.ctl.tokens[k].value == t.value) {
        r.add(path, "token has the same value as control.tokens[" + std::to_string(k) +
                        "]; each token needs its own secret");
        break;
      }
    }
  }
  // A provider's key is needed only when an agent's model uses that provider, so
  // a config can list providers the current environment has no keys for.
  for (auto& [name, p] : cfg.providers) {
    if (p.api_key_env.empty()) continue;
    std::string user;  // the first agent that needs the key, for the message
    for (const auto& a : cfg.agents) {
      const model* m = cfg.find_model(a.model);
      if (m && m->provider == name) {
        user = a.name;
        break;
      }
    }
    auto v = lookup(env, p.api_key_env);
    auto control = [](unsigned char c) { return c < 0x20 || c == 0x7f; };
    const auto path = where{"providers", "providers"}.entry(name).key("api_key_env").path;
    if (v && std::any_of(v->begin(), v->end(), control))
      // The value itself never goes into a message: it is a secret.
      r.add(path, "environment variable " + quote(p.api_key_env) +
                      " holds a control character (a trailing newline?); an HTTP header cannot carry it");
    else if (v)
      p.api_key = std::move(*v);
    else if (!user.empty())
      r.add(path,
            "environment variable " + quote(p.api_key_env) +
                " is not set or empty (needed by agent " + quote(user) + ")");
  }
}

}  // namespace troupe::config::detail
