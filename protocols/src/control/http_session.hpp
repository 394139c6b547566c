#pragma once
// HTTP session: one per TCP connection until it upgrades to a WebSocket
// (ws_session) or closes. Requests are handled one at a time (read, answer,
// read the next), so pipelined requests are answered in order.
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "server_core.hpp"
#include "troupe/protocols/control/access.hpp"

namespace troupe::protocols::control::detail {

namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;

class http_session : public std::enable_shared_from_this<http_session> {
 public:
  http_session(std::shared_ptr<core> c, tcp::socket&& socket)
      : core_(std::move(c)), stream_(std::move(socket)), timer_(stream_.get_executor()) {}

  void start();

  /// On the strand: server stop.
  void shutdown_now();
  void force_close();
  asio::any_io_executor executor() { return stream_.get_executor(); }

 private:
  void do_read();
  void on_read(beast::error_code ec);
  std::string token_of(const http::request<http::string_body>& req) const;

  void handle(http::request<http::string_body> req);
  void call_port(const principal& who, const std::string& op, json args, int success, bool ready);
  void on_reply(base::result<json> r, int success, bool ready);
  void upgrade(http::request<http::string_body> req);
  void send_error(int status, const base::error& e, const std::string& allow = {});
  void send(int status, const std::string& content_type, std::string body, const std::string& allow = {});
  // Half-close, then read and discard until the peer closes (bounded in time),
  // so unread pipelined bytes do not turn our close into a reset that could
  // destroy the response before the client read it.
  void linger_close();
  void do_drain();
  std::shared_ptr<core> core_;  // first: destroyed last (it owns the io_context)
  beast::tcp_stream stream_;
  asio::steady_timer timer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
  std::shared_ptr<std::array<char, 4096>> drain_;
  std::string label_ = "other";
  std::uint64_t read_gen_ = 0;
  bool reading_ = false;
  bool timed_out_ = false;
  bool close_after_ = false;
};

}  // namespace troupe::protocols::control::detail
