#include "troupe/protocols/llm/wire_format.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

namespace troupe::protocols::llm {
namespace {

using nlohmann::json;

base::llm_request sample(bool stream) {
  base::llm_request r;
  r.model = "m1";
  r.system = "You review.";
  r.messages = {{"user", "step one"}, {"assistant", "output one"}, {"user", "step two"}};
  r.max_tokens = 77;
  r.temperature = 0.5;
  r.stop = {"END"};
  r.stream = stream;
  return r;
}

TEST(wire_format, openai_request_puts_the_system_prompt_first) {
  auto body = json::parse(build_request_body(api_kind::openai, sample(true)));
  EXPECT_EQ(body["model"], "m1");
  ASSERT_EQ(body["messages"].size(), 4u);
  EXPECT_EQ(body["messages"][0]["role"], "system");
  EXPECT_EQ(body["messages"][0]["content"], "You review.");
  EXPECT_EQ(body["messages"][2]["role"], "assistant");
  EXPECT_EQ(body["max_tokens"], 77);
  EXPECT_EQ(body["temperature"], 0.5);
  EXPECT_EQ(body["stop"], json::array({"END"}));
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
}

TEST(wire_format, anthropic_request_uses_top_level_system_and_stop_sequences) {
  auto r = sample(false);
  r.temperature = -1;
  auto body = json::parse(build_request_body(api_kind::anthropic, r));
  EXPECT_EQ(body["system"], "You review.");
  ASSERT_EQ(body["messages"].size(), 3u);
  EXPECT_EQ(body["messages"][0]["role"], "user");
  EXPECT_EQ(body["stop_sequences"], json::array({"END"}));
  EXPECT_FALSE(body.contains("temperature"));
  EXPECT_FALSE(body.contains("stream"));
}

TEST(wire_format, consecutive_turns_of_one_role_are_merged) {
  base::llm_request r;
  r.model = "m";
  r.system = "sys";
  r.messages = {{"user", "a"}, {"user", "b"}, {"assistant", ""}, {"assistant", "c"}, {"user", "d"}};
  auto oa = json::parse(build_request_body(api_kind::openai, r));
  ASSERT_EQ(oa["messages"].size(), 4u);
  EXPECT_EQ(oa["messages"][1]["content"], "a\n\nb");
  EXPECT_EQ(oa["messages"][2]["content"], "c");
  auto an = json::parse(build_request_body(api_kind::anthropic, r));
  ASSERT_EQ(an["messages"].size(), 3u);
  EXPECT_EQ(an["messages"][0]["content"], "a\n\nb");
  EXPECT_EQ(an["messages"][1]["role"], "assistant");
  EXPECT_EQ(an["messages"][1]["content"], "c");
  EXPECT_EQ(an["messages"][2]["content"], "d");
}

TEST(wire_format, request_text_is_escaped_as_json_and_utf8_passes_through) {
  base::llm_request r;
  r.model = "m\"1";
  r.system = std::string("tab\t nl\n cr\r bs\\ q\" bell\x07 nul") + '\0' + " end";
  r.messages = {{"user", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82 </script>"}};
  r.max_tokens = 5;
  r.temperature = 0.1;
  r.stop = {"\n\nHuman:"};
  for (auto kind : {api_kind::openai, api_kind::anthropic}) {
    auto text = build_request_body(kind, r);
    auto body = json::parse(text);
    EXPECT_EQ(body["model"], r.model);
    const auto& sys = kind == api_kind::openai ? body["messages"][0]["content"] : body["system"];
    EXPECT_EQ(sys, r.system);
    EXPECT_EQ(body["messages"].back()["content"], r.messages[0].content);
    EXPECT_EQ(body["temperature"], 0.1);
    EXPECT_EQ(body[kind == api_kind::openai ? "stop" : "stop_sequences"], json::array({"\n\nHuman:"}));
    // Control characters never appear raw in the body.
    for (char c : text) EXPECT_GE(static_cast<unsigned char>(c), 0x20u);
  }
}

TEST(wire_format, invalid_utf8_in_a_prompt_becomes_the_replacement_character) {
  base::llm_request r;
  r.model = "m";
  // A stray continuation byte, a truncated sequence, an overlong form and a surrogate.
  r.messages = {{"user", std::string("a\x80" "b\xe2\x82" "c\xc0\xaf" "d\xed\xa0\x80" "e")}};
  auto body = json::parse(build_request_body(api_kind::openai, r));
  const std::string rep = "\xef\xbf\xbd";
  EXPECT_EQ(body["messages"][0]["content"],
            "a" + rep + "b" + rep + rep + "c" + rep + rep + "d" + rep + rep + rep + "e");
}

TEST(wire_format, parses_both_response_shapes) {
  auto o = parse_response(api_kind::openai,
                          R"({"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
                              "usage":{"prompt_tokens":3,"completion_tokens":1}})",
                          "p");
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->text, "hi");
  EXPECT_EQ(o->finish_reason, "stop");
  EXPECT_EQ(o->usage.tokens_in, 3);
  auto a = parse_response(api_kind::anthropic,
                          R"({"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],
                              "stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":2}})",
                          "p");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->text, "ab");
  EXPECT_EQ(a->usage.tokens_out, 2);
}

