#pragma once
/// A TCP proxy in front of PostgreSQL that cuts a connection around a statement,
/// so that "connection lost, outcome unknown" happens on demand: the case a real
/// network or server failure produces only by chance.
///
/// It reads the wire protocol's message framing (startup, then type byte and
/// length) and nothing else. Armed, it acts on the next Execute message a client
/// sends, once:
/// - cut::after_commit: forwards the statement and its Sync, waits until the
///   server answered ReadyForQuery (the statement's implicit transaction is
///   committed), then closes both sides without passing the answer on;
/// - cut::before_statement: drops the Execute and everything after it and closes
///   both sides, so the server never runs the statement.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace troupe::test {

class pg_cutting_proxy {
 public:
  enum class cut { after_commit, before_statement };

  /// Listens on 127.0.0.1 (an ephemeral port) and forwards to upstream_host:upstream_port.
  pg_cutting_proxy(std::string upstream_host, std::uint16_t upstream_port);
  ~pg_cutting_proxy();
  pg_cutting_proxy(const pg_cutting_proxy&) = delete;
  pg_cutting_proxy& operator=(const pg_cutting_proxy&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  /// The next Execute from any connection triggers `how`, once.
  void arm(cut how);
  /// True once the armed cut was carried out.
  bool fired() const noexcept { return fired_.load(); }

 private:
  struct session;
  void accept_loop();
  void serve(int client);
  bool take_arm(cut& how);

  std::string upstream_host_;
  std::uint16_t upstream_port_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> fired_{false};
  std::mutex mu_;
  bool armed_ = false;
  cut how_ = cut::after_commit;
  std::vector<std::thread> threads_;  ///< guarded by mu_ (the accept thread adds to it)
  std::thread acceptor_;
};

/// "postgresql://user@host:port/db" with host and port replaced by the proxy's.
std::string via_proxy(const std::string& url, std::uint16_t proxy_port);
/// The host and port of a "postgresql://user@host:port/db" URL.
bool split_host_port(const std::string& url, std::string& host, std::uint16_t& port);

}  // namespace troupe::test
