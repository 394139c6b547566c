#pragma once
// Shared fixtures of the config tests: a valid base config (DESIGN §7 plus an
// offline provider) and the fake environment that resolves its *_env keys.
#include <map>
#include <ostream>
#include <string>

#include "troupe/config/config.hpp"

namespace troupe::config {

inline bool operator==(const problem& a, const problem& b) {
  return a.path == b.path && a.message == b.message;
}
inline void PrintTo(const problem& p, std::ostream* os) {
  *os << "{\"" << p.path << "\", \"" << p.message << "\"}";
}

namespace testing_support {

inline const std::map<std::string, std::string> fake_env{
    {"TROUPE_OPS_TOKEN", "ops-secret-value"},
    {"ANTHROPIC_API_KEY", "sk-ant-secret-value"},
};

/// DESIGN §7, verbatim apart from the offline model.
inline const char* const design_config = R"jsonc({
  "store": "sqlite:./troupe.db",            // or "postgresql://user@host/db"
  "control": { "listen": "127.0.0.1:7700",
               "tokens": [ { "name": "ops", "token_env": "TROUPE_OPS_TOKEN", "role": "operator" } ] },
  "providers": {
    "offline": { "kind": "scripted", "latency_ms": [5, 20],
                 "replies": [ { "match": "review", "text": "approve" }, { "text": "Done: {{prompt}}" } ] },
    "claude":  { "kind": "anthropic", "api_key_env": "ANTHROPIC_API_KEY",
                 "max_concurrency": 8, "limits": { "requests_per_min": 50, "tokens_per_min": 40000 } }
  },
  "models": { "haiku": { "provider": "claude", "name": "claude-3-5-haiku-20241022",
                         "usd_per_mtok_in": 0.8, "usd_per_mtok_out": 4.0 },
              "canned": { "provider": "offline" } },
  "agents": [
    { "name": "researcher", "model": "haiku", "system": "You research.", "capabilities": ["research"], "max_concurrent": 2 },
    { "name": "reviewer",   "model": "haiku", "system": "Answer approve or revise." }
  ],
  "teams": [
    { "name": "newsroom", "agents": ["researcher", "reviewer"], "budget_usd": 20, "max_queued": 10000,
      "supervision": { "strategy": "one_for_one", "max_restarts": 5, "within_ms": 60000 },
      "workflow": [
        { "id": "research", "agent": "researcher", "prompt": "Research: {{input}}" },
        { "id": "review", "decision": { "by": "agent:reviewer", "options": ["approve", "revise"],
                                        "on": { "revise": "research" }, "max_loops": 2 } },
        { "id": "publish", "decision": { "by": "human", "options": ["publish", "reject"],
                                         "timeout_ms": 86400000, "default": "reject" } }
      ] }
  ]
})jsonc";

}  // namespace testing_support
}  // namespace troupe::config
