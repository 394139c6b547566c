#pragma once
/// Private to troupe_llm: what one HTTP exchange means for the call (its result,
/// whether to retry) and for the provider's circuit breaker. Pure; unit-tested.
#include <cstdint>
#include <optional>
#include <string>

#include "http_channel.hpp"
#include "troupe/base/llm_port.hpp"
#include "troupe/protocols/llm/wire_format.hpp"

namespace troupe::protocols::llm::detail {

/// What an attempt says about the provider's availability.
enum class health {
  ok,       ///< it answered (even with a 4xx or garbage): closes the breaker
  failure,  ///< unreachable, timed out or 5xx: counts towards opening it
  neutral,  ///< 429, 408, a cut body: says nothing either way
};

struct verdict {
  base::result<base::llm_response> result;
  bool retry = false;  ///< the client may try again (if attempts and time remain)
  health h = health::ok;
  std::optional<std::int64_t> retry_after_ms;  ///< the provider's hint
};

/// Classifies a finished exchange. For a streamed call, `decoder` holds what the
/// stream delivered and `stream_error` the first bad event (if any); both are
/// ignored otherwise. `where` prefixes messages ("provider 'x'").
verdict classify(api_kind kind, const std::string& where, bool stream, http_outcome& out,
                 stream_decoder* decoder, const std::optional<base::error>& stream_error);

}  // namespace troupe::protocols::llm::detail
