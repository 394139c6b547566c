// The provider engines behind make_llm_pool: admission, limits, retries and the
// circuit breaker. Everything of one provider runs on that provider's strand, so
// its state needs no locks; only the counters read by stats() are atomic.
#include "troupe/protocols/llm/llm_pool.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <optional>
#include <random>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "attempt_verdict.hpp"
#include "http_channel.hpp"
#include "troupe/protocols/llm/circuit_breaker.hpp"
#include "troupe/protocols/llm/endpoint.hpp"
#include "troupe/protocols/llm/fair_queue.hpp"
#include "troupe/protocols/llm/retry_policy.hpp"
#include "troupe/protocols/llm/token_bucket.hpp"
#include "troupe/protocols/llm/wire_format.hpp"

namespace troupe::protocols::llm {
namespace {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;
using base::errc;

std::shared_ptr<spdlog::logger> llm_log() {
  auto l = spdlog::get("llm");
  return l ? l : spdlog::default_logger();
}

std::int64_t mono_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now().time_since_epoch()).count();
}

class engine;

enum class phase { queued, backoff, running, done };

/// One call from admission to its single done callback. Owned by its engine's
/// `calls_` map (and by pending handlers); the caller's handle holds a weak_ptr.
struct call_state {
  call_state(std::uint64_t i, base::llm_request r, base::llm_token_fn t, base::llm_done_fn d,
             asio::strand<asio::io_context::executor_type> ex)
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
  std::shared_ptr<detail::http_channel> channel;
  std::optional<sse_parser> sse;
  std::optional<stream_decoder> decoder;
  std::optional<base::error> stream_error;
};

class engine {
 public:
  engine(asio::io_context& ioc, config::provider cfg, std::string name)
      : strand_(asio::make_strand(ioc)),
        cfg_(std::move(cfg)),
        name_(std::move(name)),
        where_("provider '" + name_ + "'"),
        kind_(cfg_.kind == config::provider_kind::anthropic ? api_kind::anthropic : api_kind::openai),
        requests_(cfg_.limits.requests_per_min, mono_ms()),
        tokens_(cfg_.limits.tokens_per_min, mono_ms()),
        breaker_(cfg_.breaker.failures, cfg_.breaker.open_ms),
        wake_(strand_),
        rng_(std::random_device{}()) {
    std::string url = cfg_.base_url;
    if (url.empty())
      url = kind_ == api_kind::openai ? "https://api.openai.com/v1" : "https://api.anthropic.com";
    auto ep = parse_endpoint(url);
    if (!ep) {
      config_error_ = base::error{errc::invalid_config, where_ + ": " + ep.error().message};
    } else {
      ep_ = *ep;
      target_ = ep_.path + (kind_ == api_kind::openai ? "/chat/completions" : "/v1/messages");
      if (ep_.tls) {
        auto tls = detail::make_tls_context(cfg_.ca_file);
        if (tls) tls_ = *tls;
        else config_error_ = base::error{errc::invalid_config, where_ + ": " + tls.error().message};
      }
    }
    if (config_error_) llm_log()->error("llm provider unusable provider={} error=\"{}\"", name_, config_error_->message);
  }

  asio::strand<asio::io_context::executor_type>& strand() { return strand_; }

  /// On the strand: takes a new call in.
  void admit(std::shared_ptr<call_state> c) {
    if (stopping_) return finish(c, base::fail(errc::cancelled, where_ + ": llm client shutting down"));
    if (config_error_) return finish(c, base::fail(*config_error_));
    auto now = mono_ms();
    if (breaker_.state(now) == breaker_state::open) return finish(c, base::fail(breaker_error(now)));
    // No deadline given anywhere: a day, so that nothing waits forever.
    c->timeout_ms = c->req.timeout_ms > 0 ? c->req.timeout_ms : cfg_.timeout_ms > 0 ? cfg_.timeout_ms : 86'400'000;
    c->deadline = steady::now() + std::chrono::milliseconds(c->timeout_ms);
    c->est_tokens = estimate_tokens(c->req);
    calls_.emplace(c->id, c);
    enqueue(c);
  }

