#pragma once
/// Typed configuration (DESIGN §7). Plain values with defaults; produced by
/// load_config() and passed down by value. No singleton.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "troupe/base/result.hpp"

namespace troupe::config {

/// Which API a provider speaks (DESIGN §4).
enum class provider_kind { scripted, openai, anthropic };
/// Which children a supervisor restarts when one fails (Erlang/OTP meaning).
enum class supervision_strategy { one_for_one, one_for_all, rest_for_one };
/// What a control-plane token may do; each role includes the ones before it.
enum class role { viewer, operator_, admin };

/// A latency or delay: a fixed value (min == max) or a uniform range.
struct millis_range {
  std::int64_t min_ms = 0;
  std::int64_t max_ms = 0;
  bool operator==(const millis_range&) const = default;
};

/// What a scripted reply does instead of (or before) answering.
enum class scripted_fault {
  none,
  error,      ///< the call fails with a provider error (`error` text), retryable
  fatal,      ///< the call fails with a non-retryable provider error
  throw_,     ///< the agent throws an exception while handling the call
  hang,       ///< the call never answers (only its timeout ends it)
};

/// One canned answer of a scripted provider; the first matching entry wins.
struct scripted_reply {
  std::string match;   ///< substring (or regex when `regex`) of the prompt; empty matches all
  bool regex = false;
  std::string text;    ///< templated: {{prompt}}, {{input}}, {{step.ID}}, {{agent}}, {{attempt}}
  std::optional<millis_range> latency;  ///< overrides the provider's latency_ms
  scripted_fault fault = scripted_fault::none;
  std::string error;   ///< message for fault error/fatal/throw
  int every = 0;       ///< fault only on every Nth matching call (0: every call)
  int times = 0;       ///< this entry applies to its first N matches only (0: unlimited)
  bool operator==(const scripted_reply&) const = default;
};

/// Token-bucket limits of a provider.
struct rate_limits {
  std::int64_t requests_per_min = 0;  ///< 0: unlimited
  std::int64_t tokens_per_min = 0;    ///< 0: unlimited
  bool operator==(const rate_limits&) const = default;
};

/// Retries of one LLM call on 429, 5xx and network errors.
struct retry_policy {
  int max_attempts = 4;          ///< per LLM call, including the first
  std::int64_t base_ms = 200;    ///< first backoff
  std::int64_t max_ms = 10000;   ///< backoff cap
  bool operator==(const retry_policy&) const = default;
};

/// Circuit breaker of a provider: fail fast while it is down, probe to recover.
struct breaker_policy {
  int failures = 5;                    ///< consecutive failures that open the breaker
  std::int64_t open_ms = 5000;         ///< time open before a half-open probe
  bool operator==(const breaker_policy&) const = default;
};

/// An LLM provider (key in "providers"). Fields of other kinds keep their defaults.
struct provider {
  std::string name;
  provider_kind kind = provider_kind::scripted;
  // scripted
  millis_range latency{0, 0};
  std::vector<scripted_reply> replies;
  std::uint64_t seed = 1;
  // openai / anthropic
  std::string base_url;          ///< default: https://api.openai.com/v1 | https://api.anthropic.com
  std::string api_key_env;       ///< variable holding the key (required unless base_url is loopback)
  std::string api_key;           ///< resolved from api_key_env at load; never logged
  std::string anthropic_version = "2023-06-01";
  std::string ca_file;           ///< extra CA bundle for HTTPS
  int max_concurrency = 16;
  rate_limits limits;
  std::int64_t connect_timeout_ms = 5000;
  std::int64_t timeout_ms = 60000;  ///< whole call, per attempt
  /// Longest wait for the next bytes of a response, the first ones included (0: no
  /// limit but timeout_ms). Catches a stream that stalls long before its deadline.
  std::int64_t read_timeout_ms = 0;
  retry_policy retry;
  breaker_policy breaker;
  bool operator==(const provider&) const = default;
};

/// A model of a provider with its price table (key in "models").
struct model {
  std::string name;       ///< key in "models"
  std::string provider;   ///< provider name
  std::string api_name;   ///< the provider's model name ("name" key); default: the key
  double usd_per_mtok_in = 0;
  double usd_per_mtok_out = 0;
  int max_tokens = 1024;
  std::optional<double> temperature;
  std::vector<std::string> stop;
  bool stream = false;
  bool operator==(const model&) const = default;
};

/// A named worker (item of "agents").
struct agent {
  std::string name;
  std::string model;
  std::string system;
  std::vector<std::string> capabilities;
  int max_concurrent = 1;
  std::optional<double> budget_usd;
  bool operator==(const agent&) const = default;
};

/// Restart policy of a team: at most max_restarts within within_ms, then escalate.
struct supervision {
  supervision_strategy strategy = supervision_strategy::one_for_one;
  int max_restarts = 5;
  std::int64_t within_ms = 60000;
  bool operator==(const supervision&) const = default;
};

/// A choice point of a workflow, decided by a human or an agent.
struct decision {
  std::string by;                        ///< "human" or "agent:NAME"
  std::vector<std::string> options;
  std::map<std::string, std::string> on; ///< option -> step id to jump back to
  int max_loops = 3;
  std::string default_option;            ///< "default"; required for human decisions
  std::int64_t timeout_ms = 0;           ///< human decisions: 0 = wait forever
  std::string prompt;                    ///< agent decisions; templated
  bool operator==(const decision&) const = default;
};

/// One node of a team workflow: an agent call (by name or capability) or a decision.
struct step {
  std::string id;
  std::string agent;        ///< agent name, or
  std::string capability;   ///< any team agent with this capability
  std::string prompt = "{{input}}";
  std::optional<std::vector<std::string>> after;  ///< absent: the previous step
  std::optional<decision> decide;                 ///< "decision" key: a decision step
  std::optional<int> max_attempts;                ///< overrides the team's
  bool operator==(const step&) const = default;
};

/// Per-task limits of a team.
struct task_limits {
  int max_llm_calls = 100;
  double max_cost_usd = 0;  ///< 0: unlimited
  bool operator==(const task_limits&) const = default;
};

/// A team: members, workflow, queue bound, retry and supervision policy (item of "teams").
struct team {
  std::string name;
  std::vector<std::string> agents;
  std::optional<double> budget_usd;
  int max_queued = 10000;
  int max_attempts = 3;            ///< per step, including the first
  std::int64_t backoff_ms = 100;   ///< first retry backoff (doubles, with jitter)
  std::int64_t backoff_max_ms = 10000;
  std::int64_t stall_ms = 120000;  ///< watchdog window without progress
  std::int64_t aging_ms = 10000;   ///< a queued task gains one priority level per aging_ms
  supervision sup;
  task_limits limits;
  std::vector<step> workflow;
  bool operator==(const team&) const = default;
};

/// A control-plane bearer token; the secret comes from the token_env variable.
struct token {
  std::string name;
  std::string token_env;
  std::string value;  ///< resolved at load; never logged
  role granted = role::viewer;
  bool operator==(const token&) const = default;
};

/// The control plane (HTTP + WebSocket) settings.
struct control {
  std::string listen = "127.0.0.1:7700";
  std::vector<token> tokens;
  std::int64_t max_body_bytes = 1 << 20;
  int max_clients = 1024;
  std::int64_t max_frame_bytes = 1 << 20;
  int requests_per_sec = 100;     ///< per WebSocket connection
  int send_queue = 4096;          ///< events per WebSocket subscriber before dropping
  std::int64_t idle_timeout_ms = 60000;
  int io_threads = 2;             ///< threads serving the control plane's sockets
  bool operator==(const control&) const = default;
};

/// Actor runtime and store writer settings.
struct runtime {
  int threads = 2;                 ///< CAF scheduler threads
  int snapshot_every = 16;         ///< journal deltas between task snapshots
  int retention_days = 30;
  std::int64_t commit_interval_ms = 1;  ///< group commit window after a commit (store_options::linger_us)
  std::int64_t end_commit_interval_ms = 5;  ///< the same for a task's end (store_options::end_us)
  int commit_batch = 512;               ///< group commit: largest batch
  /// The root supervisor's restart intensity, counted per team: a team that crashes
  /// more often than this is left `failed` (strategy is always one_for_one).
  supervision teams_sup{supervision_strategy::one_for_one, 3, 60000};
  bool operator==(const runtime&) const = default;
};

/// The whole validated config. Valid references between its parts are guaranteed
/// when it comes from load_config_text/load_config_file.
struct config {
  std::string store = "sqlite:./troupe.db";
  control ctl;
  runtime rt;
  std::map<std::string, provider> providers;
  std::map<std::string, model> models;
  std::vector<agent> agents;
  std::vector<team> teams;
  std::string source_path;  ///< file it was loaded from (for reload)

