#include "troupe/protocols/llm/sse_parser.hpp"

namespace troupe::protocols::llm {

bool sse_parser::feed(std::string_view bytes, const event_fn& on_event) {
  for (char c : bytes) {
    // Lines end with "\r\n", "\n" or "\r"; a "\n" right after "\r" belongs to the
    // same line break, which may have been split across two reads.
    if (c == '\n' && last_was_cr_) {
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = (c == '\r');
    if (c == '\r' || c == '\n') {
      if (!line_done(on_event)) return false;
      continue;
    }
    line_.push_back(c);
    if (line_.size() > max_line_bytes) return false;
  }
  return true;
}

bool sse_parser::line_done(const event_fn& on_event) {
  if (line_.empty()) {
    // A blank line dispatches the event; events without data are ignored (spec).
    bool keep_going = true;
    if (pending_data_) keep_going = on_event(current_);
    current_ = sse_event{};
    pending_data_ = false;
    return keep_going;
  }
  std::string_view line{line_};
  if (line.front() == ':') {  // comment / keep-alive
    line_.clear();
    return true;
  }
  auto colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (pending_data_) current_.data.push_back('\n');
    current_.data.append(value);
    pending_data_ = true;
  } else if (field == "event") {
    current_.event.assign(value);
  }  // "id" and "retry" are irrelevant for one-shot completions
  line_.clear();
  return true;
}

}  // namespace troupe::protocols::llm
