#pragma once
// One WebSocket session per /v1/ws connection: reads requests (rate limit,
// frame size, authorization per op), answers them through the control_port,
// and writes its outbox (replies, snapshots, events) one frame at a time on
// its strand. The event fan-out that drives it is in fanout.cpp.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "server_core.hpp"
#include "session_outbox.hpp"
#include "troupe/protocols/control/access.hpp"
#include "troupe/protocols/control/ws_protocol.hpp"

namespace troupe::protocols::control::detail {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using nlohmann::json;

class ws_session : public std::enable_shared_from_this<ws_session> {
 public:
  ws_session(std::shared_ptr<core> c, tcp::socket&& socket, principal who)
      : core_(std::move(c)),
        ws_(std::move(socket)),
        executor_(ws_.get_executor()),
        who_(std::move(who)),
        queue_cap_(static_cast<std::size_t>(std::max(1, core_->opts.settings.send_queue))),
        out_(core_->log, queue_cap_, batch_bytes),
        bucket_(core_->opts.settings.requests_per_sec, core_->opts.settings.requests_per_sec) {}

  ~ws_session() { finish(); }

  void start(http::request<http::string_body> req);

  /// Wake pass (core::park_mu held): true when there is something to write.
  bool wake_check();

  /// Any thread: applies the send-queue bound to a session that fell far
  /// behind the log (e.g. a stalled client whose write never completes), so
  /// it cannot pin the log's memory.
  void bound_lag(std::uint64_t head);

  /// Strand only: writes the next frame unless a write is in flight.
  /// `after_write`: called as a write completed; a batched subscriber with
  /// only events to send then waits for the next wake pass (see core).
  void do_write(bool after_write = false);

  /// Log position this session has read up to (lock-free estimate).
  std::uint64_t behind(std::uint64_t head) const { return out_.behind(head); }

  bool parked_ = false;  // guarded by core::park_mu

  /// On the strand: close with 1001 going away (server stop).
  void begin_shutdown();

  /// Only when no I/O thread runs: close the socket so pending handlers finish.
  void force_close();

  const asio::any_io_executor& executor() const { return executor_; }

 private:
  void on_accept(beast::error_code ec);
  void do_read();
  void on_read(beast::error_code ec);
  // Replies queued plus port calls still out (strand only).
  std::size_t reply_backlog();
  // Every frame, well-formed or not, takes a token; true (and an overloaded
  // answer sent) when the connection is over its rate.
  bool rate_limited(const json& id);
  void handle_frame(const std::string& text);

  // Calls the port and hands the reply, on our strand, to `then`.
  template <class Then>
  void call_port(const std::string& op, json args, Then then);
  void subscribe(const ws_request& req);
  void finish_snapshot(json data);
  void unsubscribe(const ws_request& req);

  // Strand only.
  void enqueue_reply(std::string frame);
  void close_with(websocket::close_code code, const std::string& reason);
  void on_closed();
  void finish();
  std::shared_ptr<core> core_;  // first: destroyed last (it owns the io_context)
  websocket::stream<beast::tcp_stream> ws_;
  asio::any_io_executor executor_;
  principal who_;
  http::request<http::string_body> req_;
  beast::flat_buffer rbuf_;
  const std::size_t queue_cap_;
  const std::size_t reply_cap_ = 1024;  // unread replies before we stop reading requests
  // A batched frame stops growing here: big enough that a busy subscriber
  // costs one write per many events, small enough that a thousand writes in
  // flight stay within tens of megabytes.
  static constexpr std::size_t batch_bytes = 64 * 1024;

  // Shared with the housekeeping passes of other threads.
  std::mutex mu_;
  session_outbox out_;
  bool closed_ = false;

  // Strand only.
  token_bucket bucket_;
  std::string current_;  // the frame being written (its capacity is reused)
  bool writing_ = false;
  bool closing_ = false;
  bool accepted_ = false;
  bool read_paused_ = false;
  std::size_t inflight_ = 0;
  std::atomic<bool> finished_{false};
};

}  // namespace troupe::protocols::control::detail