  /// On the strand: the caller's cancel().
  void cancel(const std::shared_ptr<call_state>& c) {
    if (c->ph == phase::done || c->cancelled) return;
    c->cancelled = true;
    if (c->ph == phase::running) {
      // The attempt's completion reports the cancellation (exactly once).
      if (c->channel) c->channel->abort();
      return;
    }
    if (c->ph == phase::queued) queue_.erase(c->id);
    finish(c, base::fail(errc::cancelled, where_ + ": call cancelled"));
    pump();
  }

  /// On the strand: fails everything and closes connections.
  void stop() {
    stopping_ = true;
    wake_.cancel();
    for (auto& ch : idle_) ch->abort();
    idle_.clear();
    auto calls = calls_;
    for (auto& [id, c] : calls) cancel(c);
  }

  void fill(provider_stats& s) const {
    s.calls = calls_total_.load();
    s.failures = failures_.load();
    s.retries = retries_.load();
    s.breaker_state = std::string(to_string(static_cast<breaker_state>(breaker_view_.load())));
    s.in_flight = in_flight_view_.load();
    s.queued = queued_view_.load();
    s.tokens_in = tokens_in_.load();
    s.tokens_out = tokens_out_.load();
  }

 private:
  base::error breaker_error(std::int64_t now) const {
    return base::error{errc::unavailable,
                       where_ + ": circuit breaker open after " + std::to_string(breaker_.consecutive_failures()) +
                           " consecutive failures; next probe in " +
                           std::to_string(breaker_.remaining_open_ms(now)) + " ms",
                       true};
  }

  void publish() {
    breaker_view_ = static_cast<int>(breaker_.state(mono_ms()));
    in_flight_view_ = in_flight_;
    queued_view_ = static_cast<std::int64_t>(queue_.size());
  }

  /// Queues the call and starts whatever may start now.
  void enqueue(const std::shared_ptr<call_state>& c) {
    c->ph = phase::queued;
    queue_.push(c->id, c->req.priority, c->req.team);
    pump();
    if (c->ph != phase::queued) return;
    // Still waiting for a slot or a limit: that counts against the call's own
    // deadline. (Armed only now so that calls that start at once cost no timer.)
    arm_timer(c, c->deadline, [this](const std::shared_ptr<call_state>& cs) {
      if (cs->ph != phase::queued) return;
      queue_.erase(cs->id);
      finish(cs, base::fail(errc::timeout, where_ + ": call timed out after " +
                                               std::to_string(cs->timeout_ms) +
                                               " ms waiting for provider limits", true));
    });
  }

  template <class F>
  void arm_timer(const std::shared_ptr<call_state>& c, steady::time_point at, F on_fire) {
    auto gen = ++c->timer_gen;
    c->timer.expires_at(at);
    c->timer.async_wait([this, c, gen, on_fire](boost::system::error_code ec) {
      if (ec || gen != c->timer_gen || c->ph == phase::done) return;
      on_fire(c);
    });
  }

  /// Starts queued calls while concurrency, rate limits and the breaker allow.
  void pump() {
    while (!stopping_ && !queue_.empty() && in_flight_ < std::max(cfg_.max_concurrency, 1)) {
      auto now = mono_ms();
      auto& head = calls_.at(*queue_.peek());
      auto wait = std::max(requests_.wait_ms(1, now), tokens_.wait_ms(head->est_tokens, now));
      if (wait > 0) {
        arm_wake(wait);
        break;
      }
      queue_.pop();
      auto c = head;
      if (!breaker_.allow(now)) {
        finish(c, base::fail(breaker_error(now)));
        continue;
      }
      c->probe = breaker_.state(now) == breaker_state::half_open;
      (void)requests_.try_take(1, now);
      (void)tokens_.try_take(c->est_tokens, now);
      start_attempt(c, true);
    }
    publish();
  }