TEST(wire_format, malformed_bodies_are_errors_that_name_the_provider) {
  for (auto body : {"", "{", "[]", R"({"choices":[]})", R"({"choices":[{"message":{}}]})", R"({"choices":"x"})"}) {
    auto r = parse_response(api_kind::openai, body, "provider 'x'");
    ASSERT_FALSE(r) << body;
    EXPECT_EQ(r.error().code, base::errc::provider_error);
    EXPECT_NE(r.error().message.find("provider 'x'"), std::string::npos);
  }
  EXPECT_FALSE(parse_response(api_kind::anthropic, R"({"content":5})", "p"));
}

TEST(wire_format, replies_are_read_whatever_the_member_order_and_extra_fields) {
  // A real OpenAI reply: usage before choices, finish_reason before message,
  // nested details, a second choice (ignored) and null members.
  auto o = parse_response(api_kind::openai,
                          R"({"id":"c1","object":"chat.completion","usage":{"prompt_tokens":12,
                              "completion_tokens":4.0,"prompt_tokens_details":{"cached_tokens":9,"x":[1,{"y":2}]}},
                              "choices":[{"index":0,"finish_reason":"length","logprobs":null,
                                          "message":{"role":"assistant","refusal":null,"content":"first",
                                                     "extra":{"content":"not this","deeper":{"a":[{"b":"c"}]}}}},
                                         {"index":1,"message":{"content":"second"},"finish_reason":"stop"}],
                              "system_fingerprint":null})",
                          "p");
  ASSERT_TRUE(o) << o.error().message;
  EXPECT_EQ(o->text, "first");
  EXPECT_EQ(o->finish_reason, "length");
  EXPECT_EQ(o->usage.tokens_in, 12);
  EXPECT_EQ(o->usage.tokens_out, 4);
  // A null content is a reply without text (a tool call, say), not an error.
  auto n = parse_response(api_kind::openai, R"({"choices":[{"message":{"content":null}}]})", "p");
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(n->text, "");
  EXPECT_EQ(n->usage.tokens_in, 0);
  // Anthropic: "text" before "type", tool_use blocks and non-object blocks skipped.
  auto a = parse_response(api_kind::anthropic,
                          R"({"usage":{"output_tokens":7,"input_tokens":3},"content":[
                              {"text":"a","type":"text"},{"type":"tool_use","text":"no","input":{"text":"no"}},
                              "stray",{"type":"text","text":"b","citations":[{"text":"no"}]}],
                              "stop_reason":"end_turn","type":"message"})",
                          "p");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->text, "ab");
  EXPECT_EQ(a->finish_reason, "end_turn");
  EXPECT_EQ(a->usage.tokens_in, 3);
  EXPECT_EQ(a->usage.tokens_out, 7);
}

