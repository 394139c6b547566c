// Audit rows of control-plane commands: what is kept of the arguments, and the
// reply wrapper that records each command's outcome in the next group commit.
#include <algorithm>
#include <array>
#include <cctype>
#include <string_view>

#include "troupe/actors/store_actor.hpp"
#include "troupe/base/clock.hpp"

namespace troupe::actors {
namespace {

constexpr std::size_t max_audit_string = 256;

/// True when a key names a credential; matched on the lower-cased key so
/// "apiKey", "X-Api-Key" and "access_token" are all caught.
bool is_secret_key(std::string_view key) {
  std::string lower(key);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  lower.erase(std::remove_if(lower.begin(), lower.end(), [](char c) { return c == '_' || c == '-'; }),
              lower.end());
  static constexpr std::array<std::string_view, 7> needles = {
      "token", "password", "passwd", "secret", "apikey", "authorization", "credential"};
  return std::any_of(needles.begin(), needles.end(),
                     [&](std::string_view n) { return lower.find(n) != std::string::npos; });
}

nlohmann::json scrub(const nlohmann::json& v) {
  if (v.is_object()) {
    auto out = nlohmann::json::object();
    for (const auto& [key, value] : v.items()) out[key] = is_secret_key(key) ? nlohmann::json("***") : scrub(value);
    return out;
  }
  if (v.is_array()) {
    auto out = nlohmann::json::array();
    for (const auto& x : v) out.push_back(scrub(x));
    return out;
  }
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s.size() <= max_audit_string) return v;
    // Cut on a UTF-8 boundary so the stored JSON stays valid text.
    std::size_t cut = max_audit_string;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    return s.substr(0, cut) + "...(" + std::to_string(s.size()) + " bytes)";
  }
  return v;
}

}  // namespace

std::string audit_args(const nlohmann::json& args) {
  return scrub(args).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

base::audit_row audit_row_ok(std::string principal, std::string action, std::string target,
                             const std::string& args_json) {
  base::audit_row row;
  row.ts_ms = base::now_ms();
  row.principal = std::move(principal);
  row.action = std::move(action);
  row.target = std::move(target);
  row.detail = R"({"args":)" + args_json + '}';
  row.outcome = "ok";
  return row;
}

reply_fn audited(const caf::actor& store, std::string principal, std::string action,
                 std::string target, std::string args_json, reply_fn reply) {
  if (!store) return reply;
  return [store, principal = std::move(principal), action = std::move(action),
          target = std::move(target), args_json = std::move(args_json),
          reply = std::move(reply)](base::result<nlohmann::json> r) mutable {
    auto batch = std::make_shared<base::write_batch>();
    if (target.empty() && r && r->is_object()) {
      if (auto id = r->find("id"); id != r->end() && id->is_string()) target = id->get<std::string>();
    }
    auto row = audit_row_ok(std::move(principal), std::move(action), std::move(target), args_json);
    row.detail.pop_back();  // the closing brace: the outcome's details follow
    if (r) {
      if (r->is_object() && r->value("existing", false)) row.detail += R"(,"existing":true)";
    } else {
      row.outcome = std::string(base::to_string(r.error().code));
      row.detail += R"(,"error":)" +
                    nlohmann::json(r.error().message).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    row.detail += '}';
    batch->audit.push_back(std::move(row));
    // Fire and forget: the row rides along with the next group commit. Sent
    // before the reply so a caller that reads the log after its answer finds it
    // queued ahead of its read.
    caf::anon_send(store, write_atom::value, std::move(batch));
    reply(std::move(r));
  };
}

}  // namespace troupe::actors
