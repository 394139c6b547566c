#pragma once
/// A synchronous WebSocket client for the troupe.v1 control plane (CLI, tests,
/// benchmarks). I/O runs on the calling thread inside each call. Not
/// thread-safe per object.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "troupe/base/result.hpp"

namespace troupe::protocols::client {

/// How the server closed the connection.
struct close_info {
  int code = 0;  ///< 1000 normal, 1001 going away, 1009 message too big, ...
  std::string reason;
};

class ws_client {
 public:
  ws_client();
  ~ws_client();
  ws_client(const ws_client&) = delete;
  ws_client& operator=(const ws_client&) = delete;

  /// Opens ws://HOST:PORT/v1/ws (http:// works too; a URL path other than "/"
  /// replaces /v1/ws). A refused upgrade maps its HTTP status to an error code
  /// (401 unauthorized, 503 overloaded/unavailable, ...) with the server's message.
  [[nodiscard]] base::result<void> connect(const std::string& url, const std::string& token = {},
                                           std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// Sends a JSON text frame.
  [[nodiscard]] base::result<void> send(const nlohmann::json& frame);
  /// Sends a text frame as it is (not necessarily JSON).
  [[nodiscard]] base::result<void> send_text(const std::string& text);
  /// Sends a binary frame.
  [[nodiscard]] base::result<void> send_binary(const std::string& bytes);
  /// Next frame as JSON. errc::timeout when nothing arrived in time (the read
  /// stays pending and the next call continues it); errc::unavailable when the
  /// connection closed (see closed()); errc::bad_request when the frame is not JSON.
  [[nodiscard]] base::result<nlohmann::json> read(std::chrono::milliseconds timeout);
  /// Next frame as text.
  [[nodiscard]] base::result<std::string> read_text(std::chrono::milliseconds timeout);
  /// Sends {"id":N,"op":op,...args} and reads frames until the response with
  /// that id arrives; events read meanwhile are kept for later read() calls.
  [[nodiscard]] base::result<nlohmann::json> request(const std::string& op,
                                                     nlohmann::json args = nlohmann::json::object(),
                                                     std::chrono::milliseconds timeout = std::chrono::seconds(10));
  /// Close handshake (1000) with a bounded wait; safe to call twice.
  void close();
  /// Drops the TCP connection without a close handshake.
  void abort();
  /// Set once the server closed the connection.
  std::optional<close_info> closed() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe::protocols::client
