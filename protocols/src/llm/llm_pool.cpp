// make_llm_pool: one io_context and its threads, one provider engine per
// network provider, and the call handles.
#include "troupe/protocols/llm/llm_pool.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>
#include <thread>

#include "provider_engine.hpp"

namespace troupe::protocols::llm {
namespace {

using base::errc;
namespace asio = boost::asio;
using detail::call_state;
using detail::engine;

/// The caller's handle: cancel() hops onto the provider's executor.
class call_handle final : public base::llm_call_handle {
 public:
  call_handle(std::weak_ptr<call_state> c, engine* e) : call_(std::move(c)), engine_(e) {}
  void cancel() override {
    auto c = call_.lock();
    if (!c) return;  // already finished
    asio::post(engine_->executor(), [c, e = engine_] { e->cancel(c); });
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

/// The I/O thread's loop, which idle workers may take over (base::io_driver). The
/// thread runs the io_context unless a worker took it; a worker that takes it stops
/// the context, waits for the thread to leave run(), and from then on polls it, one
/// worker at a time, under the mutex, so that handlers never run on two threads at
/// once (with one I/O thread the providers use no strand). Closing gives the context
/// back to the thread for good.
class loop_driver final : public base::io_driver {
 public:
  explicit loop_driver(asio::io_context& ioc) : ioc_(ioc) {}

  /// The I/O thread's body: runs the context whenever no worker has it, until run()
  /// returns for want of work (the pool is shutting down) rather than for a take.
  void run_thread() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return !taken_; });
      if (ioc_.stopped()) ioc_.restart();  // a take's stop that a close overtook
      const auto stops = stops_;
      in_run_ = true;
      lock.unlock();
      ioc_.run();
      lock.lock();
      in_run_ = false;
      cv_.notify_all();
      if (stops_ == stops) return;
    }
  }

  bool take() override {
    // Taken already (the poller's usual case): no need to queue behind a poll.
    if (taken_.load(std::memory_order_acquire)) return true;
    std::unique_lock lock(mu_);
    if (closed_) return false;
    if (taken_) return true;
    taken_ = true;
    ++stops_;
    ioc_.stop();
    cv_.wait(lock, [&] { return !in_run_ || closed_; });
    if (closed_) return false;  // the thread runs it again, to shut down
    ioc_.restart();
    return true;
  }

  bool poll() override {
    std::unique_lock lock(mu_, std::try_to_lock);
    if (!lock.owns_lock() || !taken_ || closed_) return false;
    ioc_.poll();
    return true;
  }

  void give_back() override {
    std::lock_guard lock(mu_);
    if (!taken_) return;
    taken_ = false;
    cv_.notify_all();
  }

  /// For good: later takes fail and the thread runs the context. Waits for a poll in
  /// progress; must not be called from a handler.
  void close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    taken_ = false;
    cv_.notify_all();
  }

 private:
  asio::io_context& ioc_;
  std::mutex mu_;
  std::condition_variable cv_;
  /// A worker drives the context; the thread waits. Changed under mu_; read without it
  /// by a take that finds it taken already.
  std::atomic<bool> taken_{false};
  bool in_run_ = false;      ///< the thread is inside run()
  bool closed_ = false;
  std::uint64_t stops_ = 0;  ///< stop()s by takes: run() returned for one of them
};

class pool_impl final : public llm_pool {
 public:
  pool_impl(const std::map<std::string, config::provider>& providers, int io_threads)
      : work_(asio::make_work_guard(ioc_)) {
    for (const auto& [name, p] : providers) {
      if (p.kind == config::provider_kind::scripted) continue;
      engines_.emplace(name, std::make_unique<engine>(ioc_, io_threads, p, name));
    }
    if (io_threads <= 1) driver_ = std::make_shared<loop_driver>(ioc_);
    for (int i = 0; i < std::max(io_threads, 1); ++i) {
      threads_.emplace_back([this] {
        if (driver_)
          driver_->run_thread();
        else
          ioc_.run();
      });
      // Named so that top, perf and /proc/PID/task tell its CPU time apart.
      pthread_setname_np(threads_.back().native_handle(), "troupe-llm-io");
    }
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
                                          e->executor());
    asio::post(e->executor(), [e, c] { e->admit(c); });
    return std::make_shared<call_handle>(c, e);
  }

  std::shared_ptr<base::io_driver> driver() override { return driver_; }

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
    // The I/O thread runs the context again, whatever a worker was doing with it.
    if (driver_) driver_->close();
    for (auto& [name, e] : engines_) asio::post(e->executor(), [p = e.get()] { p->stop(); });
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
  std::shared_ptr<loop_driver> driver_;  ///< with one I/O thread
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
