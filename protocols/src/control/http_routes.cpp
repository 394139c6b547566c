#include "troupe/protocols/control/http_routes.hpp"

#include <charconv>
#include <vector>

namespace troupe::protocols::control {

using nlohmann::json;

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    const auto j = path.find('/', i);
    const auto end = j == std::string::npos ? path.size() : j;
    if (end > i) parts.push_back(path.substr(i, end - i));
    i = end;
  }
  return parts;
}

route reject(int status, base::errc code, std::string message, std::string label = "other") {
  route r;
  r.kind = route_kind::reject;
  r.status = status;
  r.err = base::make_error(code, std::move(message));
  r.label = std::move(label);
  return r;
}

route method_not_allowed(std::string_view method, const std::string& path, std::string allow,
                         std::string label) {
  auto r = reject(405, base::errc::bad_request,
                  "method " + std::string(method) + " is not allowed on " + path + "; use " + allow,
                  std::move(label));
  r.allow = std::move(allow);
  return r;
}

// Parses an optional JSON object body; an empty body is an empty object.
base::result<json> parse_object_body(std::string_view body) {
  if (body.empty()) return json::object();
  try {
    auto doc = json::parse(body.begin(), body.end());
    if (!doc.is_object())
      return base::fail(base::errc::bad_request,
                        std::string("body must be a JSON object, got ") + doc.type_name());
    return doc;
  } catch (const json::parse_error& e) {
    // nlohmann prefixes "[json.exception.parse_error.101] "; keep only the reason.
    std::string what = e.what();
    if (auto pos = what.find("] "); pos != std::string::npos) what = what.substr(pos + 2);
    return base::fail(base::errc::bad_request,
                      "body is not valid JSON: " + what + " at byte " + std::to_string(e.byte));
  }
}

route op_route(std::string label, std::string op, json args, int success = 200) {
  route r;
  r.kind = route_kind::op;
  r.label = std::move(label);
  r.op = std::move(op);
  r.args = std::move(args);
  r.success_status = success;
  return r;
}

// Query parameters become op arguments (minus the token); "limit" must be a number.
base::result<json> query_args(const std::map<std::string, std::string>& query) {
  json args = json::object();
  for (const auto& [key, value] : query) {
    if (key == "access_token") continue;
    if (key == "limit" || key == "offset") {
      long long n = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc{} || ptr != value.data() + value.size() || n < 0)
        return base::fail(base::errc::bad_request, "query parameter '" + key +
                                                       "' must be a non-negative integer, got '" +
                                                       value + "'");
      args[key] = n;
    } else {
      args[key] = value;
    }
  }
  return args;
}

}  // namespace

std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const int hi = hex_value(s[i + 1]);
      const int lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && s[i] == '+' ? ' ' : s[i]);
  }
  return out;
}

std::map<std::string, std::string> parse_query(std::string_view target) {
  std::map<std::string, std::string> out;
  const auto q = target.find('?');
  if (q == std::string_view::npos) return out;
  auto rest = target.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    auto pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq), true);
    auto value = eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1), true);
    out[std::move(key)] = std::move(value);
  }
  return out;
}

std::string target_path(std::string_view target) {
  return percent_decode(target.substr(0, target.find('?')));
}

std::string error_body(const base::error& e) {
  json doc = {{"error", {{"code", base::to_string(e.code)}, {"message", e.message}}}};
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);  // messages may quote invalid UTF-8
}

route resolve_route(std::string_view method, std::string_view target, std::string_view body) {
  const std::string path = target_path(target);
  const auto parts = split_path(path);
  const auto query = parse_query(target);
  const bool get = method == "GET";
  const bool post = method == "POST";

  if (parts.size() == 1 && (parts[0] == "healthz" || parts[0] == "readyz" || parts[0] == "metrics")) {
    const std::string label = "/" + parts[0];
    if (!get) return method_not_allowed(method, path, "GET", label);
    route r;
    r.label = label;
    r.kind = parts[0] == "healthz" ? route_kind::healthz
             : parts[0] == "readyz" ? route_kind::readyz
                                    : route_kind::metrics;
    r.needs_auth = r.kind == route_kind::metrics;
    return r;
  }
  if (parts.size() < 2 || parts[0] != "v1")
    return reject(404, base::errc::not_found, "no route for " + std::string(method) + " " + path);

  const std::string& resource = parts[1];
  if (resource == "ws" && parts.size() == 2) {
    if (!get) return method_not_allowed(method, path, "GET", "/v1/ws");
    auto r = reject(426, base::errc::bad_request,
                    "GET /v1/ws expects a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)",
                    "/v1/ws");
    return r;  // the server handles real upgrades before routing
  }

  auto with_query = [&](route r) {
    auto extra = query_args(query);
    if (!extra) return reject(400, extra.error().code, extra.error().message, r.label);
    for (auto& [k, v] : extra->items())
      if (!r.args.contains(k)) r.args[k] = v;
    return r;
  };

  if (resource == "tasks") {
    if (parts.size() == 2) {
      if (get) return with_query(op_route("/v1/tasks", "tasks", json::object()));
      if (post) {
        auto doc = parse_object_body(body);
        if (!doc) return reject(400, doc.error().code, doc.error().message, "/v1/tasks");
        return op_route("/v1/tasks", "submit", std::move(*doc), 202);
      }
      return method_not_allowed(method, path, "GET, POST", "/v1/tasks");
    }
    if (parts.size() == 3) {
      if (!get) return method_not_allowed(method, path, "GET", "/v1/tasks/{id}");
      return with_query(op_route("/v1/tasks/{id}", "task", json{{"id", parts[2]}}));
    }
    if (parts.size() == 4 && parts[3] == "cancel") {
      if (!post) return method_not_allowed(method, path, "POST", "/v1/tasks/{id}/cancel");
      auto doc = parse_object_body(body);
      if (!doc) return reject(400, doc.error().code, doc.error().message, "/v1/tasks/{id}/cancel");
      (*doc)["id"] = parts[2];
      return op_route("/v1/tasks/{id}/cancel", "cancel", std::move(*doc));
    }
  } else if (resource == "decisions") {
    if (parts.size() == 2) {
      if (!get) return method_not_allowed(method, path, "GET", "/v1/decisions");
      return with_query(op_route("/v1/decisions", "decisions", json::object()));
    }
    if (parts.size() == 3) {
      if (!post) return method_not_allowed(method, path, "POST", "/v1/decisions/{id}");
      const std::string label = "/v1/decisions/{id}";
      auto doc = parse_object_body(body);
      if (!doc) return reject(400, doc.error().code, doc.error().message, label);
      if (!doc->contains("option") || !(*doc)["option"].is_string())
        return reject(400, base::errc::bad_request,
                      "body field 'option' is required and must be a string", label);
      if (doc->contains("comment") && !(*doc)["comment"].is_string())
        return reject(400, base::errc::bad_request, "body field 'comment' must be a string", label);
      json args = {{"decision_id", parts[2]},
                   {"option", (*doc)["option"]},
                   {"comment", doc->value("comment", std::string())}};
      return op_route(label, "decide", std::move(args));
    }
  } else if ((resource == "agents" || resource == "teams" || resource == "audit") &&
             parts.size() == 2) {
    const std::string label = "/v1/" + resource;
    if (!get) return method_not_allowed(method, path, "GET", label);
    return with_query(op_route(label, resource, json::object()));
  }
  return reject(404, base::errc::not_found, "no route for " + std::string(method) + " " + path);
}

}  // namespace troupe::protocols::control
