// The fake's replies: both wire formats, streaming and not, and the faults.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fake_replies.hpp"

namespace troupe::fake_llm::detail {
namespace {

using json = nlohmann::json;

enum class dialect { openai, anthropic };

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::int64_t word_count(const std::string& text) { return static_cast<std::int64_t>(split_words(text).size()); }

/// Text of an OpenAI / Anthropic message content (a string or an array of blocks).
std::string content_text(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string out;
  if (content.is_array())
    for (const auto& b : content)
      if (b.is_object() && b.contains("text") && b["text"].is_string()) out += b["text"].get<std::string>();
  return out;
}

std::string error_body(dialect d, int status, const std::string& message) {
  if (d == dialect::anthropic) {
    std::string type = status == 401 ? "authentication_error"
                       : status == 403 ? "permission_error"
                       : status == 429 ? "rate_limit_error"
                       : status >= 500 ? "api_error"
                                       : "invalid_request_error";
    return json{{"type", "error"}, {"error", {{"type", type}, {"message", message}}}}.dump();
  }
  std::string type = status == 401 ? "invalid_request_error"
                     : status == 429 ? "rate_limit_exceeded"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  json code = status == 401 ? json("invalid_api_key") : json(nullptr);
  return json{{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", code}}}}.dump();
}

}  // namespace

std::string http_date_after(std::int64_t ms) {
  using namespace std::chrono;
  // Rounded up to a whole second: a date never promises less wait than asked.
  auto at = ceil<seconds>(system_clock::now() + milliseconds(ms));
  auto day = floor<days>(at);
  year_month_day ymd{day};
  hh_mm_ss hms{at - day};
  static constexpr const char* names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02u %s %04d %02d:%02d:%02d GMT", names[weekday{day}.c_encoding()],
                static_cast<unsigned>(ymd.day()), months[static_cast<unsigned>(ymd.month()) - 1],
                static_cast<int>(ymd.year()), static_cast<int>(hms.hours().count()),
                static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()));
  return buf;
}

plan make_plan(const request_view& r, const fake_knobs& k, std::mt19937_64& rng, fake_counters& c) {
  plan p;
  const std::string& path = r.path;
  dialect d = path == "/v1/messages" ? dialect::anthropic : dialect::openai;
  ++c.total;
  ++c.by_path[path];
  c.last_body = r.body;
  p.latency_ms = k.latency_ms;
  p.token_delay_ms = k.token_delay_ms;
  if (path != "/v1/messages" && path != "/v1/chat/completions" && path != "/chat/completions") {
    p.status = 404;
    p.body = error_body(d, 404, "no route for " + path);
    return p;
  }
  if (!r.is_post) {
    p.status = 405;
    p.body = error_body(d, 405, "use POST");
    return p;
  }
  if (!k.expected_key.empty()) {
    bool ok = d == dialect::openai ? r.authorization == "Bearer " + k.expected_key
                                   : r.x_api_key == k.expected_key;
    if (!ok) {
      p.status = 401;
      // Real providers quote (part of) the presented key back; quote all of it so
      // that tests prove the client redacts it.
      std::string presented = d == dialect::openai ? r.authorization
                                                   : r.x_api_key;
      if (presented.rfind("Bearer ", 0) == 0) presented.erase(0, 7);
      p.body = error_body(d, 401, (d == dialect::openai ? "Incorrect API key provided: " : "invalid x-api-key: ") +
                                      presented);
      return p;
    }
  }
  json req = json::parse(r.body, nullptr, false);
  if (req.is_discarded() || !req.is_object() || !req.contains("messages") || !req["messages"].is_array()) {
    p.status = 400;
    p.body = error_body(d, 400, "request body must be a JSON object with messages");
    return p;
  }
  std::string model = req.value("model", "");
  ++c.by_model[model];
  p.stream = req.value("stream", false) && !k.ignore_stream;
  if (k.status_override != 0) {
    p.status = k.status_override;
    p.body = error_body(d, p.status, "fake provider configured to answer " + std::to_string(p.status));
    if (p.status == 429 || p.status == 503) p.retry_after_ms = k.retry_after_ms;
    p.retry_after_date = k.retry_after_date;
    return p;
  }
  std::uniform_real_distribution<double> u(0.0, 1.0);
  double roll = u(rng);
  if (roll < k.error_rate_500) {
    p.status = 500;
    p.body = error_body(d, 500, "fake internal error");
    return p;
  }
  if (roll < k.error_rate_500 + k.error_rate_429) {
    p.status = 429;
    p.body = error_body(d, 429, "fake rate limit");
    p.retry_after_ms = k.retry_after_ms;
    p.retry_after_date = k.retry_after_date;
    return p;
  }
  p.hang = k.hang;
  p.truncate = k.truncated_stream;
  // The deterministic answer.
  std::string last_user;
  std::int64_t in_words = 0;
  if (req.contains("system")) in_words += word_count(content_text(req["system"]));
  for (const auto& m : req["messages"]) {
    if (!m.is_object()) continue;
    std::string text = content_text(m.value("content", json()));
    in_words += word_count(text);
    if (m.value("role", "") == "user") last_user = text;
  }
  std::string reply = "echo: " + last_user;
  std::int64_t in_tokens = std::max<std::int64_t>(in_words, 1);
  std::int64_t out_tokens = word_count(reply);
  if (!p.stream) {
    if (k.malformed_json) {
      p.body = d == dialect::openai ? R"({"id":"chatcmpl-fake","choices":[{"message":{"content":"ech)"
                                    : R"({"id":"msg_fake","content":[{"type":"text","text":)";
    } else if (d == dialect::openai) {
      p.body = json{{"id", "chatcmpl-fake"},
                    {"object", "chat.completion"},
                    {"created", 0},
                    {"model", model},
                    {"choices", json::array({{{"index", 0},
                                              {"message", {{"role", "assistant"}, {"content", reply}}},
                                              {"finish_reason", "stop"}}})},
                    {"usage",
                     {{"prompt_tokens", in_tokens},
                      {"completion_tokens", out_tokens},
                      {"total_tokens", in_tokens + out_tokens}}}}
                   .dump();
    } else {
      p.body = json{{"id", "msg_fake"},
                    {"type", "message"},
                    {"role", "assistant"},
                    {"model", model},
                    {"content", json::array({{{"type", "text"}, {"text", reply}}})},
                    {"stop_reason", "end_turn"},
                    {"stop_sequence", nullptr},
                    {"usage", {{"input_tokens", in_tokens}, {"output_tokens", out_tokens}}}}
                   .dump();
    }
    return p;
  }
  // Streamed: one event per word (the first word keeps no leading space).
  auto words = split_words(reply);
  auto data = [](const json& j) { return "data: " + j.dump() + "\n\n"; };
  if (d == dialect::openai) {
    auto chunk = [&](json delta, json finish) {
      return data({{"id", "chatcmpl-fake"}, {"object", "chat.completion.chunk"}, {"created", 0}, {"model", model},
                   {"choices", json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}})}});
    };
    p.events.push_back(chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
    for (std::size_t i = 0; i < words.size(); ++i)
      p.events.push_back(chunk({{"content", (i ? " " : "") + words[i]}}, nullptr));
    if (k.malformed_json) p.events.insert(p.events.begin() + 1, "data: {\"choices\": [{\"delta\": {\"content\"\n\n");
    p.events.push_back(chunk(json::object(), "stop"));
    bool usage = req.contains("stream_options") && req["stream_options"].value("include_usage", false);
    if (usage)
      p.events.push_back(data({{"id", "chatcmpl-fake"}, {"object", "chat.completion.chunk"}, {"created", 0},
                               {"model", model}, {"choices", json::array()},
                               {"usage", {{"prompt_tokens", in_tokens}, {"completion_tokens", out_tokens},
                                          {"total_tokens", in_tokens + out_tokens}}}}));
    p.events.push_back("data: [DONE]\n\n");
  } else {
    auto event = [&](const std::string& name, const json& j) { return "event: " + name + "\n" + data(j); };
    p.events.push_back(event("message_start",
                             {{"type", "message_start"},
                              {"message", {{"id", "msg_fake"}, {"type", "message"}, {"role", "assistant"},
                                           {"model", model}, {"content", json::array()}, {"stop_reason", nullptr},
                                           {"usage", {{"input_tokens", in_tokens}, {"output_tokens", 1}}}}}}));
    p.events.push_back(event("content_block_start", {{"type", "content_block_start"}, {"index", 0},
                                                     {"content_block", {{"type", "text"}, {"text", ""}}}}));
    p.events.push_back(event("ping", {{"type", "ping"}}));
    for (std::size_t i = 0; i < words.size(); ++i)
      p.events.push_back(event("content_block_delta",
                               {{"type", "content_block_delta"}, {"index", 0},
                                {"delta", {{"type", "text_delta"}, {"text", (i ? " " : "") + words[i]}}}}));
    if (k.malformed_json) p.events.insert(p.events.begin() + 2, "event: content_block_delta\ndata: {\"type\n\n");
    p.events.push_back(event("content_block_stop", {{"type", "content_block_stop"}, {"index", 0}}));
    p.events.push_back(event("message_delta", {{"type", "message_delta"},
                                               {"delta", {{"stop_reason", "end_turn"}, {"stop_sequence", nullptr}}},
                                               {"usage", {{"output_tokens", out_tokens}}}}));
    p.events.push_back(event("message_stop", {{"type", "message_stop"}}));
  }
  return p;
}

}  // namespace troupe::fake_llm::detail
