// Which changes a hot reload cannot apply. These are the keys declared with
// needs_restart in key_registry.cpp (a test checks the two agree): the store and
// the scheduler threads are opened once, the control server reads its settings
// at start, and the network providers' connection pools are built at start.
#include "troupe/config/config.hpp"

namespace troupe::config {
namespace {

struct differ {
  std::vector<std::string>& out;
  template <class T>
  void operator()(const T& a, const T& b, std::string path) {
    if (!(a == b)) out.push_back(std::move(path));
  }
};

void network_provider(const provider* a, const provider* b, const std::string& name, differ& diff) {
  const bool net_a = a && a->kind != provider_kind::scripted;
  const bool net_b = b && b->kind != provider_kind::scripted;
  if (!net_a && !net_b) return;  // scripted providers (and their replies) apply on reload
  const std::string p = "providers." + name;
  if (!a || !b) return diff.out.push_back(p);
  diff(a->kind, b->kind, p + ".kind");
  diff(a->base_url, b->base_url, p + ".base_url");
  // The key's value comes from the variable: a rotated key is a change too.
  diff(a->api_key_env + '\n' + a->api_key, b->api_key_env + '\n' + b->api_key, p + ".api_key_env");
  diff(a->anthropic_version, b->anthropic_version, p + ".anthropic_version");
  diff(a->ca_file, b->ca_file, p + ".ca_file");
  diff(a->max_concurrency, b->max_concurrency, p + ".max_concurrency");
  diff(a->limits.requests_per_min, b->limits.requests_per_min, p + ".limits.requests_per_min");
  diff(a->limits.tokens_per_min, b->limits.tokens_per_min, p + ".limits.tokens_per_min");
  diff(a->connect_timeout_ms, b->connect_timeout_ms, p + ".connect_timeout_ms");
  diff(a->timeout_ms, b->timeout_ms, p + ".timeout_ms");
  diff(a->read_timeout_ms, b->read_timeout_ms, p + ".read_timeout_ms");
  diff(a->retry.max_attempts, b->retry.max_attempts, p + ".retry.max_attempts");
  diff(a->retry.base_ms, b->retry.base_ms, p + ".retry.base_ms");
  diff(a->retry.max_ms, b->retry.max_ms, p + ".retry.max_ms");
  diff(a->breaker.failures, b->breaker.failures, p + ".breaker.failures");
  diff(a->breaker.open_ms, b->breaker.open_ms, p + ".breaker.open_ms");
}

}  // namespace

std::vector<std::string> restart_needed(const config& running, const config& next) {
  std::vector<std::string> out;
  differ diff{out};
  diff(running.store, next.store, "store");
  const auto &a = running.ctl, &b = next.ctl;
  diff(a.listen, b.listen, "control.listen");
  if (a.tokens.size() != b.tokens.size()) {
    out.emplace_back("control.tokens");
  } else {
    for (std::size_t i = 0; i < a.tokens.size(); ++i) {
      const auto p = "control.tokens[" + std::to_string(i) + "]";
      diff(a.tokens[i].name, b.tokens[i].name, p + ".name");
      diff(a.tokens[i].token_env + '\n' + a.tokens[i].value, b.tokens[i].token_env + '\n' + b.tokens[i].value,
           p + ".token_env");
      diff(a.tokens[i].granted, b.tokens[i].granted, p + ".role");
    }
  }
  diff(a.max_body_bytes, b.max_body_bytes, "control.max_body_bytes");
  diff(a.max_clients, b.max_clients, "control.max_clients");
  diff(a.max_frame_bytes, b.max_frame_bytes, "control.max_frame_bytes");
  diff(a.requests_per_sec, b.requests_per_sec, "control.requests_per_sec");
  diff(a.send_queue, b.send_queue, "control.send_queue");
  diff(a.idle_timeout_ms, b.idle_timeout_ms, "control.idle_timeout_ms");
  diff(a.io_threads, b.io_threads, "control.io_threads");
  diff(running.rt.threads, next.rt.threads, "runtime.threads");
  diff(running.rt.retention_days, next.rt.retention_days, "runtime.retention_days");
  diff(running.rt.commit_interval_ms, next.rt.commit_interval_ms, "runtime.commit_interval_ms");
  diff(running.rt.end_commit_interval_ms, next.rt.end_commit_interval_ms, "runtime.end_commit_interval_ms");
  diff(running.rt.commit_batch, next.rt.commit_batch, "runtime.commit_batch");
  for (const auto& [name, p] : running.providers) network_provider(&p, next.find_provider(name), name, diff);
  for (const auto& [name, p] : next.providers)
    if (!running.find_provider(name)) network_provider(nullptr, &p, name, diff);
  return out;
}

}  // namespace troupe::config