  void arm_wake(std::int64_t ms) {
    auto at = steady::now() + std::chrono::milliseconds(ms);
    if (wake_armed_ && wake_at_ <= at) return;
    wake_armed_ = true;
    wake_at_ = at;
    wake_.expires_at(at);
    wake_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      wake_armed_ = false;
      pump();
    });
  }

  void start_attempt(const std::shared_ptr<call_state>& c, bool counts) {
    ++c->timer_gen;
    c->timer.cancel();
    c->ph = phase::running;
    if (counts && ++c->attempts > 1) ++retries_;
    ++in_flight_;
    std::shared_ptr<detail::http_channel> ch;
    if (!idle_.empty()) {
      ch = std::move(idle_.back());
      idle_.pop_back();
    } else {
      ch = detail::http_channel::create(strand_, ep_, tls_);
    }
    c->channel = ch;
    detail::http_request_spec spec;
    spec.target = target_;
    if (kind_ == api_kind::openai) {
      if (!cfg_.api_key.empty()) spec.headers.emplace_back("authorization", "Bearer " + cfg_.api_key);
    } else {
      if (!cfg_.api_key.empty()) spec.headers.emplace_back("x-api-key", cfg_.api_key);
      spec.headers.emplace_back("anthropic-version", cfg_.anthropic_version);
    }
    spec.body = build_request_body(kind_, c->req);
    auto deadline = c->deadline;
    if (cfg_.timeout_ms > 0) deadline = std::min(deadline, steady::now() + std::chrono::milliseconds(cfg_.timeout_ms));
    detail::http_channel::chunk_fn on_chunk;
    if (c->req.stream) {
      c->sse.emplace();
      c->decoder.emplace(kind_, where_);
      c->stream_error.reset();
      on_chunk = [this, c](std::string_view bytes) { return on_stream_bytes(c, bytes); };
    }
    ch->exchange(std::move(spec), deadline, std::chrono::milliseconds(std::max<std::int64_t>(cfg_.connect_timeout_ms, 1)),
                 c->req.stream, std::move(on_chunk),
                 [this, c, ch](detail::http_outcome out) { on_attempt_done(c, ch, std::move(out)); });
    publish();
  }

  bool on_stream_bytes(const std::shared_ptr<call_state>& c, std::string_view bytes) {
    std::string token;
    bool ok = c->sse->feed(bytes, [&](const sse_event& ev) {
      auto r = c->decoder->feed(ev, token);
      if (!r) {
        c->stream_error = r.error();
        return false;
      }
      if (!token.empty()) {
        c->streamed = true;
        if (c->on_token) guarded([&] { c->on_token(token); });
      }
      return true;
    });
    if (!ok && !c->stream_error)
      c->stream_error = base::error{errc::provider_error, where_ + ": malformed response: SSE line too long", true};
    return ok;
  }

  void on_attempt_done(const std::shared_ptr<call_state>& c, const std::shared_ptr<detail::http_channel>& ch,
                       detail::http_outcome out) {
    --in_flight_;
    c->channel.reset();
    if (!stopping_ && ch->reusable()) idle_.push_back(ch);
    auto now = mono_ms();
    if (c->cancelled || stopping_) {
      if (c->probe) breaker_.release_probe();
      tokens_.adjust(c->est_tokens, now);
      finish(c, base::fail(errc::cancelled, where_ + (stopping_ ? ": llm client shutting down" : ": call cancelled")));
      return pump();
    }
    // A kept-alive connection the server closed while idle fails before any
    // response: that is not the provider failing, so try again on a new connection.
    if (out.ec && !out.got_header && ch->reused() && !out.timed_out && steady::now() < c->deadline) {
      start_attempt(c, false);
      return;
    }
    if (out.incremental && !out.ec && !c->stream_error && c->sse->has_partial())
      (void)on_stream_bytes(c, "\n\n");  // a last event without its blank line still counts
    // A streaming request answered with a plain JSON body (the server does not
    // stream): read it as a whole response and forward its text as one token.
    bool as_stream = c->req.stream && (out.incremental || out.status / 100 != 2);
    auto v = detail::classify(kind_, where_, as_stream, out, c->decoder ? &*c->decoder : nullptr, c->stream_error);
    if (c->req.stream && !as_stream && v.result && !v.result->text.empty() && c->on_token) {
      c->streamed = true;
      guarded([&] { c->on_token(v.result->text); });
    }
    switch (v.h) {
      case detail::health::ok:
        if (breaker_.state(now) != breaker_state::closed)
          llm_log()->info("llm circuit breaker closed provider={} (probe answered)", name_);
        breaker_.record_success();
        break;
      case detail::health::neutral: if (c->probe) breaker_.release_probe(); break;
      case detail::health::failure: {
        bool was_closed = breaker_.state(now) == breaker_state::closed;
        breaker_.record_failure(now);
        if (breaker_.state(now) == breaker_state::open)
          llm_log()->log(was_closed ? spdlog::level::warn : spdlog::level::debug,
                     "llm circuit breaker open provider={} failures={} open_ms={}", name_,
                     breaker_.consecutive_failures(), cfg_.breaker.open_ms);
        break;
      }
    }
    c->probe = false;
    if (v.result) {
      auto used = v.result->usage.tokens_in + v.result->usage.tokens_out;
      // Correct the estimate taken before the call with the real usage.
      tokens_.adjust(c->est_tokens - used, now);
      tokens_in_ += static_cast<std::uint64_t>(std::max<std::int64_t>(v.result->usage.tokens_in, 0));
      tokens_out_ += static_cast<std::uint64_t>(std::max<std::int64_t>(v.result->usage.tokens_out, 0));
      v.result->attempts = c->attempts;
      finish(c, std::move(v.result));
      return pump();
    }
    tokens_.adjust(c->est_tokens, now);  // a failed attempt used no tokens we know of
    auto err = v.result.error();
    int max_attempts = std::max(cfg_.retry.max_attempts, 1);
    if (v.retry && !c->streamed && c->attempts < max_attempts) {
      auto delay = backoff_ms(cfg_.retry, c->attempts, rng_);
      if (v.retry_after_ms) delay = std::max(delay, *v.retry_after_ms);
      auto at = steady::now() + std::chrono::milliseconds(delay);
      if (at < c->deadline) {
        llm_log()->debug("llm retry provider={} attempt={} delay_ms={} error=\"{}\"", name_, c->attempts, delay,
                     redact(err.message, cfg_.api_key));
        c->ph = phase::backoff;
        arm_timer(c, at, [this](const std::shared_ptr<call_state>& cs) { enqueue(cs); });
        return pump();
      }
      err.message += " (no time left before the call's deadline to retry)";
    }
    if (c->attempts > 1) err.message += " (after " + std::to_string(c->attempts) + " attempts)";
    finish(c, base::fail(std::move(err)));
    pump();
  }

  template <class F>
  void guarded(F&& f) {
    // A throwing callback must not take the I/O thread (and every provider) down.
    try {
      f();
    } catch (const std::exception& e) {
      llm_log()->error("llm callback threw provider={} what=\"{}\"", name_, redact(e.what(), cfg_.api_key));
    } catch (...) {
      llm_log()->error("llm callback threw provider={}", name_);
    }
  }

  void finish(const std::shared_ptr<call_state>& c, base::result<base::llm_response> r) {
    if (c->ph == phase::done) return;
    c->ph = phase::done;
    ++c->timer_gen;
    c->timer.cancel();
    calls_.erase(c->id);
    ++calls_total_;
    if (!r) {
      ++failures_;
      r.error().message = redact(std::move(r.error().message), cfg_.api_key);
      llm_log()->debug("llm call failed provider={} task={} code={} error=\"{}\"", name_, c->req.task_id,
                   base::to_string(r.error().code), r.error().message);
    }
    auto done = std::move(c->done);
    c->done = nullptr;
    c->on_token = nullptr;
    c->sse.reset();
    c->decoder.reset();
    publish();
    if (done) guarded([&] { done(std::move(r)); });
  }

  asio::strand<asio::io_context::executor_type> strand_;
  config::provider cfg_;
  std::string name_;
  std::string where_;
  api_kind kind_;
  endpoint ep_;
  std::string target_;
  std::shared_ptr<detail::tls_context> tls_;
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
  std::vector<std::shared_ptr<detail::http_channel>> idle_;
  int in_flight_ = 0;
  bool stopping_ = false;
  std::atomic<std::uint64_t> calls_total_{0}, failures_{0}, retries_{0}, tokens_in_{0}, tokens_out_{0};
  std::atomic<int> breaker_view_{0};
  std::atomic<std::int64_t> in_flight_view_{0}, queued_view_{0};
};

