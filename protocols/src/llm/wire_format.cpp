#include "troupe/protocols/llm/wire_format.hpp"

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "reply_reader.hpp"
#include "troupe/base/json_text.hpp"

namespace troupe::protocols::llm {
namespace {
using json = nlohmann::json;

using detail::clip;
using detail::malformed;
using base::append_json_string;
using base::append_json_key;
}  // namespace

std::string build_request_body(api_kind kind, const base::llm_request& r) {
  // Written directly rather than through a JSON tree: this runs for every attempt on
  // the client's I/O thread. wire_format_test parses the result back.
  struct turn {
    std::string_view role;
    std::string_view first;
    std::string merged;  ///< set when turns of one role were merged
    bool is_merged = false;
  };
  std::vector<turn> turns;
  turns.reserve(r.messages.size() + 1);
  if (kind == api_kind::openai && !r.system.empty()) turns.push_back({"system", r.system, {}, false});
  // Consecutive turns of one role are merged (a step prompt right after another
  // user turn): Anthropic and the strict chat templates of some local servers
  // want user and assistant to alternate. Anthropic also rejects empty turns.
  for (const auto& m : r.messages) {
    if (kind == api_kind::anthropic && m.content.empty()) continue;
    if (!turns.empty() && turns.back().role == m.role && turns.back().role != "system") {
      auto& prev = turns.back();
      std::string_view before = prev.is_merged ? std::string_view(prev.merged) : prev.first;
      std::string joined = before.empty()        ? m.content
                           : m.content.empty()   ? std::string(before)
                                                 : std::string(before) + "\n\n" + m.content;
      prev.merged = std::move(joined);
      prev.is_merged = true;
      continue;
    }
    turns.push_back({m.role, m.content, {}, false});
  }
  std::size_t size = 128 + r.model.size() + r.system.size();
  for (const auto& t : turns) size += 32 + (t.is_merged ? t.merged.size() : t.first.size());
  for (const auto& s : r.stop) size += 4 + s.size();
  std::string out;
  out.reserve(size + size / 8);
  out += '{';
  append_json_key(out, "model");
  append_json_string(out, r.model);
  out += ',';
  append_json_key(out, "messages");
  out += '[';
  for (std::size_t i = 0; i < turns.size(); ++i) {
    if (i) out += ',';
    out += '{';
    append_json_key(out, "role");
    append_json_string(out, turns[i].role);
    out += ',';
    append_json_key(out, "content");
    append_json_string(out, turns[i].is_merged ? std::string_view(turns[i].merged) : turns[i].first);
    out += '}';
  }
  out += "],";
  append_json_key(out, "max_tokens");
  out += std::to_string(r.max_tokens);
  if (r.temperature >= 0) {
    out += ',';
    append_json_key(out, "temperature");
    out += json(r.temperature).dump();  // nlohmann's shortest round-trip form
  }
  auto stop_list = [&](std::string_view key) {
    out += ',';
    append_json_key(out, key);
    out += '[';
    for (std::size_t i = 0; i < r.stop.size(); ++i) {
      if (i) out += ',';
      append_json_string(out, r.stop[i]);
    }
    out += ']';
  };
  if (kind == api_kind::openai) {
    if (!r.stop.empty()) stop_list("stop");
    if (r.stream) {
      // Without stream_options the stream carries no token counts at all.
      out += R"(,"stream":true,"stream_options":{"include_usage":true})";
    }
  } else {
    if (!r.system.empty()) {
      out += ',';
      append_json_key(out, "system");
      append_json_string(out, r.system);
    }
    if (!r.stop.empty()) stop_list("stop_sequences");
    if (r.stream) out += R"(,"stream":true)";
  }
  out += '}';
  return out;
}

base::result<base::llm_response> parse_response(api_kind kind, std::string_view body,
                                                std::string_view where) {
  return detail::read_reply(kind, body, where);
}

std::string error_message_from_body(std::string_view body) {
  json doc = json::parse(body, nullptr, false);
  if (!doc.is_discarded() && doc.is_object()) {
    auto it = doc.find("error");
    if (it != doc.end()) {
      if (it->is_string()) return it->get<std::string>();  // Ollama, llama.cpp
      if (it->is_object()) {
        std::string type = it->contains("type") && (*it)["type"].is_string() ? (*it)["type"].get<std::string>() : "";
        std::string msg = it->contains("message") && (*it)["message"].is_string()
                              ? (*it)["message"].get<std::string>() : "";
        if (!msg.empty()) return type.empty() ? msg : type + ": " + msg;
      }
    }
    if (doc.contains("message") && doc["message"].is_string()) return doc["message"].get<std::string>();
  }
  return body.empty() ? std::string("(empty body)") : clip(body);
}

std::int64_t estimate_tokens(const base::llm_request& r) {
  std::size_t bytes = r.system.size();
  for (const auto& m : r.messages) bytes += m.content.size() + 4;
  return static_cast<std::int64_t>(bytes / 4 + 1) + std::max(r.max_tokens, 0);
}

std::string redact(std::string text, std::string_view secret) {
  if (secret.empty()) return text;
  for (auto pos = text.find(secret); pos != std::string::npos; pos = text.find(secret, pos))
    text.replace(pos, secret.size(), "[redacted]");
  return text;
}

base::result<void> stream_decoder::feed(const sse_event& event, std::string& token) {
  token.clear();
  if (complete_) return {};  // anything after the terminal event is ignored
  return kind_ == api_kind::openai ? feed_openai(event, token) : feed_anthropic(event, token);
}

base::result<void> stream_decoder::feed_openai(const sse_event& event, std::string& token) {
  if (event.data == "[DONE]") {
    complete_ = true;
    return {};
  }
  json doc = json::parse(event.data, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return base::fail(malformed(where_, "stream event is not JSON: " + clip(event.data, 80)));
  try {
    if (doc.contains("error"))
      return base::fail(base::errc::provider_error,
                        where_ + ": error in stream: " + error_message_from_body(event.data), true);
    if (doc.contains("choices") && doc["choices"].is_array() && !doc["choices"].empty()) {
      const auto& choice = doc["choices"][0];
      if (choice.contains("delta") && choice["delta"].is_object()) {
        const auto& delta = choice["delta"];
        if (delta.contains("content") && delta["content"].is_string()) token = delta["content"].get<std::string>();
      }
      if (choice.contains("finish_reason") && choice["finish_reason"].is_string())
        response_.finish_reason = choice["finish_reason"].get<std::string>();
    }
    if (doc.contains("usage") && doc["usage"].is_object()) {
      response_.usage.tokens_in = doc["usage"].value("prompt_tokens", std::int64_t{0});
      response_.usage.tokens_out = doc["usage"].value("completion_tokens", std::int64_t{0});
    }
  } catch (const json::exception& e) {
    return base::fail(malformed(where_, e.what()));
  }
  response_.text += token;
  return {};
}

base::result<void> stream_decoder::feed_anthropic(const sse_event& event, std::string& token) {
  json doc = json::parse(event.data, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return base::fail(malformed(where_, "stream event is not JSON: " + clip(event.data, 80)));
  try {
    std::string type = doc.value("type", event.event);
    if (type == "message_start") {
      const auto& usage = doc.at("message").value("usage", json::object());
      response_.usage.tokens_in = usage.value("input_tokens", std::int64_t{0});
      response_.usage.tokens_out = usage.value("output_tokens", std::int64_t{0});
    } else if (type == "content_block_start") {
      const auto& block = doc.at("content_block");
      if (block.value("type", "") == "text") token = block.value("text", "");
    } else if (type == "content_block_delta") {
      const auto& delta = doc.at("delta");
      if (delta.value("type", "") == "text_delta") token = delta.value("text", "");
    } else if (type == "message_delta") {
      if (doc.contains("delta") && doc["delta"].contains("stop_reason") && doc["delta"]["stop_reason"].is_string())
        response_.finish_reason = doc["delta"]["stop_reason"].get<std::string>();
      // message_delta carries the cumulative output count.
      if (doc.contains("usage") && doc["usage"].is_object()) {
        response_.usage.tokens_out = doc["usage"].value("output_tokens", response_.usage.tokens_out);
        if (doc["usage"].contains("input_tokens") && doc["usage"]["input_tokens"].is_number())
          response_.usage.tokens_in = doc["usage"]["input_tokens"].get<std::int64_t>();
      }
    } else if (type == "message_stop") {
      complete_ = true;
    } else if (type == "error") {
      return base::fail(base::errc::provider_error,
                        where_ + ": error in stream: " + error_message_from_body(event.data), true);
    }  // ping, content_block_stop and unknown future events are ignored
  } catch (const json::exception& e) {
    return base::fail(malformed(where_, e.what()));
  }
  response_.text += token;
  return {};
}

}  // namespace troupe::protocols::llm
