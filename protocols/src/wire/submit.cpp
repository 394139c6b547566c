#include "troupe/protocols/wire/submit.hpp"

#include <set>

namespace troupe::protocols::wire {
namespace {
base::result<agents::task_spec> bad(std::string msg) {
  return base::fail(base::errc::bad_request, std::move(msg));
}
}  // namespace

const char* json_type_name(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::boolean: return "boolean";
    case nlohmann::json::value_t::string: return "string";
    case nlohmann::json::value_t::array: return "array";
    case nlohmann::json::value_t::object: return "object";
    case nlohmann::json::value_t::number_float: return "number";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return "integer";
    default: return "value";
  }
}

base::result<agents::task_spec> parse_submit(const nlohmann::json& body) {
  if (!body.is_object()) return bad(std::string("expected a JSON object, got ") + json_type_name(body));
  static const std::set<std::string> known = {"team", "agent", "input", "priority", "idempotency_key",
                                              "deadline_ms", "max_attempts", "depends_on", "metadata"};
  for (const auto& [key, value] : body.items())
    if (!known.count(key)) return bad("unknown field '" + key + "'");
  agents::task_spec spec;
  auto str = [&](const char* key, std::string& out) -> std::optional<std::string> {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) return std::string("field '") + key + "': expected a string, got " + json_type_name(*it);
    out = it->get<std::string>();
    return std::nullopt;
  };
  for (auto [key, out] : {std::pair{"team", &spec.team}, std::pair{"agent", &spec.agent},
                          std::pair{"input", &spec.input}, std::pair{"idempotency_key", &spec.idempotency_key}})
    if (auto err = str(key, *out)) return bad(*err);
  if (spec.team.empty() == spec.agent.empty())
    return bad("exactly one of 'team' or 'agent' is required");
  if (!body.contains("input")) return bad("field 'input' is required");
  if (auto it = body.find("priority"); it != body.end() && !it->is_null()) {
    std::optional<int> p;
    if (it->is_string()) p = agents::parse_priority(it->get<std::string>());
    else if (it->is_number_integer()) p = agents::parse_priority(std::to_string(it->get<long long>()));
    if (!p) return bad("field 'priority': expected 0-9 or low|normal|high|urgent, got " + it->dump());
    spec.priority = *p;
  }
  if (auto it = body.find("deadline_ms"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<long long>() <= 0)
      return bad("field 'deadline_ms': expected a positive integer, got " + it->dump());
    spec.deadline_ms = it->get<long long>();
  }
  if (auto it = body.find("max_attempts"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<long long>() < 1 || it->get<long long>() > 100)
      return bad("field 'max_attempts': expected an integer in 1..100, got " + it->dump());
    spec.max_attempts = static_cast<int>(it->get<long long>());
  }
  if (auto it = body.find("depends_on"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return bad(std::string("field 'depends_on': expected an array of task ids, got ") + json_type_name(*it));
    for (std::size_t i = 0; i < it->size(); ++i) {
      if (!(*it)[i].is_string())
        return bad("field 'depends_on[" + std::to_string(i) + "]': expected a string, got " + json_type_name((*it)[i]));
      spec.depends_on.push_back((*it)[i].get<std::string>());
    }
  }
  if (auto it = body.find("metadata"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return bad(std::string("field 'metadata': expected an object, got ") + json_type_name(*it));
    spec.metadata = it->dump();
  }
  return spec;
}

}  // namespace troupe::protocols::wire
