#pragma once
// What the pieces of the control server share: the io_context, options,
// metrics, the session registries and the event fan-out state (core), plus the
// asio/Beast names. Private to protocols/src/control; only the translation
// units that deal with sockets include it (STYLE §5, CAF-NOTES §8: each Beast
// TU costs ~1 GB and tens of seconds, so the split keeps to four of them:
// control_server.cpp, http_session.cpp, ws_session.cpp and fanout.cpp).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <spdlog/spdlog.h>

#include "event_log.hpp"
#include "server_metrics.hpp"
#include "troupe/protocols/control/control_server.hpp"

namespace troupe::protocols::control::detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

/// The "control" logger, or the default one when none is registered.
std::shared_ptr<spdlog::logger> logger();

class ws_session;
class http_session;

// State shared by the server and every session. Sessions hold it by
// shared_ptr, so it (and the io_context it owns, declared first so it is
// destroyed last) outlives any session that a late port reply keeps alive.
struct core : std::enable_shared_from_this<core> {
  core(server_options o, control_port& p)
      : ioc(std::make_shared<asio::io_context>()), opts(std::move(o)), port(p) {}

  std::shared_ptr<asio::io_context> ioc;
  server_options opts;
  control_port& port;
  server_metrics metrics;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> ws_count{0};
  std::mutex idle_mu;  // with idle_cv: stop() waits for the last session to close
  std::condition_variable idle_cv;

  void session_finished() {
    {
      std::lock_guard lock(idle_mu);
      ws_count.fetch_sub(1);
    }
    idle_cv.notify_all();
  }

  // Posting onto a session's strand from another thread is allowed only while
  // I/O threads may still run it: after stop() a late reply is dropped instead
  // of being queued forever (which would keep its session alive in a cycle).
  std::shared_mutex post_mu;
  bool io_alive = true;

  std::mutex reg_mu;
  std::shared_ptr<const std::vector<std::weak_ptr<ws_session>>> ws_list =
      std::make_shared<const std::vector<std::weak_ptr<ws_session>>>();
  std::vector<std::weak_ptr<http_session>> http_list;

  template <class Executor, class F>
  void post(const Executor& ex, F&& f) {
    std::shared_lock lock(post_mu);
    if (!io_alive) return;
    asio::post(ex, std::forward<F>(f));
  }

  // Copy-on-write list: housekeeping passes grab the current vector with one
  // atomic increment and iterate it without any lock.
  void add_ws(std::weak_ptr<ws_session> w) {
    std::lock_guard lock(reg_mu);
    auto next = std::make_shared<std::vector<std::weak_ptr<ws_session>>>();
    next->reserve(ws_list->size() + 1);
    for (const auto& x : *ws_list)
      if (!x.expired()) next->push_back(x);
    next->push_back(std::move(w));
    ws_list = std::move(next);
  }
  std::shared_ptr<const std::vector<std::weak_ptr<ws_session>>> ws_snapshot() {
    std::lock_guard lock(reg_mu);
    return ws_list;
  }
  void add_http(std::weak_ptr<http_session> h) {
    std::lock_guard lock(reg_mu);
    std::erase_if(http_list, [](const auto& x) { return x.expired(); });
    http_list.push_back(std::move(h));
  }

  // Event fan-out (see event_log.hpp and session_outbox.hpp). Publishing an
  // event appends it to the log; sessions busy writing pick it up when their
  // write completes; sessions with nothing to write are "parked" and woken by
  // one pass over the parked ones, not by a post per event and subscriber.
  event_log log;
  std::atomic<std::size_t> subscribed{0};  // sessions with a subscription
  // The server listens to the port's events only while some session is
  // subscribed: without a subscriber the runtime builds and copies no event
  // for the control plane at all (each listener costs it a conversion per
  // event). Registered before the first subscription's log position and
  // snapshot are taken, so that subscription misses nothing.
  std::mutex listen_mu;
  std::shared_ptr<void> listen_token;  // guarded by listen_mu
  void add_subscriber();
  void remove_subscriber();
  void stop_listening();
  std::mutex park_mu;
  std::vector<std::weak_ptr<ws_session>> parked;
  std::atomic<std::size_t> parked_count{0};
  std::atomic<bool> wake_posted{false};
  std::atomic<bool> bound_posted{false};
  // Wake passes run at most once per wake_interval (on wake_strand; a timer
  // defers a request that comes sooner). A batched subscriber whose frame did
  // not fill up parks after the write instead of writing again at once, so
  // under a steady stream each session sends about one frame per interval,
  // whatever the event rate: per-write costs (a syscall and the kernel's
  // loopback path, ~5 us) stop growing with subscribers x rate, and the
  // first event after a quiet spell still goes out at once. 5 ms rather than
  // 10: under a heavy stream (1,000 subscribers x 10,000 events/s) the smaller,
  // more frequent frames keep the kernel's and the clients' work even, and
  // the p99 delivery latency fell from 38-86 ms to 25-30 ms for ~5 % more CPU
  // (docs/benchmarks.md).
  static constexpr std::chrono::milliseconds wake_interval{5};
  asio::strand<asio::io_context::executor_type> wake_strand{asio::make_strand(*ioc)};
  asio::steady_timer wake_timer{wake_strand};
  std::chrono::steady_clock::time_point last_wake{};  // wake_strand only

  void publish(const std::shared_ptr<const event>& ev);
  void park(const std::shared_ptr<ws_session>& s);
  void request_wake();
  void wake_pass();
  void bound_pass();
};

}  // namespace troupe::protocols::control::detail
