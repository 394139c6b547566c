// The declared key table (STYLE §6): every config key once, with type, default,
// bounds, help and restart flag. Validation and docs/config.md both read it.
#include "key_registry.hpp"

#include <cctype>
#include <cmath>
#include <sstream>

namespace troupe::config {
namespace {

using vt = value_type;

/// Small builder so each table row reads as one line of facts.
struct row {
  key_info k;
  row(std::string path, vt type, std::string help) {
    k.path = std::move(path);
    k.type = type;
    k.help = std::move(help);
  }
  row&& def(std::string d) && {
    k.default_value = std::move(d);
    return std::move(*this);
  }
  row&& range(double lo, double hi) && {
    k.min = lo;
    k.max = hi;
    return std::move(*this);
  }
  row&& at_least(double lo) && {
    k.min = lo;
    return std::move(*this);
  }
  row&& above(double lo) && {
    k.min = lo;
    k.min_exclusive = true;
    return std::move(*this);
  }
  row&& one_of(std::vector<std::string> c) && {
    k.choices = std::move(c);
    return std::move(*this);
  }
  row&& kinds(std::vector<std::string> c) && {
    k.kinds = std::move(c);
    return std::move(*this);
  }
  row&& required() && {
    k.required = true;
    return std::move(*this);
  }
  row&& restart() && {
    k.needs_restart = true;
    return std::move(*this);
  }
  operator key_info() && { return std::move(k); }  // NOLINT: builder conversion
};

const std::vector<std::string> remote_kinds{"openai", "anthropic"};

std::vector<key_info> build_table() {
  std::vector<key_info> t;
  auto add = [&t](key_info k) { t.push_back(std::move(k)); };
  // One row per key: easier to scan as a table than formatted.
  // clang-format off
  // --- top level
  add(row("store", vt::string, "Where tasks, journals and snapshots live: `sqlite:PATH` or `postgresql://...` (`postgres://` also accepted).")
          .def("\"sqlite:./troupe.db\"").restart());
  add(row("control", vt::object, "The control plane (HTTP + WebSocket)."));
  add(row("control.listen", vt::string, "Listening address `host:port` (port 0 picks a free port). Without tokens only a loopback host is allowed.")
          .def("\"127.0.0.1:7700\"").restart());
  add(row("control.tokens", vt::array, "Bearer tokens accepted by the control plane.").def("[]"));
  add(row("control.tokens[].name", vt::string, "Unique name of the token (shown in the audit log).").required());
  add(row("control.tokens[].token_env", vt::string, "Environment variable that holds the token value; it must be set.").required());
  add(row("control.tokens[].role", vt::choice, "What the token may do: `viewer` reads and subscribes, `operator` also submits, cancels and decides, `admin` also reloads and shuts down.")
          .def("\"viewer\"").one_of({"viewer", "operator", "admin"}));
  add(row("control.max_body_bytes", vt::integer, "Largest HTTP request body.").def("1048576").range(1, 1073741824));
  add(row("control.max_clients", vt::integer, "Most concurrent control connections.").def("1024").range(1, 1000000));
  add(row("control.max_frame_bytes", vt::integer, "Largest WebSocket frame.").def("1048576").range(1, 1073741824));
  add(row("control.requests_per_sec", vt::integer, "Requests per second allowed on one WebSocket connection.").def("100").range(1, 1000000));
  add(row("control.send_queue", vt::integer, "Events queued per subscriber before the oldest are dropped (`stream.gap`).").def("4096").range(1, 10000000));
  add(row("control.idle_timeout_ms", vt::integer, "A connection silent this long is closed.").def("60000").at_least(1));
  add(row("control.io_threads", vt::integer, "Threads serving the control plane's connections (HTTP, WebSocket, event fan-out).").def("2").range(1, 64).restart());
  add(row("runtime", vt::object, "The actor runtime and the store writer."));
  add(row("runtime.threads", vt::integer, "Scheduler threads of the actor system.").def("2").range(1, 64).restart());
  add(row("runtime.snapshot_every", vt::integer, "Journal deltas between two snapshots of a task.").def("16").range(1, 10000));
  add(row("runtime.retention_days", vt::integer, "Terminal tasks older than this are pruned (0: keep forever).").def("30").range(0, 3650));
  add(row("runtime.commit_interval_ms", vt::integer, "Group commit window: right after a commit, the next one waits this long for more changes to join it (a change that finds the store idle commits at once; 0: commit as soon as the store actor's mailbox is drained).").def("1").range(0, 1000));
  add(row("runtime.end_commit_interval_ms", vt::integer, "Group commit window for the end of a task (its terminal state, the cost of its last call): nobody waits on that commit but the task's own announcement, so it waits up to this long for company (a write anyone waits on commits it at once, with commit_interval_ms; not above commit_interval_ms: no difference).").def("5").range(0, 1000));
  add(row("runtime.commit_batch", vt::integer, "Group commit: largest batch of changes in one transaction.").def("512").range(1, 100000));
  add(row("runtime.supervision", vt::object, "Restart policy of the root supervisor over the team actors (one_for_one, counted per team)."));
  add(row("runtime.supervision.max_restarts", vt::integer, "Restarts of one team allowed within `within_ms`; past them the team stays `failed` until an operator `restart`.").def("3").range(0, 1000000));
  add(row("runtime.supervision.within_ms", vt::integer, "Window of the root's restart budget.").def("60000").at_least(1));
  // --- providers
  add(row("providers", vt::map, "LLM providers by name.").def("{}"));
  add(row("providers.*", vt::object, "One provider; its keys depend on `kind`."));
  add(row("providers.*.kind", vt::choice, "`scripted` (offline, deterministic), `openai` (any /v1/chat/completions server) or `anthropic` (/v1/messages).")
          .one_of({"scripted", "openai", "anthropic"}).required());
  add(row("providers.*.latency_ms", vt::millis, "Simulated latency of each call: a number or `[min, max]`.").def("0").at_least(0).kinds({"scripted"}));
  add(row("providers.*.replies", vt::array, "Canned replies, first match wins; with none the reply is the prompt (`{{prompt}}`).").def("[]").kinds({"scripted"}));
  add(row("providers.*.replies[].match", vt::string, "Substring (or regular expression with `regex`) the prompt must contain; empty matches every prompt.").def("\"\""));
  add(row("providers.*.replies[].regex", vt::boolean, "`match` is an ECMAScript regular expression.").def("false"));
  add(row("providers.*.replies[].text", vt::string, "The reply; templated with `{{prompt}}`, `{{input}}`, `{{step.ID}}`, `{{agent}}`, `{{attempt}}`.").def("\"\""));
  add(row("providers.*.replies[].latency_ms", vt::millis, "Overrides the provider's `latency_ms` for this reply.").def("the provider's").at_least(0));
  add(row("providers.*.replies[].fault", vt::choice, "Fail instead of answering: `error` (retryable), `fatal` (not retryable), `throw` (the agent throws), `hang` (never answers).")
          .def("none").one_of({"error", "fatal", "throw", "hang"}));
  add(row("providers.*.replies[].error", vt::string, "Message of the fault.").def("\"\""));
  add(row("providers.*.replies[].every", vt::integer, "Fault only on every Nth matching call (0: every call).").def("0").range(0, 2147483647));
  add(row("providers.*.replies[].times", vt::integer, "The reply applies to its first N matches only (0: unlimited).").def("0").range(0, 2147483647));
  add(row("providers.*.seed", vt::integer, "Seed of the simulated latency and token counts.").def("1").at_least(0).kinds({"scripted"}));
  add(row("providers.*.base_url", vt::string, "Server root, `http://` or `https://`.")
          .def("https://api.openai.com/v1 (openai), https://api.anthropic.com (anthropic)").kinds(remote_kinds));
  add(row("providers.*.api_key_env", vt::string, "Environment variable holding the API key; required unless `base_url` is a loopback host. It must be set when an agent uses the provider.").kinds(remote_kinds));
  add(row("providers.*.anthropic_version", vt::string, "Value of the `anthropic-version` header.").def("\"2023-06-01\"").kinds({"anthropic"}));
  add(row("providers.*.ca_file", vt::string, "Extra CA bundle (PEM) trusted for HTTPS.").def("\"\"").kinds(remote_kinds));
  add(row("providers.*.max_concurrency", vt::integer, "Calls in flight at once to this provider.").def("16").range(1, 10000).kinds(remote_kinds));
  add(row("providers.*.limits", vt::object, "Token-bucket limits.").kinds(remote_kinds));
  add(row("providers.*.limits.requests_per_min", vt::integer, "Requests per minute (0: unlimited).").def("0").at_least(0));
  add(row("providers.*.limits.tokens_per_min", vt::integer, "Tokens per minute (0: unlimited).").def("0").at_least(0));
  add(row("providers.*.connect_timeout_ms", vt::integer, "TCP + TLS connect timeout.").def("5000").at_least(1).kinds(remote_kinds));
  add(row("providers.*.timeout_ms", vt::integer, "Timeout of one attempt of a call.").def("60000").at_least(1).kinds(remote_kinds));
  add(row("providers.*.read_timeout_ms", vt::integer, "Longest wait for the next bytes of a response, the first ones included; a stream silent this long fails the attempt (retried like any timeout). 0: only `timeout_ms`.").def("0").at_least(0).kinds(remote_kinds));
  add(row("providers.*.retry", vt::object, "Retries on 429, 5xx and network errors (honoring `retry-after`).").kinds(remote_kinds));
  add(row("providers.*.retry.max_attempts", vt::integer, "Attempts per call, including the first.").def("4").range(1, 20));
  add(row("providers.*.retry.base_ms", vt::integer, "First backoff; doubles with jitter.").def("200").at_least(0));
  add(row("providers.*.retry.max_ms", vt::integer, "Backoff cap; at least `base_ms`.").def("10000").at_least(0));
  add(row("providers.*.breaker", vt::object, "Circuit breaker.").kinds(remote_kinds));
  add(row("providers.*.breaker.failures", vt::integer, "Consecutive failures that open the breaker.").def("5").range(1, 1000));
  add(row("providers.*.breaker.open_ms", vt::integer, "Time open before a half-open probe.").def("5000").at_least(1));
  // --- models
  add(row("models", vt::map, "Models by name.").def("{}"));
  add(row("models.*", vt::object, "One model of a provider."));
  add(row("models.*.provider", vt::string, "Name of a provider in `providers`.").required());
  add(row("models.*.name", vt::string, "The provider's name for the model.").def("the model's key"));
  add(row("models.*.usd_per_mtok_in", vt::number, "Price in USD per million input tokens.").def("0").at_least(0));
  add(row("models.*.usd_per_mtok_out", vt::number, "Price in USD per million output tokens.").def("0").at_least(0));
  add(row("models.*.max_tokens", vt::integer, "Most output tokens per call.").def("1024").range(1, 1000000));
  add(row("models.*.temperature", vt::number, "Sampling temperature.").def("the provider's").range(0, 2));
  add(row("models.*.stop", vt::string_array, "Stop sequences.").def("[]"));
  add(row("models.*.stream", vt::boolean, "Stream tokens (SSE) to task subscribers.").def("false"));
  // --- agents
  add(row("agents", vt::array, "Agents.").def("[]"));
  add(row("agents[].name", vt::string, "Unique name, letters, digits, `_`, `.`, `-`.").required());
  add(row("agents[].model", vt::string, "Name of a model in `models`.").required());
  add(row("agents[].system", vt::string, "System prompt.").def("\"\""));
  add(row("agents[].capabilities", vt::string_array, "Capabilities that workflow steps can ask for.").def("[]"));
  add(row("agents[].max_concurrent", vt::integer, "Calls the agent works on at once.").def("1").range(1, 10000));
  add(row("agents[].budget_usd", vt::number, "Spending limit of the agent.").def("unlimited").above(0));
  // --- teams
  add(row("teams", vt::array, "Teams.").def("[]"));
  add(row("teams[].name", vt::string, "Unique name, letters, digits, `_`, `.`, `-`.").required());
  add(row("teams[].agents", vt::string_array, "Member agents (at least one, each defined in `agents`).").required());
  add(row("teams[].budget_usd", vt::number, "Spending limit of the team.").def("unlimited").above(0));
  add(row("teams[].max_queued", vt::integer, "Queued tasks before a submit is rejected with `overloaded`.").def("10000").range(1, 10000000));
  add(row("teams[].max_attempts", vt::integer, "Attempts per step, including the first.").def("3").range(1, 100));
  add(row("teams[].backoff_ms", vt::integer, "First retry backoff of a step (doubles, with jitter).").def("100").at_least(0));
  add(row("teams[].backoff_max_ms", vt::integer, "Backoff cap; at least `backoff_ms`.").def("10000").at_least(0));
  add(row("teams[].stall_ms", vt::integer, "Watchdog: a running task without progress this long is failed and retried.").def("120000").at_least(1));
  add(row("teams[].aging_ms", vt::integer, "A queued task gains one priority level per this wait.").def("10000").at_least(1));
  add(row("teams[].supervision", vt::object, "Restart policy of the team's agents and decision actors."));
  add(row("teams[].supervision.strategy", vt::choice, "Which agents restart when one crashes: `one_for_one` that agent, `one_for_all` every agent of the team, `rest_for_one` it and the agents listed after it.")
          .def("\"one_for_one\"").one_of({"one_for_one", "one_for_all", "rest_for_one"}));
  add(row("teams[].supervision.max_restarts", vt::integer, "Agent crashes allowed within `within_ms`; the next one stops every agent and leaves the team `failed` (queue kept) until an operator `restart`.").def("5").range(0, 1000000));
  add(row("teams[].supervision.within_ms", vt::integer, "Window of the restart budget.").def("60000").at_least(1));
  add(row("teams[].limits", vt::object, "Per-task limits."));
  add(row("teams[].limits.max_llm_calls", vt::integer, "LLM calls one task may make.").def("100").range(1, 2147483647));
  add(row("teams[].limits.max_cost_usd", vt::number, "Cost one task may reach (0: unlimited).").def("0").at_least(0));
  add(row("teams[].workflow", vt::array, "Steps run for each task (at least one).").required());
  add(row("teams[].workflow[].id", vt::string, "Unique step id in the workflow, letters, digits, `_`, `.`, `-`.").required());
  add(row("teams[].workflow[].agent", vt::string, "The team agent that runs the step (one of `agent`, `capability`, `decision`).").def("\"\""));
  add(row("teams[].workflow[].capability", vt::string, "Any team agent with this capability runs the step.").def("\"\""));
  add(row("teams[].workflow[].prompt", vt::string, "Prompt template: `{{input}}`, `{{prompt}}`, `{{step.ID}}` (output of step ID), `{{agent}}`, `{{attempt}}`.").def("\"{{input}}\""));
  add(row("teams[].workflow[].after", vt::string_array, "Steps that must finish first; no cycles.").def("the previous step"));
  add(row("teams[].workflow[].max_attempts", vt::integer, "Overrides the team's `max_attempts`.").def("the team's").range(1, 100));
  add(row("teams[].workflow[].decision", vt::object, "Makes the step a decision point."));
  add(row("teams[].workflow[].decision.by", vt::string, "`human` (an operator decides) or `agent:NAME` (a team agent decides).").required());
  add(row("teams[].workflow[].decision.options", vt::string_array, "At least two distinct options.").required());
  add(row("teams[].workflow[].decision.on", vt::map, "Option -> step to go back to (an earlier step); other options continue.").def("{}"));
  add(row("teams[].workflow[].decision.on.*", vt::string, "Id of a step that runs before the decision."));
  add(row("teams[].workflow[].decision.max_loops", vt::integer, "Times the decision may send the task back.").def("3").range(0, 1000));
  add(row("teams[].workflow[].decision.default", vt::string, "Option taken on timeout; required for `human`.").def("\"\""));
  add(row("teams[].workflow[].decision.timeout_ms", vt::integer, "Time a human decision waits (0: forever).").def("0").at_least(0));
  add(row("teams[].workflow[].decision.prompt", vt::string, "Prompt of an agent decision (templated like a step prompt).").def("\"\""));
  // clang-format on
  // Read once at start, so a reload cannot apply them (restart_needed() reports
  // them): the control server's settings, the store writer's, and the network
  // providers' connection pools. Scripted providers, models, agents and teams apply.
  for (auto& k : t) {
    const bool control = k.path.rfind("control.", 0) == 0 && k.type != vt::object;
    const bool store_writer = k.path == "runtime.retention_days" || k.path == "runtime.commit_interval_ms" ||
                              k.path == "runtime.end_commit_interval_ms" || k.path == "runtime.commit_batch";
    const bool network = k.path.rfind("providers.*.", 0) == 0 && k.type != vt::object &&
                         (!k.kinds.empty() ? k.kinds != std::vector<std::string>{"scripted"}
                                           : k.path.find(".limits.") != std::string::npos ||
                                                 k.path.find(".retry.") != std::string::npos ||
                                                 k.path.find(".breaker.") != std::string::npos);
    if (control || store_writer || network) k.needs_restart = true;
  }
  return t;
}

std::string format_number(double v) {
  if (std::floor(v) == v && std::fabs(v) < 1e15) return std::to_string(static_cast<long long>(v));
  std::ostringstream o;
  o << v;
  return o.str();
}

std::string bounds_text(const key_info& k) {
  if (!k.choices.empty()) {
    std::string s;
    for (const auto& c : k.choices) s += (s.empty() ? "" : ", ") + ("`" + c + "`");
    return s;
  }
  if (k.min && k.max) return format_number(*k.min) + ".." + format_number(*k.max);
  if (k.min) return (k.min_exclusive ? "> " : ">= ") + format_number(*k.min);
  return "";
}

}  // namespace

const std::vector<key_info>& declared_keys() {
  static const std::vector<key_info> table = build_table();
  return table;
}

std::string to_string(value_type t) {
  switch (t) {
    case value_type::string:
      return "string";
    case value_type::boolean:
      return "boolean";
    case value_type::integer:
      return "integer";
    case value_type::number:
      return "number";
    case value_type::string_array:
      return "array of strings";
    case value_type::object:
      return "object";
    case value_type::array:
      return "array of objects";
    case value_type::map:
      return "object of names";
    case value_type::millis:
      return "ms or [min, max]";
    case value_type::choice:
      return "string";
  }
  return "?";
}

std::string key_reference_markdown() {
  // Pipes inside cells would break the table; none of our texts contain one.
  std::string out =
      "| Key | Type | Default | Bounds | On reload | Meaning |\n|---|---|---|---|---|---|\n";
  for (const auto& k : declared_keys()) {
    std::string meaning = k.help;
    if (!k.kinds.empty()) {
      std::string kinds;
      for (const auto& s : k.kinds) kinds += (kinds.empty() ? "" : ", ") + s;
      meaning = "(" + kinds + " only) " + meaning;
    }
    // JSON literals in code style, phrases ("the team's") as prose.
    const std::string& d = k.default_value;
    const bool literal = !d.empty() && (d[0] == '"' || d[0] == '[' || d[0] == '{' || d[0] == '-' ||
                                        std::isdigit(static_cast<unsigned char>(d[0])) ||
                                        d == "true" || d == "false");
    const std::string def = k.required ? "required" : literal ? "`" + d + "`" : d;
    out += "| `" + k.path + "` | " + to_string(k.type) + " | " + def + " | " + bounds_text(k) +
           " | " + (k.needs_restart ? "restart" : "applies") + " | " + meaning + " |\n";
  }
  return out;
}

namespace detail {

const key_info* find_key(std::string_view pattern) {
  for (const auto& k : declared_keys())
    if (k.path == pattern) return &k;
  return nullptr;
}

std::vector<std::string> child_keys(std::string_view parent) {
  std::vector<std::string> out;
  for (const auto& k : declared_keys()) {
    std::string_view p = k.path;
    if (parent.empty()) {
      if (p.find_first_of(".[") == std::string_view::npos) out.emplace_back(p);
      continue;
    }
    if (p.size() <= parent.size() + 1 || p.substr(0, parent.size()) != parent ||
        p[parent.size()] != '.')
      continue;
    std::string_view rest = p.substr(parent.size() + 1);
    if (rest.find_first_of(".[") == std::string_view::npos && rest != "*") out.emplace_back(rest);
  }
  return out;
}

}  // namespace detail
}  // namespace troupe::config
