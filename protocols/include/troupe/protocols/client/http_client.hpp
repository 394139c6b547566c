#pragma once
/// A small synchronous HTTP/1.1 client for the control plane (CLI, tests,
/// benchmarks). Each call runs its own I/O on the calling thread; no Beast or
/// asio in this header. Not thread-safe per object; distinct objects are
/// independent.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "troupe/base/result.hpp"

namespace troupe::protocols::client {

/// HTTP request methods the client sends.
enum class method { get, post, put, del };

/// A parsed control-plane URL: http://HOST:PORT[/path] or ws://HOST:PORT[/path].
struct url_parts {
  std::string scheme;  ///< "http" | "ws"
  std::string host;
  std::uint16_t port = 80;
  std::string path;    ///< "" when absent
};

/// Parses a URL; errc::bad_request naming what is wrong (https/wss are not supported).
base::result<url_parts> parse_url(const std::string& url);

/// A response: status, lower-cased header names, body.
struct http_reply {
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
  bool keep_alive = true;  ///< false when the server will close the connection
};

/// Extra request headers, name and value, sent in order.
using header_list = std::vector<std::pair<std::string, std::string>>;

/// One keep-alive connection; requests go out one after the other.
class http_connection {
 public:
  explicit http_connection(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~http_connection();
  http_connection(const http_connection&) = delete;
  http_connection& operator=(const http_connection&) = delete;
  http_connection(http_connection&&) noexcept;
  http_connection& operator=(http_connection&&) noexcept;

  /// Connects to HOST:PORT. errc::unavailable when the connection fails.
  [[nodiscard]] base::result<void> connect(const std::string& host, std::uint16_t port);
  /// Sends one request and reads the reply. Errors: errc::timeout,
  /// errc::unavailable (connection closed or reset: reconnect to go on).
  [[nodiscard]] base::result<http_reply> request(method m, const std::string& target,
                                                 const std::string& body = {},
                                                 const header_list& headers = {});
  /// Sends raw bytes as they are (tests of malformed input) and reads one reply.
  [[nodiscard]] base::result<http_reply> raw(const std::string& bytes);
  /// Sends raw bytes without waiting for anything.
  [[nodiscard]] base::result<void> send_raw(const std::string& bytes);
  /// Reads one reply (after send_raw).
  [[nodiscard]] base::result<http_reply> read_reply();
  /// True when the server closed its side (EOF) - waits at most the timeout.
  bool peer_closed();
  void close();
  bool connected() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// One request on a fresh connection: `url` is the server base
/// ("http://127.0.0.1:7700"), `target` the path and query. A non-empty `token`
/// goes out as `Authorization: Bearer`; a non-empty body as application/json.
base::result<http_reply> http_call(const std::string& url, method m, const std::string& target,
                                   const std::string& body = {}, const std::string& token = {},
                                   std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace troupe::protocols::client
