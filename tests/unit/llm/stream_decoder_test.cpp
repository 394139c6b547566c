// The stream decoder reads each event in one pass of json_scan; it must decide every
// event as the reading through a JSON tree that it replaced did (kept here as the
// reference): the same verdict, token, text, finish reason, counts and end.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "corrupt.hpp"
#include "troupe/protocols/llm/wire_format.hpp"

namespace troupe::protocols::llm {
namespace {

using json = nlohmann::json;

struct outcome {
  bool ok = false;
  std::string token, text, finish;
  std::int64_t in = 0, out = 0;
  bool complete = false;
  bool operator==(const outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const outcome& o) {
  return os << "{ok " << o.ok << ", token '" << o.token << "', text '" << o.text << "', finish '" << o.finish
            << "', in " << o.in << ", out " << o.out << ", complete " << o.complete << "}";
}

/// The reading through a JSON tree (the decoder as it was): one event on `state`.
bool reference_feed(api_kind kind, const sse_event& e, outcome& st) {
  st.token.clear();
  if (st.complete) return true;
  if (kind == api_kind::openai && e.data == "[DONE]") {
    st.complete = true;
    return true;
  }
  json doc = json::parse(e.data, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return false;
  try {
    if (kind == api_kind::openai) {
      if (doc.contains("error")) return false;
      if (doc.contains("choices") && doc["choices"].is_array() && !doc["choices"].empty()) {
        const auto& choice = doc["choices"][0];
        if (choice.contains("delta") && choice["delta"].is_object()) {
          const auto& delta = choice["delta"];
          if (delta.contains("content") && delta["content"].is_string()) st.token = delta["content"].get<std::string>();
        }
        if (choice.contains("finish_reason") && choice["finish_reason"].is_string())
          st.finish = choice["finish_reason"].get<std::string>();
      }
      if (doc.contains("usage") && doc["usage"].is_object()) {
        st.in = doc["usage"].value("prompt_tokens", std::int64_t{0});
        st.out = doc["usage"].value("completion_tokens", std::int64_t{0});
      }
    } else {
      std::string type = doc.value("type", e.event);
      if (type == "message_start") {
        const auto& usage = doc.at("message").value("usage", json::object());
        st.in = usage.value("input_tokens", std::int64_t{0});
        st.out = usage.value("output_tokens", std::int64_t{0});
      } else if (type == "content_block_start") {
        const auto& block = doc.at("content_block");
        if (block.value("type", "") == "text") st.token = block.value("text", "");
      } else if (type == "content_block_delta") {
        const auto& delta = doc.at("delta");
        if (delta.value("type", "") == "text_delta") st.token = delta.value("text", "");
      } else if (type == "message_delta") {
        if (doc.contains("delta") && doc["delta"].contains("stop_reason") && doc["delta"]["stop_reason"].is_string())
          st.finish = doc["delta"]["stop_reason"].get<std::string>();
        if (doc.contains("usage") && doc["usage"].is_object()) {
          st.out = doc["usage"].value("output_tokens", st.out);
          if (doc["usage"].contains("input_tokens") && doc["usage"]["input_tokens"].is_number())
            st.in = doc["usage"]["input_tokens"].get<std::int64_t>();
        }
      } else if (type == "message_stop") {
        st.complete = true;
      } else if (type == "error") {
        return false;
      }
    }
  } catch (const json::exception&) {
    return false;
  }
  st.text += st.token;
  return true;
}

/// Feeds `events` to a new decoder and to the reference; both stop at the first failure.
void expect_same(api_kind kind, const std::vector<sse_event>& events) {
  stream_decoder d(kind, "p");
  outcome mine, ref;
  for (const auto& e : events) {
    std::string token;
    mine.ok = static_cast<bool>(d.feed(e, token));
    mine.token = token;
    ref.ok = reference_feed(kind, e, ref);
    ASSERT_EQ(mine.ok, ref.ok) << "verdicts differ on: " << e.event << " " << e.data;
    if (!mine.ok) return;
    ASSERT_EQ(mine.token, ref.token) << e.data;
  }
  mine.complete = d.complete();
  auto r = d.take();
  mine.text = r.text;
  mine.finish = r.finish_reason;
  mine.in = r.usage.tokens_in;
  mine.out = r.usage.tokens_out;
  EXPECT_EQ(mine, ref);
}

const std::vector<sse_event> openai_stream = {
    {"", R"({"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]})"},
    {"", R"({"choices":[{"delta":{"content":"Hel\u00e9"}}]})"},
    {"", R"({"choices":[{"delta":{"content":"lo"}}]})"},
    {"", R"({"choices":[{"delta":{},"finish_reason":"stop"}]})"},
    {"", R"({"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2.0,"total_tokens":6}})"},
    {"", "[DONE]"}};

