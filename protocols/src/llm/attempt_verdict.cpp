#include "attempt_verdict.hpp"

#include "troupe/protocols/llm/retry_policy.hpp"

namespace troupe::protocols::llm::detail {
namespace {

using base::errc;

verdict failed(errc code, std::string msg, bool retryable, bool retry, health h) {
  return verdict{base::fail(code, std::move(msg), retryable), retry, h, std::nullopt};
}

}  // namespace

verdict classify(api_kind kind, const std::string& where, bool stream, http_outcome& out,
                 stream_decoder* decoder, const std::optional<base::error>& stream_error) {
  if (out.stopped && stream_error) return verdict{base::fail(*stream_error), false, health::ok, std::nullopt};
  if (out.ec) {
    if (out.timed_out) {
      const std::string why = out.idle_ms > 0 ? "no bytes from the provider for " + std::to_string(out.idle_ms) +
                                                    " ms (read_timeout_ms)"
                                              : "attempt timed out";
      return failed(errc::timeout, where + ": " + why + " during " + out.stage, true, true, health::failure);
    }
    // The provider answered, then the connection broke: retry (unless tokens
    // were already forwarded; the caller checks) but do not blame availability.
    if (out.got_header && out.status / 100 == 2)
      return failed(errc::provider_error,
                    where + ": malformed response: " + (stream ? "stream" : "body") + " truncated (" +
                        out.ec.message() + ")",
                    true, true, health::neutral);
    if (out.got_header)
      return failed(errc::provider_error,
                    where + " returned HTTP " + std::to_string(out.status) + " and then the connection broke (" +
                        out.ec.message() + ")",
                    true, true, out.status >= 500 ? health::failure : health::neutral);
    return failed(errc::unavailable, where + ": " + out.stage + " failed: " + out.ec.message(), true, true,
                  health::failure);
  }
  if (out.status / 100 == 2) {
    if (!stream) return verdict{parse_response(kind, out.body, where), false, health::ok, std::nullopt};
    if (stream_error) return verdict{base::fail(*stream_error), false, health::ok, std::nullopt};
    // A complete HTTP body that ends before [DONE] / message_stop: the server
    // closed the stream early on purpose; a repeat would likely do the same.
    if (!decoder || !decoder->complete())
      return failed(errc::provider_error, where + ": malformed response: stream truncated before its final event",
                    true, false, health::ok);
    return verdict{decoder->take(), false, health::ok, std::nullopt};
  }
  std::string msg = where + " returned HTTP " + std::to_string(out.status) + ": " + error_message_from_body(out.body);
  auto retry_after = parse_retry_after(out.retry_after, out.retry_after_ms);
  if (out.status == 429 || out.status == 408 || out.status >= 500) {
    auto v = failed(errc::provider_error, std::move(msg), true, true,
                    out.status >= 500 ? health::failure : health::neutral);
    v.retry_after_ms = retry_after;
    return v;
  }
  // 400/401/403/404/422...: the request itself is wrong; retrying cannot help.
  return failed(errc::provider_error, std::move(msg), false, false, health::ok);
}

}  // namespace troupe::protocols::llm::detail
