// The reply scanner (json_scan.hpp) against nlohmann's parser: the same verdict on
// every input, and for accepted ones the same events with the same values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "corrupt.hpp"
#include "json_scan.hpp"

namespace troupe::protocols::llm::detail {
namespace {

using json = nlohmann::json;

/// One line per event, numbers by kind and exact value.
std::string number_text(double d) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &d, sizeof bits);
  return "f" + std::to_string(bits);
}

struct recorder {
  std::vector<std::string> events;
  bool null() { return add("null"); }
  bool boolean(bool b) { return add(b ? "true" : "false"); }
  bool number_integer(std::int64_t v) { return add("i" + std::to_string(v)); }
  bool number_unsigned(std::uint64_t v) { return add("u" + std::to_string(v)); }
  bool number_float(double d) { return add(number_text(d)); }
  bool string(std::string& s) { return add("s:" + s); }
  bool key(std::string& s) { return add("k:" + s); }
  bool start_object() { return add("{"); }
  bool end_object() { return add("}"); }
  bool start_array() { return add("["); }
  bool end_array() { return add("]"); }
  bool add(std::string e) {
    events.push_back(std::move(e));
    return true;
  }
};

struct nlohmann_recorder final : nlohmann::json_sax<json> {
  recorder r;
  bool null() override { return r.null(); }
  bool boolean(bool b) override { return r.boolean(b); }
  bool number_integer(number_integer_t v) override { return r.number_integer(v); }
  bool number_unsigned(number_unsigned_t v) override { return r.number_unsigned(v); }
  bool number_float(number_float_t v, const string_t&) override { return r.number_float(v); }
  bool string(string_t& s) override { return r.string(s); }
  bool binary(binary_t&) override { return r.add("binary"); }
  bool key(string_t& s) override { return r.key(s); }
  bool start_object(std::size_t) override { return r.start_object(); }
  bool end_object() override { return r.end_object(); }
  bool start_array(std::size_t) override { return r.start_array(); }
  bool end_array() override { return r.end_array(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }
};

/// Compares the two readers on `text`; returns whether it is JSON.
bool same_as_nlohmann(const std::string& text) {
  nlohmann_recorder theirs;
  const bool their_ok = json::sax_parse(text, &theirs);
  recorder ours;
  const auto outcome = scan_json(text, ours);
  EXPECT_NE(outcome.status, scan_status::stopped);
  const bool our_ok = outcome.status == scan_status::ok;
  EXPECT_EQ(our_ok, their_ok) << "verdicts differ on: " << text;
  if (our_ok && their_ok) {
    EXPECT_EQ(ours.events, theirs.r.events) << "events differ on: " << text;
  }
  return their_ok;
}

TEST(json_scan, crafted_inputs_get_nlohmanns_verdict_and_events) {
  const std::vector<std::string> inputs = {
      // values
      "{}", "[]", "null", "true", "false", "0", "-0", "1", "-1", "\"\"", "\"a\"", " \t\r\n{ } \n",
      R"({"a":1,"b":[true,false,null],"c":{"d":"e"}})", "[[[[[[[[[[1]]]]]]]]]]", "[1,[2,[3,{\"x\":[]}]]]",
      // numbers
      "18446744073709551615", "18446744073709551616", "9223372036854775807", "-9223372036854775808",
      "-9223372036854775809", "1.5", "-1.5e3", "1E+2", "1e-2", "0.1", "123456789012345678901234567890",
      "1e308", "1e309", "-1e309", "1e-320", "1e-400", "-1e-400", "0e0", "0.0000000000000000000000001e-380",
      "1.7976931348623157e308", "1.7976931348623159e308", "4.9e-324", "2.4e-324", "1e99999999999999999999",
      "1e-99999999999999999999", "01", "-", "-a", "1.", ".1", "1e", "1e+", "+1", "1.e1", "0x10", "1_000", "--1",
      "NaN", "Infinity", "1 2",
      // strings and escapes
      R"("\"\\\/\b\f\n\r\t")", R"("\u0041\u00e9\u20ac")", R"("\ud83d\ude00")", R"("\uD83D\uDE00")",
      R"("\ud83d")", R"("\ude00")", R"("\ud83d\u0041")", R"("\ud83dx")", R"("\u12")", R"("\u12g4")", R"("\x")",
      R"("\")", "\"a\tb\"", "\"a\nb\"", "\"\x01\"", "\"\x7f\"",
      // UTF-8
      "\"\xc3\xa9\"", "\"\xe2\x82\xac\"", "\"\xf0\x9f\x98\x80\"", "\"\xc0\xaf\"", "\"\xc1\xbf\"", "\"\xe0\x80\xaf\"",
      "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xff\"", "\"\x80\"", "\"\xc3\"",
      "\"\xe2\x82\"", "\"\xf0\x9f\x98\"", "\xef\xbb\xbf{}", "\xef\xbb{}",
      // structure
      "", " ", "{", "}", "[", "]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "[,1]", "{,}", "{1:2}", "{\"a\" 1}",
      "[1 2]", "{\"a\":1 \"b\":2}", "{}}", "[]]", "{} x", "[\"a\",", "tru", "nul", "falsey", "nulll",
      // replies
      R"({"id":"c1","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}})",
      R"({"content":[{"type":"text","text":"a"}],"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":2}})",
  };
  int accepted = 0;
  for (const auto& text : inputs) accepted += same_as_nlohmann(text) ? 1 : 0;
  EXPECT_GT(accepted, 30);
  EXPECT_LT(accepted, static_cast<int>(inputs.size()) - 30);
}

TEST(json_scan, cut_and_corrupted_replies_get_nlohmanns_verdict_and_events) {
  const std::vector<std::string> bodies = {
      R"({"id":"c1","choices":[{"index":0,"message":{"role":"assistant","content":"h\u00e9 \"q\" \ud83d\ude00 \u20ac"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total":4.5e1}})",
      "{\"content\":[{\"type\":\"text\",\"text\":\"caf\xc3\xa9 \xe2\x82\xac\"}],\"stop_reason\":null,\"usage\":{\"input_tokens\":-5,\"output_tokens\":2.0}}",
  };
  std::mt19937 rng(7);
  const std::string alphabet = "{}[]\":,.-+eE0123456789abcdefnulltrue \n\t\\u\x01\x80\xc3\xed\xf0";
  int accepted = 0, refused = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string s = bodies[static_cast<std::size_t>(i) % bodies.size()];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) s = llm::testing::corrupt(std::move(s), rng, alphabet, 4);
    (same_as_nlohmann(s) ? accepted : refused)++;
    if (HasFailure()) break;  // the first difference says enough
  }
  // Both outcomes are exercised in numbers.
  EXPECT_GT(accepted, 1000);
  EXPECT_GT(refused, 1000);
}

TEST(json_scan, a_handler_that_says_stop_stops_the_scan_there) {
  struct stop_at_key : recorder {
    bool key(std::string& s) {
      recorder::key(s);
      return s != "b";
    }
  } h;
  const auto out = scan_json(R"({"a":1,"b":2,"c":3})", h);
  EXPECT_EQ(out.status, scan_status::stopped);
  EXPECT_EQ(h.events, (std::vector<std::string>{"{", "k:a", "u1", "k:b"}));
  recorder r;
  const auto bad = scan_json(R"({"a":1,"b":})", r);
  EXPECT_EQ(bad.status, scan_status::syntax);
  EXPECT_EQ(bad.offset, 11u);  // at the closing brace where a value belongs
}

}  // namespace
}  // namespace troupe::protocols::llm::detail