/// The caller's handle: cancel() hops onto the provider's strand.
class call_handle final : public base::llm_call_handle {
 public:
  call_handle(std::weak_ptr<call_state> c, engine* e) : call_(std::move(c)), engine_(e) {}
  void cancel() override {
    auto c = call_.lock();
    if (!c) return;  // already finished
    asio::post(engine_->strand(), [c, e = engine_] { e->cancel(c); });
  }

 private:
  std::weak_ptr<call_state> call_;
  engine* engine_;
};

/// A handle for calls that failed before reaching a provider.
class finished_handle final : public base::llm_call_handle {
 public:
  void cancel() override {}
};

class pool_impl final : public llm_pool {
 public:
  pool_impl(const std::map<std::string, config::provider>& providers, int io_threads)
      : work_(asio::make_work_guard(ioc_)) {
    for (const auto& [name, p] : providers) {
      if (p.kind == config::provider_kind::scripted) continue;
      engines_.emplace(name, std::make_unique<engine>(ioc_, p, name));
    }
    for (int i = 0; i < std::max(io_threads, 1); ++i) threads_.emplace_back([this] { ioc_.run(); });
  }

  ~pool_impl() override { shutdown(); }

  std::shared_ptr<base::llm_call_handle> call(base::llm_request request, base::llm_token_fn on_token,
                                              base::llm_done_fn done) override {
    std::shared_lock lock(mu_);
    if (down_) {
      // No I/O thread is left to run the callback on: call it here.
      lock.unlock();
      done(base::fail(errc::unavailable, "llm client is shut down"));
      return std::make_shared<finished_handle>();
    }
    auto it = engines_.find(request.provider);
    if (it == engines_.end()) {
      std::string msg = "unknown llm provider '" + request.provider + "' (not configured, or of kind scripted)";
      asio::post(ioc_, [done = std::move(done), msg] { done(base::fail(errc::bad_request, msg)); });
      return std::make_shared<finished_handle>();
    }
    auto* e = it->second.get();
    auto c = std::make_shared<call_state>(next_id_++, std::move(request), std::move(on_token), std::move(done),
                                          e->strand());
    asio::post(e->strand(), [e, c] { e->admit(c); });
    return std::make_shared<call_handle>(c, e);
  }

