#include "server_metrics.hpp"

namespace troupe::protocols::control {

void server_metrics::count_request(const std::string& route, int status) {
  std::lock_guard lock(mu_);
  ++requests_[{route, status}];
}

std::string server_metrics::render(std::size_t ws_clients) const {
  std::string out;
  out += "# HELP troupe_http_requests_total HTTP requests answered by the control plane.\n";
  out += "# TYPE troupe_http_requests_total counter\n";
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, n] : requests_)
      out += "troupe_http_requests_total{route=\"" + key.first + "\",code=\"" +
             std::to_string(key.second) + "\"} " + std::to_string(n) + "\n";
  }
  out += "# HELP troupe_ws_clients Open WebSocket sessions.\n# TYPE troupe_ws_clients gauge\n";
  out += "troupe_ws_clients " + std::to_string(ws_clients) + "\n";
  out += "# HELP troupe_ws_dropped_events_total Events dropped for slow WebSocket subscribers.\n";
  out += "# TYPE troupe_ws_dropped_events_total counter\n";
  out += "troupe_ws_dropped_events_total " + std::to_string(dropped()) + "\n";
  out += "# HELP troupe_ws_frames_received_total WebSocket request frames received.\n";
  out += "# TYPE troupe_ws_frames_received_total counter\n";
  out += "troupe_ws_frames_received_total " +
         std::to_string(ws_frames_in_.load(std::memory_order_relaxed)) + "\n";
  out += "# HELP troupe_ws_rejected_total WebSocket upgrades refused (max_clients).\n";
  out += "# TYPE troupe_ws_rejected_total counter\n";
  out += "troupe_ws_rejected_total " + std::to_string(ws_rejected_.load(std::memory_order_relaxed)) +
         "\n";
  return out;
}

}  // namespace troupe::protocols::control
