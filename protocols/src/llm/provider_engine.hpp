#pragma once
/// Private to troupe_llm: the engine of one network provider (admission, fair
/// queue, concurrency and token buckets, circuit breaker, retries, keep-alive
/// connection pool) and the state of one call. Everything of one provider runs
/// on its engine's executor, one handler at a time, so its state needs no locks; only
/// the counters read by stats() are atomic.
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "http_channel.hpp"
#include "troupe/protocols/llm/circuit_breaker.hpp"
#include "troupe/protocols/llm/endpoint.hpp"
#include "troupe/protocols/llm/fair_queue.hpp"
#include "troupe/protocols/llm/llm_pool.hpp"
#include "troupe/protocols/llm/token_bucket.hpp"
#include "troupe/protocols/llm/wire_format.hpp"

namespace troupe::protocols::llm::detail {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;

enum class phase { queued, backoff, running, done };

/// One call from admission to its single done callback. Owned by its engine's
/// `calls_` map (and by pending handlers); the caller's handle holds a weak_ptr.
struct call_state {
  call_state(std::uint64_t i, base::llm_request r, base::llm_token_fn t, base::llm_done_fn d,
             const asio::any_io_executor& ex)
      : id(i), req(std::move(r)), on_token(std::move(t)), done(std::move(d)), timer(ex) {}
  std::uint64_t id;
  base::llm_request req;
  base::llm_token_fn on_token;
  base::llm_done_fn done;
  asio::steady_timer timer;  ///< deadline while queued, backoff between attempts
  std::uint64_t timer_gen = 0;
  phase ph = phase::queued;
  bool cancelled = false;
  bool probe = false;       ///< this attempt is the breaker's half-open probe
  bool streamed = false;    ///< a token was forwarded: retrying would repeat text
  int attempts = 0;
  std::int64_t est_tokens = 0;
  std::int64_t timeout_ms = 0;  ///< of the whole call
  steady::time_point deadline;
  std::shared_ptr<http_channel> channel;
  std::optional<sse_parser> sse;
  std::optional<stream_decoder> decoder;
  std::optional<base::error> stream_error;
};

/// One network provider. Constructed on any thread; every other member function
/// runs on executor().
class engine {
 public:
  /// `io_threads`: how many threads run `ioc` (more than one: a strand serialises).
  engine(asio::io_context& ioc, int io_threads, config::provider cfg, std::string name);

  /// A strand of the io_context when it has several threads; with one thread, whose
  /// handlers never overlap, the io_context's own executor (a strand's queue and lock
  /// cost ~2 us per call there, docs/benchmarks.md).
  const asio::any_io_executor& executor() const { return exec_; }

  /// On executor(): takes a new call in.
  void admit(std::shared_ptr<call_state> c);

  /// On executor(): the caller's cancel().
  void cancel(const std::shared_ptr<call_state>& c);

  /// On executor(): fails everything and closes connections.
  void stop();

  void fill(provider_stats& s) const;

 private:
  base::error breaker_error(std::int64_t now) const;

  void publish();

  /// Queues the call and starts whatever may start now.
  void enqueue(const std::shared_ptr<call_state>& c);

  template <class F>
  void arm_timer(const std::shared_ptr<call_state>& c, steady::time_point at, F on_fire);

  /// Starts queued calls while concurrency, rate limits and the breaker allow.
  void pump();

  void arm_wake(std::int64_t ms);

  void start_attempt(const std::shared_ptr<call_state>& c, bool counts);

  bool on_stream_bytes(const std::shared_ptr<call_state>& c, std::string_view bytes);

  void on_attempt_done(const std::shared_ptr<call_state>& c, const std::shared_ptr<http_channel>& ch,
                       http_outcome out);

  template <class F>
  void guarded(F&& f);

  void finish(const std::shared_ptr<call_state>& c, base::result<base::llm_response> r);

  asio::any_io_executor exec_;
  config::provider cfg_;
  std::string name_;
  std::string where_;
  api_kind kind_;
  endpoint ep_;
  std::string target_;
  std::shared_ptr<const header_list> headers_;  ///< credentials and API version, for every request
  std::shared_ptr<tls_context> tls_;
  std::optional<base::error> config_error_;
  token_bucket requests_;
  token_bucket tokens_;
  circuit_breaker breaker_;
  asio::steady_timer wake_;
  bool wake_armed_ = false;
  steady::time_point wake_at_;
  std::mt19937_64 rng_;
  fair_queue queue_;
  std::unordered_map<std::uint64_t, std::shared_ptr<call_state>> calls_;
  std::vector<std::shared_ptr<http_channel>> idle_;
  int in_flight_ = 0;
  bool stopping_ = false;
  std::atomic<std::uint64_t> calls_total_{0}, failures_{0}, retries_{0}, tokens_in_{0}, tokens_out_{0};
  std::atomic<int> breaker_view_{0};
  std::atomic<std::int64_t> in_flight_view_{0}, queued_view_{0};
};

}  // namespace troupe::protocols::llm::detail
