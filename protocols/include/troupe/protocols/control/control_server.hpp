#pragma once
/// The control-plane server: HTTP routes and the troupe.v1 WebSocket protocol on
/// one listening address (DESIGN §5). Everything it does on behalf of clients
/// goes through a control_port; it never sees actors. Beast and asio stay in
/// the .cpp (pimpl).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "troupe/base/result.hpp"
#include "troupe/config/config.hpp"
#include "troupe/protocols/control_port.hpp"

namespace troupe::protocols::control {

/// How the server listens and what it tolerates.
struct server_options {
  std::string listen = "127.0.0.1:7700";  ///< "HOST:PORT", IPv4 or [IPv6]; port 0 picks one
  config::control settings;               ///< tokens and limits (settings.listen is ignored)
  /// Threads running the I/O context. Two by default: fan-out to many
  /// subscribers is bound by the kernel's send path, which then runs on both
  /// cores of a small machine (sessions are on strands, so any count is safe).
  int io_threads = 2;
  std::int64_t request_timeout_ms = 10000;  ///< a request must arrive whole within this (slow-loris)
  std::size_t max_header_bytes = 16 * 1024;  ///< larger request heads get 431
  std::int64_t handshake_timeout_ms = 10000;  ///< WebSocket handshake and close
};

/// HTTP + WebSocket control server. Public methods are thread-safe. The port
/// must outlive the server; replies from the port may arrive on any thread,
/// even after the client went away (they are then dropped).
class control_server {
 public:
  control_server(server_options opts, control_port& port);
  ~control_server();  ///< stops if running
  control_server(const control_server&) = delete;
  control_server& operator=(const control_server&) = delete;

  /// Binds and listens, then starts the I/O threads. errc::invalid_config for an
  /// unparsable or unusable address (saying which and why) and for a
  /// non-loopback address without tokens; errc::conflict when already started.
  [[nodiscard]] base::result<void> start();
  /// "HOST:PORT" actually bound (listen port 0 shows the chosen port).
  std::string endpoint() const;
  /// Stops accepting, closes WebSocket sessions with 1001 "going away", waits
  /// for the I/O threads. Idempotent.
  void stop();
  /// Open WebSocket sessions.
  std::size_t clients() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe::protocols::control
