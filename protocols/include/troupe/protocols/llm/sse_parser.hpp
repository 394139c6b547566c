#pragma once
/// Incremental parser for Server-Sent Events (text/event-stream), as used by the
/// streaming modes of the OpenAI and Anthropic APIs. Bytes may arrive split at any
/// point (inside a line, inside a UTF-8 sequence); complete events are handed out
/// as soon as their terminating blank line has been seen.
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace troupe::protocols::llm {

/// One dispatched event: the `event:` field (empty when absent) and the `data:`
/// lines joined with '\n'.
struct sse_event {
  std::string event;
  std::string data;
};

/// Not thread-safe; one parser per response stream.
class sse_parser {
 public:
  /// Called for every complete event; return false to stop parsing (feed then
  /// returns false too).
  using event_fn = std::function<bool(const sse_event&)>;

  /// Feeds the next bytes of the stream. Returns false when the callback asked
  /// to stop or the buffered partial line exceeds max_line_bytes.
  bool feed(std::string_view bytes, const event_fn& on_event);
  /// True when bytes of an unfinished event are still buffered.
  bool has_partial() const noexcept { return !line_.empty() || pending_data_; }

  std::size_t max_line_bytes = 8u << 20;

 private:
  bool line_done(const event_fn& on_event);

  std::string line_;
  sse_event current_;
  bool pending_data_ = false;
  bool last_was_cr_ = false;
};

}  // namespace troupe::protocols::llm
