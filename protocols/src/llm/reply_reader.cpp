#include "reply_reader.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "json_scan.hpp"

namespace troupe::protocols::llm::detail {
namespace {

/// Scanner events (json_scan.hpp) in, the reply's fields out. Tracks where each value sits (the key or
/// element index of every container entered, four levels deep is all a reply
/// needs) and keeps the values at the few paths that matter.
class reader {
 public:
  explicit reader(api_kind kind)
      : kind_(kind),
        list_key_(kind == api_kind::openai ? "choices" : "content"),
        in_key_(kind == api_kind::openai ? "prompt_tokens" : "input_tokens"),
        out_key_(kind == api_kind::openai ? "completion_tokens" : "output_tokens") {}

  bool null() { return begin_value(kind_t::other); }
  bool boolean(bool) { return begin_value(kind_t::other); }
  bool number_integer(std::int64_t v) { return number(v); }
  bool number_unsigned(std::uint64_t v) {
    return number(count_of(v));
  }
  bool number_float(double v) {
    return number(count_of(v));  // a count written as 12.0 is still a count
  }

  bool string(std::string& v) {
    if (!begin_value(kind_t::string)) return false;
    if (kind_ == api_kind::openai) {
      if (at_message_field("content")) text_ = std::move(v);
      else if (at_choice_field("finish_reason")) finish_reason_ = std::move(v);
    } else if (depth_ == 1 && key(1) == "stop_reason") {
      finish_reason_ = std::move(v);
    } else if (depth_ == 3 && in_content_block()) {
      if (key(3) == "type") block_is_text_ = v == "text";
      else if (key(3) == "text") block_text_ = std::move(v);
    }
    return true;
  }

  bool key(std::string& k) {
    if (depth_ <= max_depth) frames_[depth_].key = std::move(k);
    return true;
  }

  bool start_object() {
    if (!begin_value(kind_t::object)) return false;
    if (in_content_block() && depth_ == 2) {
      block_is_text_ = false;
      block_text_.clear();
    }
    return enter(false);
  }
  bool end_object() {
    if (kind_ == api_kind::anthropic && depth_ == 3 && in_content_array(2) && block_is_text_) text_ += block_text_;
    --depth_;
    return true;
  }
  bool start_array() {
    if (!begin_value(kind_t::array)) return false;
    return enter(true);
  }
  bool end_array() {
    --depth_;
    return true;
  }
  void not_json() { not_json_ = true; }

  /// The outcome once the parser is through (or stopped).
  base::result<base::llm_response> result(std::string_view body, std::string_view where) {
    auto wrong = [&](const std::string& what) { return base::fail(malformed(where, what)); };
    if (not_json_ || !top_is_object_) return wrong("body is not a JSON object: " + clip(body, 80));
    if (problem_) return wrong(*problem_);
    if (kind_ == api_kind::openai) {
      if (!saw_list_ || !saw_first_) return wrong("no choices");
      if (!saw_message_) return wrong("choices[0] has no message object");
      if (!saw_content_) return wrong("choices[0].message has no content");
    } else if (!saw_list_) {
      return wrong("no content array");
    }
    base::llm_response out;
    out.text = std::move(text_);
    out.finish_reason = std::move(finish_reason_);
    out.usage.tokens_in = tokens_in_;
    out.usage.tokens_out = tokens_out_;
    return out;
  }

 private:
  enum class kind_t { object, array, string, number, other };
  static constexpr int max_depth = 4;
  struct frame {
    bool array = false;
    std::size_t count = 0;  ///< elements begun (arrays)
    std::string key;        ///< the current member's key (objects)
  };

  const std::string& key(int depth) const { return frames_[static_cast<std::size_t>(depth)].key; }
  /// The element index of the value now open in the array at `depth`.
  std::size_t index(int depth) const { return frames_[static_cast<std::size_t>(depth)].count - 1; }
  bool is_array(int depth) const { return frames_[static_cast<std::size_t>(depth)].array; }

