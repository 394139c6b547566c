#pragma once
// Counters of the control server for /metrics (STYLE §7: counters live in a
// small object, not in the session logic). Thread-safe.
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace troupe::protocols::control {

class server_metrics {
 public:
  void count_request(const std::string& route, int status);
  void count_dropped(std::uint64_t n) { ws_dropped_.fetch_add(n, std::memory_order_relaxed); }
  void count_ws_frame_in() { ws_frames_in_.fetch_add(1, std::memory_order_relaxed); }
  void count_ws_rejected() { ws_rejected_.fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t dropped() const { return ws_dropped_.load(std::memory_order_relaxed); }
  /// Prometheus text exposition (version 0.0.4) of the counters.
  std::string render(std::size_t ws_clients) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, std::uint64_t> requests_;
  std::atomic<std::uint64_t> ws_dropped_{0};
  std::atomic<std::uint64_t> ws_frames_in_{0};
  std::atomic<std::uint64_t> ws_rejected_{0};
};

}  // namespace troupe::protocols::control