TEST(wire_format, replies_of_the_wrong_shape_say_what_is_wrong) {
  auto why = [](api_kind kind, const char* body) {
    auto r = parse_response(kind, body, "provider 'x'");
    EXPECT_FALSE(r) << body;
    return r ? std::string() : r.error().message;
  };
  EXPECT_EQ(why(api_kind::openai, R"({"id":1})"), "provider 'x': malformed response: no choices");
  EXPECT_EQ(why(api_kind::openai, R"({"choices":[7]})"),
            "provider 'x': malformed response: choices[0] is not an object");
  EXPECT_EQ(why(api_kind::openai, R"({"choices":[{"message":"hi"}]})"),
            "provider 'x': malformed response: choices[0].message is not an object");
  EXPECT_EQ(why(api_kind::openai, R"({"choices":[{"text":"hi"}]})"),
            "provider 'x': malformed response: choices[0] has no message object");
  EXPECT_EQ(why(api_kind::openai, R"({"choices":[{"message":{"content":"a"}}],"usage":{"prompt_tokens":"3"}})"),
            "provider 'x': malformed response: usage.prompt_tokens is not a number");
  EXPECT_EQ(why(api_kind::anthropic, R"({"type":"message"})"), "provider 'x': malformed response: no content array");
  EXPECT_EQ(why(api_kind::anthropic, R"({"content":[],"usage":{"input_tokens":null}})"),
            "provider 'x': malformed response: usage.input_tokens is not a number");
  // Valid JSON followed by more, and a body cut short, are not replies either.
  EXPECT_NE(why(api_kind::openai, R"({"choices":[{"message":{"content":"a"}}]} {})").find("not a JSON object"),
            std::string::npos);
  EXPECT_NE(why(api_kind::anthropic, R"({"content":[{"type":"text","text":"a")").find("not a JSON object"),
            std::string::npos);
}

TEST(wire_format, error_messages_come_out_of_both_error_shapes) {
  EXPECT_EQ(error_message_from_body(R"({"error":{"message":"Incorrect API key","type":"invalid_request_error"}})"),
            "invalid_request_error: Incorrect API key");
  EXPECT_EQ(error_message_from_body(
                R"({"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}})"),
            "authentication_error: invalid x-api-key");
  EXPECT_EQ(error_message_from_body("<html>bad gateway</html>"), "<html>bad gateway</html>");
}

TEST(wire_format, openai_stream_accumulates_text_and_final_usage) {
  stream_decoder d(api_kind::openai, "p");
  std::string token, all;
  for (auto data : {R"({"choices":[{"delta":{"role":"assistant","content":""}}]})",
                    R"({"choices":[{"delta":{"content":"Hel"}}]})", R"({"choices":[{"delta":{"content":"lo"}}]})",
                    R"({"choices":[{"delta":{},"finish_reason":"stop"}]})",
                    R"({"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}})", "[DONE]"}) {
    ASSERT_TRUE(d.feed({"", data}, token));
    all += token;
  }
  EXPECT_TRUE(d.complete());
  auto r = d.take();
  EXPECT_EQ(all, "Hello");
  EXPECT_EQ(r.text, "Hello");
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.usage.tokens_in, 4);
  EXPECT_EQ(r.usage.tokens_out, 2);
}

