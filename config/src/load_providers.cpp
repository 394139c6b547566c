// providers and models sections.
#include <algorithm>
#include <regex>

#include "key_registry.hpp"
#include "sections.hpp"

namespace troupe::config::detail {
namespace {

void load_reply(reader& r, const json& j, const where& w, scripted_reply& out) {
  if (!r.object(j, w)) return;
  r.read(j, w, "match", out.match);
  r.read(j, w, "regex", out.regex);
  r.read(j, w, "text", out.text);
  r.read(j, w, "latency_ms", out.latency);
  std::string fault;
  if (r.read_choice(j, w, "fault", fault)) {
    out.fault = fault == "error"   ? scripted_fault::error
                : fault == "fatal" ? scripted_fault::fatal
                : fault == "throw" ? scripted_fault::throw_
                                   : scripted_fault::hang;
  }
  r.read(j, w, "error", out.error);
  r.read(j, w, "every", out.every);
  r.read(j, w, "times", out.times);
  if (out.regex) {
    // Compile now so a bad pattern fails `troupe check`, not the first call.
    try {
      std::regex re(out.match, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      r.add(w.key("match").path,
            "invalid regular expression " + quote(out.match) + ": " + e.what());
    }
  }
}

void load_scripted(reader& r, const json& j, const where& w, provider& p) {
  r.read(j, w, "latency_ms", p.latency);
  r.read(j, w, "seed", p.seed);
  const json* replies = r.member(j, w, "replies");
  if (!replies) return;
  const where rw = w.key("replies");
  if (!r.array(*replies, rw)) return;
  for (std::size_t i = 0; i < replies->size(); ++i) {
    scripted_reply reply;
    load_reply(r, (*replies)[i], rw.index(i), reply);
    p.replies.push_back(std::move(reply));
  }
}

void load_remote(reader& r, const json& j, const where& w, provider& p) {
  p.base_url =
      p.kind == provider_kind::openai ? "https://api.openai.com/v1" : "https://api.anthropic.com";
  if (r.read(j, w, "base_url", p.base_url)) {
    const bool http = p.base_url.rfind("http://", 0) == 0 || p.base_url.rfind("https://", 0) == 0;
    if (!http || url_host(p.base_url).empty())
      r.add(w.key("base_url").path,
            "expected a URL starting with http:// or https://, got " + quote(p.base_url));
  }
  const bool has_env = r.read(j, w, "api_key_env", p.api_key_env);
  if (has_env && p.api_key_env.empty())
    r.add(w.key("api_key_env").path, "expected a variable name, got ''");
  if (!j.contains("api_key_env") && !loopback_host(url_host(p.base_url)))
    r.add(w.key("api_key_env").path,
          "missing required key 'api_key_env' (only a loopback base_url such as "
          "http://127.0.0.1:8080/v1 may go without a key)");
  r.read(j, w, "anthropic_version", p.anthropic_version);
  r.read(j, w, "ca_file", p.ca_file);
  r.read(j, w, "max_concurrency", p.max_concurrency);
  if (const json* lim = r.member(j, w, "limits"); lim && r.object(*lim, w.key("limits"))) {
    r.read(*lim, w.key("limits"), "requests_per_min", p.limits.requests_per_min);
    r.read(*lim, w.key("limits"), "tokens_per_min", p.limits.tokens_per_min);
  }
  r.read(j, w, "connect_timeout_ms", p.connect_timeout_ms);
  r.read(j, w, "timeout_ms", p.timeout_ms);
  r.read(j, w, "read_timeout_ms", p.read_timeout_ms);
  if (const json* rt = r.member(j, w, "retry"); rt && r.object(*rt, w.key("retry"))) {
    const where rw = w.key("retry");
    r.read(*rt, rw, "max_attempts", p.retry.max_attempts);
    const bool b = r.read(*rt, rw, "base_ms", p.retry.base_ms);
    const bool m = r.read(*rt, rw, "max_ms", p.retry.max_ms);
    if ((b || m) && p.retry.max_ms < p.retry.base_ms)
      r.add(rw.key("max_ms").path, "expected max_ms >= base_ms (" +
                                       std::to_string(p.retry.base_ms) + "), got " +
                                       std::to_string(p.retry.max_ms));
  }
  if (const json* br = r.member(j, w, "breaker"); br && r.object(*br, w.key("breaker"))) {
    r.read(*br, w.key("breaker"), "failures", p.breaker.failures);
    r.read(*br, w.key("breaker"), "open_ms", p.breaker.open_ms);
  }
}

void load_provider(reader& r, const json& j, const where& w, provider& p) {
  if (!r.object(j, w)) return;
  std::string kind;
  if (!r.read_choice(j, w, "kind", kind)) return;  // without a kind the other keys mean nothing
  p.kind = kind == "openai"      ? provider_kind::openai
           : kind == "anthropic" ? provider_kind::anthropic
                                 : provider_kind::scripted;
  // Keys of another kind are almost always a copy-paste slip: say which kind they belong to.
  bool foreign = false;
  for (const auto& [k, v] : j.items()) {
    const key_info* info = find_key(w.key(k).pattern);
    if (!info || info->kinds.empty()) continue;
    if (std::find(info->kinds.begin(), info->kinds.end(), kind) != info->kinds.end()) continue;
    std::string kinds;
    for (const auto& valid : info->kinds) kinds += (kinds.empty() ? "" : " or ") + valid;
    r.add(w.key(k).path, "key " + quote(k) + " is only valid for kind " + kinds + ", not " + kind);
    foreign = true;
  }
  if (foreign) return;
  if (p.kind == provider_kind::scripted)
    load_scripted(r, j, w, p);
  else
    load_remote(r, j, w, p);
}

}  // namespace

void load_providers(reader& r, const json& root, config& cfg) {
  const json* all = r.member(root, where{"", ""}, "providers");
  const where w{"providers", "providers"};
  if (!all) return;
  if (!all->is_object()) {
    r.add("providers", "expected an object of named providers, got " + json_type_name(*all));
    return;
  }
  for (const auto& [name, j] : all->items()) {
    provider p;
    p.name = name;
    load_provider(r, j, w.entry(name), p);
    cfg.providers.emplace(name, std::move(p));
  }
}

void load_models(reader& r, const json& root, config& cfg) {
  const json* all = r.member(root, where{"", ""}, "models");
  const where w{"models", "models"};
  if (!all) return;
  if (!all->is_object()) {
    r.add("models", "expected an object of named models, got " + json_type_name(*all));
    return;
  }
  for (const auto& [name, j] : all->items()) {
    const where mw = w.entry(name);
    model m;
    m.name = name;
    m.api_name = name;
    if (r.object(j, mw)) {
      r.read(j, mw, "provider", m.provider);
      r.read(j, mw, "name", m.api_name);
      r.read(j, mw, "usd_per_mtok_in", m.usd_per_mtok_in);
      r.read(j, mw, "usd_per_mtok_out", m.usd_per_mtok_out);
      r.read(j, mw, "max_tokens", m.max_tokens);
      r.read(j, mw, "temperature", m.temperature);
      r.read(j, mw, "stop", m.stop);
      r.read(j, mw, "stream", m.stream);
      if (m.api_name.empty()) r.add(mw.key("name").path, "expected a non-empty model name, got ''");
    }
    cfg.models.emplace(name, std::move(m));
  }
}

}  // namespace troupe::config::detail