  /// The list of the reply ("choices" or "content") is the container at `depth`.
  bool in_content_array(int depth) const {
    return depth == 2 && is_array(2) && !is_array(1) && key(1) == list_key_;
  }
  /// openai: a member of choices[0].
  bool at_choice_field(const char* name) const {
    return depth_ == 3 && in_content_array(2) && index(2) == 0 && !is_array(3) && key(3) == name;
  }
  /// openai: a member of choices[0].message.
  bool at_message_field(const char* name) const {
    return depth_ == 4 && in_content_array(2) && index(2) == 0 && !is_array(3) && key(3) == "message" &&
           !is_array(4) && key(4) == name;
  }
  /// anthropic: inside an element of the content array (depth 2) or one of its members (3).
  bool in_content_block() const {
    return kind_ == api_kind::anthropic && depth_ >= 2 && in_content_array(2) &&
           (depth_ == 2 || !is_array(3));
  }

  bool enter(bool array) {
    ++depth_;
    if (depth_ <= max_depth) frames_[static_cast<std::size_t>(depth_)] = frame{array, 0, {}};
    return true;
  }

  /// Bookkeeping and shape checks for a value about to start at the current depth.
  bool begin_value(kind_t t) {
    if (depth_ == 0) {
      top_is_object_ = t == kind_t::object;
      return top_is_object_;  // anything else stops the parse: not a reply
    }
    if (depth_ <= max_depth && is_array(depth_)) ++frames_[static_cast<std::size_t>(depth_)].count;
    if (depth_ == 1 && key(1) == list_key_) {
      saw_list_ = t == kind_t::array;
      if (!saw_list_) return fail(std::string(list_key_) + " is not an array");
    }
    if (kind_ == api_kind::openai) {
      if (depth_ == 2 && in_content_array(2) && index(2) == 0) {
        saw_first_ = true;
        if (t != kind_t::object) return fail("choices[0] is not an object");
      }
      if (at_choice_field("message")) {
        saw_message_ = t == kind_t::object;
        if (!saw_message_) return fail("choices[0].message is not an object");
      }
      if (at_message_field("content")) saw_content_ = true;  // a string, or null for no text
    }
    if (depth_ == 2 && !is_array(1) && key(1) == "usage" && !is_array(2)) {
      const auto& k = key(2);
      bool in = k == in_key_;
      bool out = k == out_key_;
      if ((in || out) && t != kind_t::number) return fail("usage." + k + " is not a number");
      counting_ = in ? &tokens_in_ : out ? &tokens_out_ : nullptr;
    }
    return true;
  }

  bool number(std::int64_t v) {
    counting_ = nullptr;
    if (!begin_value(kind_t::number)) return false;
    if (counting_ != nullptr) *counting_ = v;
    return true;
  }
  bool fail(std::string what) {
    problem_ = std::move(what);
    return false;
  }

  api_kind kind_;
  const char* list_key_;  ///< the reply's list: "choices" or "content"
  const char* in_key_;    ///< usage's input count
  const char* out_key_;   ///< usage's output count
  int depth_ = 0;  ///< containers entered
  std::array<frame, max_depth + 1> frames_{};  ///< [1..max_depth]
  bool not_json_ = false, top_is_object_ = false;
  bool saw_list_ = false, saw_first_ = false, saw_message_ = false, saw_content_ = false;
  std::optional<std::string> problem_;
  std::string text_, finish_reason_, block_text_;
  bool block_is_text_ = false;
  std::int64_t tokens_in_ = 0, tokens_out_ = 0;
  std::int64_t* counting_ = nullptr;  ///< the usage count the next number is
};

}  // namespace

std::string clip(std::string_view s, std::size_t n) {
  return s.size() <= n ? std::string(s) : std::string(s.substr(0, n)) + "...";
}

base::error malformed(std::string_view where, const std::string& what) {
  return base::error{base::errc::provider_error, std::string(where) + ": malformed response: " + what, true};
}

base::result<base::llm_response> read_reply(api_kind kind, std::string_view body, std::string_view where) {
  reader r(kind);
  if (scan_json(body, r).status == scan_status::syntax) r.not_json();
  return r.result(body, where);
}

}  // namespace troupe::protocols::llm::detail
