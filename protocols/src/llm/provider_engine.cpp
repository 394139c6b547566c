// The provider engine: admission, limits, retries, the circuit breaker and the
// connection pool of one provider (see provider_engine.hpp).
#include "provider_engine.hpp"

#include <spdlog/spdlog.h>

#include "attempt_verdict.hpp"
#include "troupe/protocols/llm/retry_policy.hpp"

namespace troupe::protocols::llm::detail {
namespace {

using base::errc;

std::shared_ptr<spdlog::logger> llm_log() {
  auto l = spdlog::get("llm");
  return l ? l : spdlog::default_logger();
}

std::int64_t mono_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now().time_since_epoch()).count();
}

}  // namespace

template <class F>
void engine::arm_timer(const std::shared_ptr<call_state>& c, steady::time_point at, F on_fire) {
  auto gen = ++c->timer_gen;
  c->timer.expires_at(at);
  c->timer.async_wait([this, c, gen, on_fire](boost::system::error_code ec) {
    if (ec || gen != c->timer_gen || c->ph == phase::done) return;
    on_fire(c);
  });
}

template <class F>
void engine::guarded(F&& f) {
  // A throwing callback must not take the I/O thread (and every provider) down.
  try {
    f();
  } catch (const std::exception& e) {
    llm_log()->error("llm callback threw provider={} what=\"{}\"", name_, redact(e.what(), cfg_.api_key));
  } catch (...) {
    llm_log()->error("llm callback threw provider={}", name_);
  }
}

engine::engine(asio::io_context& ioc, int io_threads, config::provider cfg, std::string name)
    : exec_(io_threads > 1 ? asio::any_io_executor(asio::make_strand(ioc)) : asio::any_io_executor(ioc.get_executor())),
      cfg_(std::move(cfg)),
      name_(std::move(name)),
      where_("provider '" + name_ + "'"),
      kind_(cfg_.kind == config::provider_kind::anthropic ? api_kind::anthropic : api_kind::openai),
      requests_(cfg_.limits.requests_per_min, mono_ms()),
      tokens_(cfg_.limits.tokens_per_min, mono_ms()),
      breaker_(cfg_.breaker.failures, cfg_.breaker.open_ms),
      wake_(exec_),
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
      auto tls = make_tls_context(cfg_.ca_file);
      if (tls) tls_ = *tls;
      else config_error_ = base::error{errc::invalid_config, where_ + ": " + tls.error().message};
    }
  }
  auto headers = std::make_shared<header_list>();
  if (kind_ == api_kind::openai) {
    if (!cfg_.api_key.empty()) headers->emplace_back("authorization", "Bearer " + cfg_.api_key);
  } else {
    if (!cfg_.api_key.empty()) headers->emplace_back("x-api-key", cfg_.api_key);
    headers->emplace_back("anthropic-version", cfg_.anthropic_version);
  }
  headers_ = std::move(headers);
  if (config_error_) llm_log()->error("llm provider unusable provider={} error=\"{}\"", name_, config_error_->message);
}

void engine::admit(std::shared_ptr<call_state> c) {
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

void engine::cancel(const std::shared_ptr<call_state>& c) {
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

void engine::stop() {
  stopping_ = true;
  wake_.cancel();
  for (auto& ch : idle_) ch->abort();
  idle_.clear();
  auto calls = calls_;
  for (auto& [id, c] : calls) cancel(c);
}

void engine::fill(provider_stats& s) const {
  s.calls = calls_total_.load();
  s.failures = failures_.load();
  s.retries = retries_.load();
  s.breaker_state = std::string(to_string(static_cast<breaker_state>(breaker_view_.load())));
  s.in_flight = in_flight_view_.load();
  s.queued = queued_view_.load();
  s.tokens_in = tokens_in_.load();
  s.tokens_out = tokens_out_.load();
}

base::error engine::breaker_error(std::int64_t now) const {
  return base::error{errc::unavailable,
                     where_ + ": circuit breaker open after " + std::to_string(breaker_.consecutive_failures()) +
                         " consecutive failures; next probe in " +
                         std::to_string(breaker_.remaining_open_ms(now)) + " ms",
                     true};
}

void engine::publish() {
  breaker_view_ = static_cast<int>(breaker_.state(mono_ms()));
  in_flight_view_ = in_flight_;
  queued_view_ = static_cast<std::int64_t>(queue_.size());
}

void engine::enqueue(const std::shared_ptr<call_state>& c) {
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

void engine::pump() {
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

void engine::arm_wake(std::int64_t ms) {
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

void engine::start_attempt(const std::shared_ptr<call_state>& c, bool counts) {
  ++c->timer_gen;
  c->timer.cancel();
  c->ph = phase::running;
  if (counts && ++c->attempts > 1) ++retries_;
  ++in_flight_;
  std::shared_ptr<http_channel> ch;
  if (!idle_.empty()) {
    ch = std::move(idle_.back());
    idle_.pop_back();
  } else {
    ch = http_channel::create(exec_, ep_, tls_, headers_);
  }
  c->channel = ch;
  http_request_spec spec;
  spec.target = target_;
  spec.body = build_request_body(kind_, c->req);
  spec.read_timeout = std::chrono::milliseconds(cfg_.read_timeout_ms);  // 0 (off) or more: the config says so
  auto deadline = c->deadline;
  if (cfg_.timeout_ms > 0) deadline = std::min(deadline, steady::now() + std::chrono::milliseconds(cfg_.timeout_ms));
  http_channel::chunk_fn on_chunk;
  if (c->req.stream) {
    c->sse.emplace();
    c->decoder.emplace(kind_, where_);
    c->stream_error.reset();
    on_chunk = [this, c](std::string_view bytes) { return on_stream_bytes(c, bytes); };
  }
  ch->exchange(std::move(spec), deadline, std::chrono::milliseconds(std::max<std::int64_t>(cfg_.connect_timeout_ms, 1)),
               c->req.stream, std::move(on_chunk),
               [this, c, ch](http_outcome out) { on_attempt_done(c, ch, std::move(out)); });
  publish();
}

bool engine::on_stream_bytes(const std::shared_ptr<call_state>& c, std::string_view bytes) {
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

void engine::on_attempt_done(const std::shared_ptr<call_state>& c, const std::shared_ptr<http_channel>& ch,
                     http_outcome out) {
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
  auto v = classify(kind_, where_, as_stream, out, c->decoder ? &*c->decoder : nullptr, c->stream_error);
  if (c->req.stream && !as_stream && v.result && !v.result->text.empty() && c->on_token) {
    c->streamed = true;
    guarded([&] { c->on_token(v.result->text); });
  }
  switch (v.h) {
    case health::ok:
      if (breaker_.state(now) != breaker_state::closed)
        llm_log()->info("llm circuit breaker closed provider={} (probe answered)", name_);
      breaker_.record_success();
      break;
    case health::neutral: if (c->probe) breaker_.release_probe(); break;
    case health::failure: {
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

void engine::finish(const std::shared_ptr<call_state>& c, base::result<base::llm_response> r) {
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

}  // namespace troupe::protocols::llm::detail