  std::map<std::string, provider_stats> stats() const override {
    std::map<std::string, provider_stats> out;
    for (const auto& [name, e] : engines_) e->fill(out[name]);
    return out;
  }

  void shutdown() override {
    {
      std::unique_lock lock(mu_);
      if (down_) return;
      down_ = true;
    }
    for (auto& [name, e] : engines_) asio::post(e->strand(), [p = e.get()] { p->stop(); });
    // run() returns once the cancellations above and every handler they cause
    // have run; nothing new can be posted since down_ is set.
    work_.reset();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  asio::io_context ioc_;  // first: outlives the engines' sockets and timers
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::map<std::string, std::unique_ptr<engine>> engines_;
  std::vector<std::thread> threads_;
  mutable std::shared_mutex mu_;
  bool down_ = false;
  std::atomic<std::uint64_t> next_id_{1};
};

}  // namespace

std::unique_ptr<llm_pool> make_llm_pool(const std::map<std::string, config::provider>& providers,
                                        int io_threads) {
  return std::make_unique<pool_impl>(providers, io_threads);
}

std::unique_ptr<base::llm_client> make_llm_client(const std::map<std::string, config::provider>& providers,
                                                  int io_threads) {
  return make_llm_pool(providers, io_threads);
}

std::map<std::string, provider_stats> llm_stats(const base::llm_client& client) {
  if (const auto* pool = dynamic_cast<const llm_pool*>(&client)) return pool->stats();
  return {};
}

}  // namespace troupe::protocols::llm
