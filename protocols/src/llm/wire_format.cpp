#include "troupe/protocols/llm/wire_format.hpp"

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "json_scan.hpp"
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

namespace {

/// One value of a stream event, as event_fields records it.
struct field {
  enum kind_t { absent, null, boolean, integer, unsigned_integer, floating, string, object, array };
  explicit field(kind_t k = absent) : kind(k) {}
  kind_t kind;
  std::string text;
  std::int64_t i = 0;
  std::uint64_t u = 0;
  double f = 0;
  bool present() const { return kind != absent; }
};

/// The values of one stream event down to four levels, by dotted path
/// ("choices.0.delta.content"), read in one pass of json_scan (an event per token:
/// a JSON tree for each cost more than the rest of a streamed call). A key that
/// comes again replaces the earlier value and all below it, as in a JSON tree.
class event_fields {
 public:
  static constexpr std::size_t max_depth = 4;

  /// False when `text` is not a JSON object.
  bool read(std::string_view text) { return detail::scan_json(text, *this).status == detail::scan_status::ok && top_object_; }

  const field& at(std::string_view path) const {
    static const field none;
    for (const auto& [p, v] : fields_)
      if (p == path) return v;
    return none;
  }

  // json_scan's handler
  bool null() { return put(field(field::null)); }
  bool boolean(bool) { return put(field(field::boolean)); }  // no decoder reads one
  bool number_integer(std::int64_t i) {
    field v(field::integer);
    v.i = i;
    return put(std::move(v));
  }
  bool number_unsigned(std::uint64_t u) {
    field v(field::unsigned_integer);
    v.u = u;
    return put(std::move(v));
  }
  bool number_float(double f) {
    field v(field::floating);
    v.f = f;
    return put(std::move(v));
  }
  bool string(std::string& s) {
    field v(field::string);
    v.text = std::move(s);
    return put(std::move(v));
  }
  bool key(std::string& k) {
    if (depth_ <= max_depth) frames_[depth_].key = std::move(k);
    return true;
  }
  bool start_object() { return open(field::object); }
  bool start_array() { return open(field::array); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

 private:
  struct frame {
    bool array = false;
    std::size_t count = 0;  ///< elements begun (arrays)
    std::string key;        ///< the current member's key (objects)
  };

  /// The dotted path of the value beginning now at depth_ (inside the container at depth_).
  std::string path() {
    std::string out;
    for (std::size_t d = 1; d <= depth_; ++d) {
      if (d > 1) out += '.';
      auto& fr = frames_[d];
      out += fr.array ? std::to_string(fr.count - 1) : fr.key;
    }
    return out;
  }

  /// Bookkeeping for a value beginning at depth_; records it when shallow enough.
  bool put(field v) {
    if (depth_ == 0) {
      top_object_ = v.kind == field::object;
      return top_object_;
    }
    if (depth_ > max_depth) return true;
    if (frames_[depth_].array) ++frames_[depth_].count;
    auto p = path();
    // Replaced with all below it.
    for (auto it = fields_.begin(); it != fields_.end();)
      if (it->first == p || (it->first.size() > p.size() && it->first.compare(0, p.size(), p) == 0 &&
                             it->first[p.size()] == '.'))
        it = fields_.erase(it);
      else
        ++it;
    fields_.emplace_back(std::move(p), std::move(v));
    return true;
  }
  bool open(field::kind_t kind) {
    if (!put(field(kind))) return false;
    ++depth_;
    if (depth_ <= max_depth) frames_[depth_] = frame{kind == field::array, 0, {}};
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }

  std::size_t depth_ = 0;
  std::array<frame, max_depth + 1> frames_{};
  bool top_object_ = false;
  std::vector<std::pair<std::string, field>> fields_;
};

/// `path` as a whole count, as a JSON library reads a member into an integer: absent
/// is `fallback`, a number its value (a fraction cut off), anything else not a count.
base::result<std::int64_t> count_at(const event_fields& f, std::string_view path, std::int64_t fallback) {
  const auto& v = f.at(path);
  switch (v.kind) {
    case field::absent: return fallback;
    case field::integer: return v.i;
    case field::unsigned_integer: return detail::count_of(v.u);
    case field::floating: return detail::count_of(v.f);
    default: return base::fail(base::errc::provider_error, std::string(path) + " is not a number");
  }
}

/// `path` as text: absent is `fallback`, a string its value, anything else an error.
base::result<std::string> text_at(const event_fields& f, std::string_view path, std::string fallback) {
  const auto& v = f.at(path);
  if (!v.present()) return fallback;
  if (v.kind != field::string) return base::fail(base::errc::provider_error, std::string(path) + " is not a string");
  return v.text;
}

/// An object member the event must have (what `at` would find), as an object.
std::optional<std::string> need_object(const event_fields& f, std::string_view path) {
  const auto& v = f.at(path);
  if (!v.present()) return std::string(path) + " is missing";
  if (v.kind != field::object) return std::string(path) + " is not an object";
  return std::nullopt;
}

bool is_number(const field& v) {
  return v.kind == field::integer || v.kind == field::unsigned_integer || v.kind == field::floating;
}

}  // namespace

base::result<void> stream_decoder::feed_openai(const sse_event& event, std::string& token) {
  if (event.data == "[DONE]") {
    complete_ = true;
    return {};
  }
  event_fields f;
  if (!f.read(event.data)) return base::fail(malformed(where_, "stream event is not JSON: " + clip(event.data, 80)));
  if (f.at("error").present())
    return base::fail(base::errc::provider_error, where_ + ": error in stream: " + error_message_from_body(event.data),
                      true);
  if (f.at("choices").kind == field::array && f.at("choices.0").kind == field::object) {
    if (f.at("choices.0.delta").kind == field::object) {
      const auto& content = f.at("choices.0.delta.content");
      if (content.kind == field::string) token = content.text;
    }
    const auto& finish = f.at("choices.0.finish_reason");
    if (finish.kind == field::string) response_.finish_reason = finish.text;
  }
  if (f.at("usage").kind == field::object) {
    auto in = count_at(f, "usage.prompt_tokens", 0);
    if (!in) return base::fail(malformed(where_, in.error().message));
    auto out = count_at(f, "usage.completion_tokens", 0);
    if (!out) return base::fail(malformed(where_, out.error().message));
    response_.usage.tokens_in = *in;
    response_.usage.tokens_out = *out;
  }
  response_.text += token;
  return {};
}

base::result<void> stream_decoder::feed_anthropic(const sse_event& event, std::string& token) {
  event_fields f;
  if (!f.read(event.data)) return base::fail(malformed(where_, "stream event is not JSON: " + clip(event.data, 80)));
  auto bad = [&](const std::string& what) { return base::fail(malformed(where_, what)); };
  auto type = text_at(f, "type", event.event);
  if (!type) return bad(type.error().message);
  if (*type == "message_start") {
    if (auto problem = need_object(f, "message")) return bad(*problem);
    const auto& usage = f.at("message.usage");
    if (usage.present() && usage.kind != field::object) return bad("message.usage is not an object");
    auto in = count_at(f, "message.usage.input_tokens", 0);
    if (!in) return bad(in.error().message);
    auto out = count_at(f, "message.usage.output_tokens", 0);
    if (!out) return bad(out.error().message);
    response_.usage.tokens_in = *in;
    response_.usage.tokens_out = *out;
  } else if (*type == "content_block_start" || *type == "content_block_delta") {
    const bool start = *type == "content_block_start";
    const std::string at = start ? "content_block" : "delta";
    if (auto problem = need_object(f, at)) return bad(*problem);
    auto kind = text_at(f, at + ".type", "");
    if (!kind) return bad(kind.error().message);
    if (*kind == (start ? "text" : "text_delta")) {
      auto text = text_at(f, at + ".text", "");
      if (!text) return bad(text.error().message);
      token = std::move(*text);
    }
  } else if (*type == "message_delta") {
    const auto& stop = f.at("delta.stop_reason");
    if (f.at("delta").kind == field::object && stop.kind == field::string) response_.finish_reason = stop.text;
    // message_delta carries the cumulative output count.
    if (f.at("usage").kind == field::object) {
      auto out = count_at(f, "usage.output_tokens", response_.usage.tokens_out);
      if (!out) return bad(out.error().message);
      response_.usage.tokens_out = *out;
      const auto& in = f.at("usage.input_tokens");
      if (is_number(in)) response_.usage.tokens_in = *count_at(f, "usage.input_tokens", 0);
    }
  } else if (*type == "message_stop") {
    complete_ = true;
  } else if (*type == "error") {
    return base::fail(base::errc::provider_error, where_ + ": error in stream: " + error_message_from_body(event.data),
                      true);
  }  // ping, content_block_stop and unknown future events are ignored
  response_.text += token;
  return {};
}

}  // namespace troupe::protocols::llm