const std::vector<sse_event> anthropic_stream = {
    {"message_start", R"({"type":"message_start","message":{"id":"m","usage":{"input_tokens":9,"output_tokens":1}}})"},
    {"content_block_start", R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"},
    {"ping", R"({"type":"ping"})"},
    {"content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}})"},
    {"content_block_stop", R"({"type":"content_block_stop","index":0})"},
    {"message_delta", R"({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3,"input_tokens":9}})"},
    {"message_stop", R"({"type":"message_stop"})"}};

TEST(stream_decoder, crafted_events_are_decided_as_through_a_json_tree) {
  expect_same(api_kind::openai, openai_stream);
  expect_same(api_kind::anthropic, anthropic_stream);
  const std::vector<std::string> openai_events = {
      R"({"error":{"message":"x"}})", R"({"error":null})", R"({"choices":{}})", R"({"choices":[1]})",
      R"({"choices":[{"delta":"x","finish_reason":"len"}]})", R"({"choices":[{"delta":{"content":5}}]})",
      R"({"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]})",
      R"({"choices":[{"delta":{"content":"a","content":"b"}}]})", R"({"usage":{"prompt_tokens":"3"}})",
      R"({"usage":{"prompt_tokens":null}})", R"({"usage":{"prompt_tokens":true,"completion_tokens":2.9}})",
      R"({"usage":[1]})", R"({"usage":{"prompt_tokens":1},"usage":{"completion_tokens":2}})", "[1]", "\"x\"",
      R"({"choices":[{"delta":{"content":"x"}}],"choices":[]})", R"({"choices":[{"delta":{"content":"x"},"delta":{}}]})",
      R"({"a":{"b":{"c":{"d":{"e":[{"f":1}]}}}},"choices":[{"delta":{"content":"deep"}}]})", "", "{"};
  for (const auto& e : openai_events) expect_same(api_kind::openai, {{"", e}});
  const std::vector<sse_event> anthropic_events = {
      {"message_start", R"({"type":"message_start"})"},
      {"message_start", R"({"type":"message_start","message":[]})"},
      {"message_start", R"({"type":"message_start","message":{}})"},
      {"message_start", R"({"type":"message_start","message":{"usage":null}})"},
      {"message_start", R"({"type":"message_start","message":{"usage":{"input_tokens":"9"}}})"},
      {"message_start", R"({"message":{"usage":{"input_tokens":7}}})"},
      {"x", R"({"type":5})"},
      {"content_block_start", R"({"type":"content_block_start","content_block":{"type":"tool_use","text":5}})"},
      {"content_block_start", R"({"type":"content_block_start","content_block":{"type":"text","text":5}})"},
      {"content_block_start", R"({"type":"content_block_start","content_block":{"type":7}})"},
      {"content_block_start", R"({"type":"content_block_start","content_block":"text"})"},
      {"content_block_delta", R"({"type":"content_block_delta"})"},
      {"content_block_delta", R"({"type":"content_block_delta","delta":{"type":"text_delta"}})"},
      {"content_block_delta", R"({"type":"content_block_delta","delta":{"type":"input_json_delta","partial_json":"{"}})"},
      {"message_delta", R"({"type":"message_delta","delta":"x","usage":{"output_tokens":"3"}})"},
      {"message_delta", R"({"type":"message_delta","delta":{"stop_reason":null},"usage":{"input_tokens":"9"}})"},
      {"message_delta", R"({"type":"message_delta","usage":{"output_tokens":4.5,"input_tokens":2.5}})"},
      {"error", R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})"},
      {"message_stop", R"({"type":"message_stop"})"},
      {"anything", R"({"type":"future_event","data":[1,2]})"}};
  for (const auto& e : anthropic_events) expect_same(api_kind::anthropic, {e});
}

TEST(stream_decoder, cut_and_corrupted_streams_are_decided_as_through_a_json_tree) {
  std::mt19937 rng(11);
  const std::string alphabet = "{}[]\":,.-0123456789abcdeflnrstu \\x";
  for (int i = 0; i < 4000 && !HasFailure(); ++i) {
    const bool openai = i % 2 == 0;
    auto events = openai ? openai_stream : anthropic_stream;
    auto& e = events[rng() % events.size()];
    e.data = testing::corrupt(testing::corrupt(e.data, rng, alphabet, 6), rng, alphabet, 6);
    expect_same(openai ? api_kind::openai : api_kind::anthropic, events);
  }
}

}  // namespace
}  // namespace troupe::protocols::llm
