#pragma once
/// Wire formats of the provider APIs (see docs/providers.md): request bodies,
/// non-streaming responses, streaming events and error bodies. Pure functions on
/// strings, no I/O, so they are unit-tested on their own.
#include <string>
#include <string_view>

#include "troupe/base/llm_port.hpp"
#include "troupe/base/result.hpp"
#include "troupe/protocols/llm/sse_parser.hpp"

namespace troupe::protocols::llm {

/// The HTTP dialect a provider speaks.
enum class api_kind { openai, anthropic };

/// JSON body of POST /chat/completions (openai) or /v1/messages (anthropic).
/// The system prompt becomes the first "system" message (openai) or the
/// top-level "system" field (anthropic); the conversation keeps its roles.
std::string build_request_body(api_kind kind, const base::llm_request& request);

/// Parses a complete 2xx body. A body that is not JSON or lacks the expected
/// fields yields errc::provider_error naming `where` (e.g. "provider 'gpt'").
base::result<base::llm_response> parse_response(api_kind kind, std::string_view body,
                                                std::string_view where);

/// The human message inside an error body of either API
/// ({"error":{"message":...}} or {"type":"error","error":{"type":..,"message":..}});
/// falls back to the first 200 bytes of the body when it is not such JSON.
std::string error_message_from_body(std::string_view body);

/// Rough token estimate of a request (prompt bytes / 4 plus max_tokens), used to
/// take tokens from the per-minute bucket before the call.
std::int64_t estimate_tokens(const base::llm_request& request);

/// Replaces every occurrence of `secret` in `text` with "[redacted]".
std::string redact(std::string text, std::string_view secret);

/// Accumulates a streamed response from SSE events. Not thread-safe.
class stream_decoder {
 public:
  explicit stream_decoder(api_kind kind, std::string where)
      : kind_(kind), where_(std::move(where)) {}

  /// Applies one event. Text deltas are appended to the response and also
  /// returned in `token` (empty when the event carries no text). A malformed event
  /// or an error event yields errc::provider_error.
  base::result<void> feed(const sse_event& event, std::string& token);
  /// True once the terminal event arrived ([DONE] or message_stop).
  bool complete() const noexcept { return complete_; }
  /// The accumulated response (text, usage, finish reason).
  base::llm_response take() { return std::move(response_); }

 private:
  base::result<void> feed_openai(const sse_event& event, std::string& token);
  base::result<void> feed_anthropic(const sse_event& event, std::string& token);

  api_kind kind_;
  std::string where_;
  base::llm_response response_;
  bool complete_ = false;
};

}  // namespace troupe::protocols::llm
