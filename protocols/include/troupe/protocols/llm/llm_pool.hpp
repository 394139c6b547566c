#pragma once
/// The network implementation of base::llm_client: HTTP(S) clients for the
/// `openai` and `anthropic` provider kinds on Boost.Beast, sharing one asio
/// io_context. No asio or Beast type appears here, so including this header is
/// cheap.
///
/// Per provider: a keep-alive connection pool, `max_concurrency`, token buckets for
/// requests and tokens per minute (fair across teams, by task priority), per-attempt
/// timeouts, retries with backoff and jitter on 429/5xx/network errors (honouring
/// retry-after), and a circuit breaker. Callbacks run on whichever thread runs the
/// io_context: an I/O thread, or a thread that took it through driver(); all work of
/// one provider is serialised (on a strand when there are several I/O threads).
///
/// Timeouts: `llm_request::timeout_ms` is the deadline of the whole call (waiting
/// for limits, every attempt and every backoff); the provider's `timeout_ms`
/// bounds one attempt and `connect_timeout_ms` its connection set-up.
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "troupe/base/io_driver.hpp"
#include "troupe/base/llm_port.hpp"
#include "troupe/config/config.hpp"

namespace troupe::protocols::llm {

/// Counters of one provider, for /metrics. A consistent-enough snapshot: each
/// field is read atomically, not all of them together.
struct provider_stats {
  std::uint64_t calls = 0;       ///< calls finished (success or failure)
  std::uint64_t failures = 0;    ///< calls that finished with an error (cancels included)
  std::uint64_t retries = 0;     ///< attempts beyond the first
  std::string breaker_state;     ///< "closed" | "open" | "half_open"
  std::int64_t in_flight = 0;    ///< HTTP requests on the wire now
  std::int64_t queued = 0;       ///< calls waiting for a concurrency slot or a limit
  std::uint64_t tokens_in = 0;   ///< from provider usage
  std::uint64_t tokens_out = 0;
};

/// base::llm_client plus stats and an explicit shutdown.
class llm_pool : public base::llm_client {
 public:
  /// Stats of every network provider, by provider name. Thread-safe.
  virtual std::map<std::string, provider_stats> stats() const = 0;
  /// Fails every queued and in-flight call with errc::cancelled ("shutting down"),
  /// closes connections, stops and joins the I/O threads. Later calls fail with
  /// errc::unavailable. Idempotent; must not be called from an I/O thread or a
  /// callback. The destructor calls it.
  virtual void shutdown() = 0;
  /// The io_context as a loop the scheduler's idle workers may drive in place of the
  /// I/O thread (base::io_driver); null with several I/O threads. Once shut down, the
  /// driver is inert.
  virtual std::shared_ptr<base::io_driver> driver() = 0;
};

/// One asio io_context (run by io_threads threads) serving every provider.
/// Providers of kind `scripted` are ignored; a request naming an unknown or
/// scripted provider fails with errc::bad_request. A provider whose base_url does
/// not parse, or whose CA file cannot be loaded, fails each of its calls with
/// errc::invalid_config (and logs why once).
std::unique_ptr<llm_pool> make_llm_pool(const std::map<std::string, config::provider>& providers,
                                        int io_threads = 1);

/// Same as make_llm_pool, typed as the port.
std::unique_ptr<base::llm_client> make_llm_client(
    const std::map<std::string, config::provider>& providers, int io_threads = 1);

/// Stats of a client made by make_llm_client (empty map for any other client).
std::map<std::string, provider_stats> llm_stats(const base::llm_client& client);

}  // namespace troupe::protocols::llm
