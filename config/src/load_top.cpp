// store, control and runtime sections.
#include <algorithm>
#include <cctype>

#include "sections.hpp"

namespace troupe::config::detail {
namespace {

/// Splits "host:port" (host may be "[v6]"); false when malformed.
bool split_listen(const std::string& s, std::string& host, long& port) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= s.size()) return false;
  host = s.substr(0, colon);
  const std::string digits = s.substr(colon + 1);
  if (digits.size() > 5 ||
      !std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); }))
    return false;
  port = std::stol(digits);
  if (host.front() == '[') return host.back() == ']' && host.size() > 2;
  return host.find(':') == std::string::npos;
}

void load_store(reader& r, const json& root, config& cfg) {
  const where w{"", ""};
  std::string store;
  if (!r.read(root, w, "store", store)) return;
  const bool sqlite = store.rfind("sqlite:", 0) == 0;
  const bool pg = store.rfind("postgresql://", 0) == 0 || store.rfind("postgres://", 0) == 0;
  if (sqlite && store.size() == 7) {
    r.add("store", "expected 'sqlite:PATH' with a non-empty PATH, got 'sqlite:'");
  } else if (!sqlite && !pg) {
    // Echo only the scheme: a connection string may carry a password.
    const auto sep = store.find(':');
    const std::string shown =
        sep == std::string::npos ? "no scheme" : "scheme " + quote(store.substr(0, sep));
    r.add("store", "expected 'sqlite:PATH' or 'postgresql://...', got " + shown);
  }
  cfg.store = store;
}

void load_tokens(reader& r, const json& ctl, const where& w, control& c) {
  const json* list = r.member(ctl, w, "tokens");
  if (!list) return;
  const where lw = w.key("tokens");
  if (!r.array(*list, lw)) return;
  for (std::size_t i = 0; i < list->size(); ++i) {
    const where tw = lw.index(i);
    const json& t = (*list)[i];
    token tok;
    if (r.object(t, tw)) {
      r.read(t, tw, "name", tok.name);
      r.read(t, tw, "token_env", tok.token_env);
      std::string role_name;
      if (r.read_choice(t, tw, "role", role_name))
        tok.granted = role_name == "admin"      ? role::admin
                      : role_name == "operator" ? role::operator_
                                                : role::viewer;
      if (tok.name.empty() && t.contains("name") && t["name"].is_string())
        r.add(tw.key("name").path, "expected a non-empty string, got ''");
      for (std::size_t j = 0; j < i && !tok.name.empty(); ++j) {
        if (c.tokens[j].name == tok.name) {
          r.add(tw.key("name").path,
                "duplicate token name " + quote(tok.name) + " (also " + lw.index(j).path + ")");
          break;
        }
      }
    }
    c.tokens.push_back(std::move(tok));  // kept even when bad, so indices match the document
  }
}

void load_control(reader& r, const json& root, config& cfg) {
  const json* ctl = r.member(root, where{"", ""}, "control");
  const where w{"control", "control"};
  if (!ctl || !r.object(*ctl, w)) return;
  control& c = cfg.ctl;
  if (r.read(*ctl, w, "listen", c.listen)) {
    std::string host;
    long port = 0;
    if (!split_listen(c.listen, host, port) || port > 65535)
      r.add("control.listen",
            "expected 'host:port' with a port in 0..65535, got " + quote(c.listen));
  }
  load_tokens(r, *ctl, w, c);
  r.read(*ctl, w, "max_body_bytes", c.max_body_bytes);
  r.read(*ctl, w, "max_clients", c.max_clients);
  r.read(*ctl, w, "max_frame_bytes", c.max_frame_bytes);
  r.read(*ctl, w, "requests_per_sec", c.requests_per_sec);
  r.read(*ctl, w, "send_queue", c.send_queue);
  r.read(*ctl, w, "idle_timeout_ms", c.idle_timeout_ms);
  r.read(*ctl, w, "io_threads", c.io_threads);
  // DESIGN §5: without tokens the control plane is unauthenticated, so it may
  // only be reachable from this machine.
  std::string host;
  long port = 0;
  if (c.tokens.empty() && split_listen(c.listen, host, port) && !loopback_host(host))
    r.add("control.listen",
          "a non-loopback address needs control.tokens (no tokens: listen on 127.0.0.1 or [::1]), "
          "got " +
              quote(c.listen));
}

void load_runtime(reader& r, const json& root, config& cfg) {
  const json* rt = r.member(root, where{"", ""}, "runtime");
  const where w{"runtime", "runtime"};
  if (!rt || !r.object(*rt, w)) return;
  r.read(*rt, w, "threads", cfg.rt.threads);
  r.read(*rt, w, "snapshot_every", cfg.rt.snapshot_every);
  r.read(*rt, w, "retention_days", cfg.rt.retention_days);
  r.read(*rt, w, "commit_interval_ms", cfg.rt.commit_interval_ms);
  r.read(*rt, w, "end_commit_interval_ms", cfg.rt.end_commit_interval_ms);
  r.read(*rt, w, "commit_batch", cfg.rt.commit_batch);
  if (const json* sup = r.member(*rt, w, "supervision"); sup && r.object(*sup, w.key("supervision"))) {
    const where sw = w.key("supervision");
    r.read(*sup, sw, "max_restarts", cfg.rt.teams_sup.max_restarts);
    r.read(*sup, sw, "within_ms", cfg.rt.teams_sup.within_ms);
  }
}

}  // namespace

void load_top(reader& r, const json& root, config& cfg) {
  load_store(r, root, cfg);
  load_control(r, root, cfg);
  load_runtime(r, root, cfg);
}

bool valid_name(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) != 0 || c == '_' || c == '.' || c == '-';
  });
}

bool loopback_host(std::string_view host) {
  if (host == "localhost" || host == "[::1]" || host == "::1") return true;
  if (host.rfind("127.", 0) != 0) return false;
  // 127.x.y.z: only digits and dots, so "127.evil.com" is not loopback.
  return std::all_of(host.begin(), host.end(),
                     [](unsigned char c) { return std::isdigit(c) || c == '.'; });
}

std::string url_host(std::string_view url) {
  const auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return "";
  std::string_view rest = url.substr(scheme + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) rest = rest.substr(at + 1);
  if (!rest.empty() && rest.front() == '[') return std::string(rest.substr(0, rest.find(']') + 1));
  return std::string(rest.substr(0, rest.find(':')));
}

}  // namespace troupe::config::detail
