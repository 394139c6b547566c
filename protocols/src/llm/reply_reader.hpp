#pragma once
/// Private to troupe_llm: reads a whole (non-streamed) reply body in one pass of
/// json_scan.hpp's reader, keeping only the fields a call needs, without building a
/// JSON tree. parse_response (wire_format.hpp) is its public face.
#include <cstdint>
#include <string>
#include <string_view>

#include "troupe/base/llm_port.hpp"
#include "troupe/base/result.hpp"
#include "troupe/protocols/llm/wire_format.hpp"

namespace troupe::protocols::llm::detail {

/// A token count from a JSON number: past int64 is its largest value; a fractional
/// count is cut to a whole one, and one out of range becomes 0 (never undefined).
inline std::int64_t count_of(std::uint64_t v) {
  return v > static_cast<std::uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<std::int64_t>(v);
}
inline std::int64_t count_of(double v) { return v >= -9.2e18 && v <= 9.2e18 ? static_cast<std::int64_t>(v) : 0; }

/// The first `n` bytes of `s`, with "..." when cut.
std::string clip(std::string_view s, std::size_t n = 200);

/// errc::provider_error "<where>: malformed response: <what>". Not retried by the
/// client (a deterministic server would repeat it), but retryable for the task's step.
base::error malformed(std::string_view where, const std::string& what);

/// The reply's text, finish reason and token counts; errc::provider_error
/// (retryable, "<where>: malformed response: ...") when the body is not JSON or
/// lacks what its kind must carry (OpenAI: choices[0].message.content; Anthropic:
/// a content array).
base::result<base::llm_response> read_reply(api_kind kind, std::string_view body, std::string_view where);

}  // namespace troupe::protocols::llm::detail