TEST(wire_format, anthropic_stream_accumulates_text_and_usage) {
  stream_decoder d(api_kind::anthropic, "p");
  std::string token, all;
  std::vector<sse_event> events = {
      {"message_start", R"({"type":"message_start","message":{"usage":{"input_tokens":9,"output_tokens":1}}})"},
      {"content_block_start", R"({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})"},
      {"ping", R"({"type":"ping"})"},
      {"content_block_delta", R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}})"},
      {"content_block_stop", R"({"type":"content_block_stop","index":0})"},
      {"message_delta", R"({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}})"},
      {"message_stop", R"({"type":"message_stop"})"}};
  for (const auto& e : events) {
    ASSERT_TRUE(d.feed(e, token));
    all += token;
  }
  EXPECT_TRUE(d.complete());
  auto r = d.take();
  EXPECT_EQ(all, "Hi");
  EXPECT_EQ(r.finish_reason, "end_turn");
  EXPECT_EQ(r.usage.tokens_in, 9);
  EXPECT_EQ(r.usage.tokens_out, 3);
}

TEST(wire_format, stream_errors_and_garbage_are_clean_errors) {
  std::string token;
  stream_decoder o(api_kind::openai, "p");
  EXPECT_FALSE(o.feed({"", "{not json"}, token));
  stream_decoder a(api_kind::anthropic, "p");
  auto r = a.feed({"error", R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})"}, token);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("Overloaded"), std::string::npos);
  stream_decoder b(api_kind::anthropic, "p");
  EXPECT_FALSE(b.feed({"content_block_delta", R"({"type":"content_block_delta"})"}, token));
}

/// Valid bodies and streams of both APIs, then cut and corrupted at random:
/// every outcome must be a value or an error, never a crash (run under ASan).
TEST(wire_format, random_garbage_never_crashes) {
  const std::vector<std::pair<api_kind, std::string>> bodies = {
      {api_kind::openai,
       R"({"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}})"},
      {api_kind::anthropic,
       R"({"content":[{"type":"text","text":"a"}],"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":2}})"},
  };
  const std::vector<std::pair<api_kind, std::string>> streams = {
      {api_kind::openai,
       "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":"
       "\"stop\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}\n\ndata: "
       "[DONE]\n\n"},
      {api_kind::anthropic,
       "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9}}}\n\n"
       "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\","
       "\"text\":\"Hi\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
       "\"end_turn\"},\"usage\":{\"output_tokens\":3}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"},
  };
  std::mt19937 rng(99);
  const std::string alphabet = "{}[]\":,0123456789abcdefnulltrue \n\\";
  auto mutate = [&](std::string s) {
    std::uniform_int_distribution<int> op(0, 3);
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      std::size_t pos = rng() % s.size();
      switch (op(rng)) {
        case 0: s.resize(pos); break;                                       // truncate
        case 1: s[pos] = alphabet[rng() % alphabet.size()]; break;          // flip
        case 2: s.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;  // insert
        default: s.erase(pos, 1 + rng() % 8); break;                        // delete
      }
    }
    return s;
  };
  int ok = 0, errors = 0;
  for (int i = 0; i < 3000; ++i) {
    const auto& [kind, body] = bodies[static_cast<std::size_t>(i) % bodies.size()];
    auto r = parse_response(kind, mutate(body), "p");
    (r ? ok : errors)++;
    (void)error_message_from_body(mutate(body));
    const auto& [skind, stream] = streams[static_cast<std::size_t>(i) % streams.size()];
    stream_decoder d(skind, "p");
    sse_parser parser;
    std::string token;
    auto text = mutate(stream);
    (void)parser.feed(text, [&](const sse_event& ev) { return static_cast<bool>(d.feed(ev, token)); });
    (void)d.complete();
    (void)d.take();
  }
  EXPECT_GT(ok + errors, 0);
  EXPECT_GT(errors, 100);
}

TEST(wire_format, redact_removes_every_copy_of_the_secret) {
  EXPECT_EQ(redact("key sk-1 and sk-1 again", "sk-1"), "key [redacted] and [redacted] again");
  EXPECT_EQ(redact("nothing", ""), "nothing");
}

}  // namespace
}  // namespace troupe::protocols::llm
