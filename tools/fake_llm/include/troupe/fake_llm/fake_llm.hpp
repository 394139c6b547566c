#pragma once
/// A fake model provider for tests and benchmarks: a real HTTP/1.1 server on
/// 127.0.0.1 that speaks the OpenAI chat-completions and the Anthropic messages
/// wire formats, streaming (SSE) and not, with knobs for faults. Replies are
/// deterministic: "echo: <last user message>", with usage counted in words.
///
/// Paths: POST /v1/chat/completions and /chat/completions (OpenAI shape),
/// POST /v1/messages (Anthropic shape). Anything else gets 404.
///
/// All knobs and counters are thread-safe and take effect for the next request.
/// No Beast or asio type appears here.
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "troupe/base/result.hpp"

namespace troupe::fake_llm {

/// The fault knobs. Rates are probabilities in [0, 1] drawn per request from a
/// seeded generator.
struct fake_knobs {
  std::int64_t latency_ms = 0;         ///< delay before answering
  double error_rate_500 = 0;           ///< answer 500 with a provider-shaped error body
  double error_rate_429 = 0;           ///< answer 429 with retry-after / retry-after-ms
  std::int64_t retry_after_ms = 0;     ///< value of the retry headers on 429
  bool retry_after_date = false;       ///< send `retry-after` as an HTTP-date (now + retry_after_ms), no retry-after-ms
  bool hang = false;                   ///< read the request, never answer
  bool malformed_json = false;         ///< 200 with a body (or stream events) that is not valid JSON
  bool truncated_stream = false;       ///< streams stop halfway and the connection closes
  int status_override = 0;             ///< answer every request with this status and an error body (0: off)
  std::string expected_key;            ///< when set, check Bearer / x-api-key against it (401 if wrong)
  std::int64_t token_delay_ms = 0;     ///< delay between streamed events
  bool ignore_stream = false;          ///< answer "stream": true with one JSON body, as non-streaming servers do
};

/// Request counters since start (or the last reset_counters()).
struct fake_counters {
  std::int64_t total = 0;
  std::map<std::string, std::int64_t> by_path;
  std::map<std::string, std::int64_t> by_model;
  int concurrent = 0;       ///< requests being answered now (hanging ones included)
  int max_concurrent = 0;   ///< the most at any moment
  std::int64_t connections = 0;  ///< TCP connections accepted
  std::string last_body;         ///< body of the latest request (what the client sent)
};

class fake_llm_server {
 public:
  fake_llm_server();
  ~fake_llm_server();
  fake_llm_server(const fake_llm_server&) = delete;
  fake_llm_server& operator=(const fake_llm_server&) = delete;

  /// Listens on 127.0.0.1:port (0: ephemeral) and serves on `threads` threads.
  /// Returns the bound port; errc::unavailable when binding fails.
  base::result<std::uint16_t> start(std::uint16_t port = 0, int threads = 1);
  /// Same, serving HTTPS with the given PEM certificate chain and private key;
  /// errc::invalid_config when they do not load.
  base::result<std::uint16_t> start_tls(const std::string& cert_pem, const std::string& key_pem,
                                        std::uint16_t port = 0, int threads = 1);
  /// Closes everything and joins the threads. Idempotent.
  void stop();
  std::uint16_t port() const;
  /// "http://127.0.0.1:PORT" or "https://..." (an OpenAI base_url wants "/v1" appended).
  std::string endpoint() const;

  /// Down: closes the listener and every open connection, so connects are refused.
  /// Up again: listens on the same port. Blocks until done.
  void set_down(bool down);

  void set_knobs(const fake_knobs& k);
  fake_knobs knobs() const;
  void set_latency_ms(std::int64_t ms);
  void set_error_rate_500(double p);
  void set_error_rate_429(double p, std::int64_t retry_after_ms = 0);
  /// On: `retry-after` is an IMF-fixdate (RFC 9110) and `retry-after-ms` is not sent.
  void set_retry_after_date(bool on);
  void set_hang(bool on);
  void set_token_delay_ms(std::int64_t ms);
  void set_malformed_json(bool on);
  void set_truncated_stream(bool on);
  void set_status_override(int status);
  void set_expected_key(std::string key);
  void set_seed(std::uint64_t seed);

  fake_counters counters() const;
  void reset_counters();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe::fake_llm