  /// Lookups by name; nullptr when absent. Pointers live as long as this config.
  const agent* find_agent(const std::string& name) const;
  const team* find_team(const std::string& name) const;
  const model* find_model(const std::string& name) const;
  const provider* find_provider(const std::string& name) const;
};

/// One validation problem: where (a JSON path such as "teams[0].workflow[2].after[0]")
/// and what was expected / what arrived.
struct problem {
  std::string path;
  std::string message;
};

struct load_result {
  std::optional<config> cfg;       ///< set only when there are no problems
  std::vector<problem> problems;
  /// Legal but probably unintended (a provider no model uses, a team agent no
  /// step can reach). Never block loading.
  std::vector<problem> warnings;
};

/// Parses JSON with comments (// and /* */) and trailing commas, checks every key,
/// type, range and reference, resolves *_env variables, and returns either a
/// config or every problem found. `env` looks variables up (tests pass a fake).
load_result load_config_text(const std::string& text,
                             const std::map<std::string, std::string>* env = nullptr);
/// Reads the file, then load_config_text. A missing or unreadable file is a problem at path "".
load_result load_config_file(const std::string& path);

/// load_config_file as a base::result: the config, or errc::invalid_config whose
/// message lists every problem, one "PATH: MESSAGE" per line.
[[nodiscard]] base::result<config> load_config(const std::string& path);

/// One-screen human summary of a valid config (what `troupe check` prints).
std::string summarize(const config& cfg);

/// "PATH: MESSAGE" (just MESSAGE when the path is empty), as `troupe check` prints it.
std::string to_string(const problem& p);

/// What `troupe check` prints: the summary of a valid config, or every problem on
/// its own line followed by "N problem(s) found"; then each warning as
/// "warning: PATH: MESSAGE". Exit with 0 when r.cfg is set, else 1.
std::string check_report(const load_result& r);

/// The keys that need a restart (declared with needs_restart: "store",
/// "control.listen", "runtime.threads") whose values differ between the running
/// config and a reloaded one. Empty: a SIGHUP reload can apply everything.
std::vector<std::string> restart_needed(const config& running, const config& next);

std::string to_string(provider_kind k);
std::string to_string(supervision_strategy s);
std::string to_string(role r);

/// The JSON type a declared key accepts.
enum class value_type {
  string,
  boolean,
  integer,
  number,
  string_array,
  object,  ///< fixed keys, each declared on its own
  array,   ///< of objects whose keys are declared under "PATH[]"
  map,     ///< object of user-chosen names, each declared under "PATH.*"
  millis,  ///< milliseconds: an integer, or [min, max] for a uniform range
  choice,  ///< a string from key_info::choices
};

/// One declared config key (STYLE §6). The table is the single source of truth:
/// validation reads types, bounds and required-ness from it, and docs/config.md
/// carries the table rendered by key_reference_markdown() (a test checks they agree).
struct key_info {
  std::string path;          ///< pattern: "runtime.threads", "providers.*.kind", "teams[].workflow[].after"
  value_type type = value_type::string;
  std::string default_value; ///< as written in JSON (or a phrase); empty: none
  std::optional<double> min; ///< lower bound for integer/number/millis
  std::optional<double> max; ///< upper bound for integer/number/millis
  bool min_exclusive = false;             ///< the value must be > min, not >= min
  std::vector<std::string> choices;       ///< value_type::choice
  std::vector<std::string> kinds;         ///< provider kinds the key is valid for; empty: all
  bool required = false;
  bool needs_restart = false;  ///< a SIGHUP reload does not apply a change of this key
  std::string help;
};

/// Every key the loader accepts, in document order. Static, thread-safe to read.
const std::vector<key_info>& declared_keys();
/// The key table of docs/config.md (Markdown), generated from declared_keys().
std::string key_reference_markdown();
std::string to_string(value_type t);

}  // namespace troupe::config
