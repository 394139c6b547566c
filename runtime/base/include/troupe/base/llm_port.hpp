#pragma once
/// llm_client: the port through which agents reach model providers over the
/// network (protocols/llm implements it on Boost.Beast). Calls are asynchronous:
/// `call` returns at once and invokes the callbacks later on an I/O thread; the
/// caller (an LLM call actor) forwards them into its mailbox.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/base/result.hpp"

namespace troupe::base {

struct llm_message {
  std::string role;  ///< "user" | "assistant"
  std::string content;
};

struct llm_request {
  std::string provider;  ///< provider name from the config
  std::string model;     ///< the provider's model name (e.g. "claude-3-5-haiku-20241022")
  std::string system;
  std::vector<llm_message> messages;
  int max_tokens = 1024;
  double temperature = -1;  ///< < 0: provider default
  std::vector<std::string> stop;
  bool stream = false;
  std::int64_t timeout_ms = 60000;
  int priority = 5;  ///< task priority, for fair waiting on provider limits
  std::string team;  ///< for fairness across teams and for logs
  std::string task_id;
};

struct llm_usage {
  std::int64_t tokens_in = 0;
  std::int64_t tokens_out = 0;
};

struct llm_response {
  std::string text;
  llm_usage usage;
  std::string finish_reason;
  int attempts = 1;
};

/// Handle to an in-flight call; cancel() aborts the HTTP request at once and the
/// done callback then reports errc::cancelled.
class llm_call_handle {
 public:
  virtual ~llm_call_handle() = default;
  virtual void cancel() = 0;
};

using llm_token_fn = std::function<void(std::string_view token)>;
using llm_done_fn = std::function<void(result<llm_response>)>;

class llm_client {
 public:
  virtual ~llm_client() = default;
  /// Starts a call. `on_token` (may be empty) receives streamed text; `done` is
  /// called exactly once. Errors: errc::provider_error (4xx, not retryable, with
  /// the provider's message), errc::timeout, errc::unavailable (breaker open or
  /// connection failed), errc::cancelled.
  virtual std::shared_ptr<llm_call_handle> call(llm_request request, llm_token_fn on_token,
                                                llm_done_fn done) = 0;
};

}  // namespace troupe::base
