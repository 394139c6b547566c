// The only translation unit of the control server that sees Boost.Beast/asio
// (STYLE §5, CAF-NOTES §8: each Beast TU costs ~1 GB and tens of seconds).
// Routing, access rules and the troupe.v1 frame logic live in plain C++ files
// next to this one; here are only sockets, strands and queues.
#include "troupe/protocols/control/control_server.hpp"

#include <pthread.h>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <spdlog/spdlog.h>

#include "event_log.hpp"
#include "server_metrics.hpp"
#include "session_outbox.hpp"
#include "troupe/base/clock.hpp"
#include "troupe/protocols/control/access.hpp"
#include "troupe/protocols/control/http_routes.hpp"
#include "troupe/protocols/control/ws_protocol.hpp"

namespace troupe::protocols::control {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using nlohmann::json;
using std::chrono::milliseconds;

std::shared_ptr<spdlog::logger> logger() {
  auto l = spdlog::get("control");
  return l ? l : spdlog::default_logger();
}

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
  std::mutex park_mu;
  std::vector<std::weak_ptr<ws_session>> parked;
  std::atomic<std::size_t> parked_count{0};
  std::atomic<bool> wake_posted{false};
  std::atomic<bool> bound_posted{false};

  void publish(const std::shared_ptr<const event>& ev);
  void park(const std::shared_ptr<ws_session>& s);
  void request_wake();
  void wake_pass();
  void bound_pass();
};

// ---------------------------------------------------------------------------
// WebSocket session: one per /v1/ws connection.
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

  void start(http::request<http::string_body> req) {
    req_ = std::move(req);
    const auto& s = core_->opts.settings;
    websocket::stream_base::timeout t{};
    t.handshake_timeout = milliseconds(core_->opts.handshake_timeout_ms);
    t.idle_timeout = s.idle_timeout_ms > 0 ? websocket::stream_base::duration(milliseconds(s.idle_timeout_ms))
                                           : websocket::stream_base::none();
    t.keep_alive_pings = true;
    ws_.set_option(t);
    // One frame per write: a batch of events goes out in one syscall instead
    // of 4 KB fragments.
    ws_.auto_fragment(false);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "troupe"); }));
    // Our own check (on_read) closes with a reason; this is only a backstop for
    // a single huge frame header.
    ws_.read_message_max(std::max<std::uint64_t>(static_cast<std::uint64_t>(s.max_frame_bytes) * 4, 65536));
    ws_.async_accept(req_, [self = shared_from_this()](beast::error_code ec) { self->on_accept(ec); });
  }

  /// Wake pass (core::park_mu held): true when there is something to write.
  bool wake_check() {
    std::lock_guard lock(mu_);
    return !closed_ && out_.ready();
  }

  /// Any thread: applies the send-queue bound to a session that fell far
  /// behind the log (e.g. a stalled client whose write never completes), so
  /// it cannot pin the log's memory.
  void bound_lag(std::uint64_t head) {
    if (out_.behind(head) <= 2 * queue_cap_) return;  // spill() leaves up to 2x (see there)
    std::uint64_t drops = 0;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      out_.spill();
      drops = out_.take_drops();
    }
    if (drops > 0) core_->metrics.count_dropped(drops);
  }

  /// Strand only: writes the next frame unless a write is in flight.
  void do_write() {
    if (writing_ || closing_ || !accepted_) return;
    bool have = false, subscribed = false;
    std::uint64_t drops = 0;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      have = out_.next_frame(current_, base::now_ms());
      drops = out_.take_drops();
      subscribed = out_.subscribed();
    }
    if (drops > 0) core_->metrics.count_dropped(drops);
    if (!have) {
      if (subscribed) core_->park(shared_from_this());
      return;
    }
    writing_ = true;
    ws_.text(true);
    ws_.async_write(asio::buffer(current_),
                    [self = shared_from_this()](beast::error_code ec, std::size_t) {
                      self->writing_ = false;
                      if (ec) return self->on_closed();
                      if (self->read_paused_ && self->reply_backlog() < self->reply_cap_ / 2) {
                        self->read_paused_ = false;
                        self->do_read();
                      }
                      self->do_write();
                    });
  }

  /// Log position this session has read up to (lock-free estimate).
  std::uint64_t behind(std::uint64_t head) const { return out_.behind(head); }

  bool parked_ = false;  // guarded by core::park_mu

  /// On the strand: close with 1001 going away (server stop).
  void begin_shutdown() {
    if (!accepted_) {
      force_close();
      return;
    }
    close_with(websocket::close_code::going_away, "server shutting down");
  }

  /// Only when no I/O thread runs: close the socket so pending handlers finish.
  void force_close() {
    beast::error_code ec;
    beast::get_lowest_layer(ws_).socket().close(ec);
  }

  const asio::any_io_executor& executor() const { return executor_; }

 private:
  void on_accept(beast::error_code ec) {
    if (ec) {
      logger()->debug("control ws handshake failed error={}", ec.message());
      return on_closed();
    }
    accepted_ = true;
    core_->add_ws(weak_from_this());
    if (core_->stopping) return begin_shutdown();
    do_read();
  }

  void do_read() {
    if (closing_) return;
    ws_.async_read_some(rbuf_, 64 * 1024,
                        [self = shared_from_this()](beast::error_code ec, std::size_t) {
                          self->on_read(ec);
                        });
  }

  void on_read(beast::error_code ec) {
    if (ec) return on_closed();
    const auto max_frame = static_cast<std::size_t>(core_->opts.settings.max_frame_bytes);
    if (rbuf_.size() > max_frame) {
      rbuf_.consume(rbuf_.size());
      return close_with(websocket::close_code::too_big,
                        "message too big: limit is " + std::to_string(max_frame) + " bytes");
    }
    if (!ws_.is_message_done()) return do_read();
    core_->metrics.count_ws_frame_in();
    const bool binary = ws_.got_binary();
    std::string text = beast::buffers_to_string(rbuf_.data());
    rbuf_.consume(rbuf_.size());
    try {
      if (binary && !rate_limited(nullptr))
        enqueue_reply(render_error(nullptr, base::make_error(base::errc::bad_request,
                                                             "binary frames are not supported; "
                                                             "send JSON text frames")));
      else if (!binary)
        handle_frame(text);
    } catch (const std::exception& e) {
      // Catch-all: no client frame may take the session (or daemon) down.
      logger()->error("control ws frame handling failed what={}", e.what());
      enqueue_reply(render_error(nullptr, base::make_error(base::errc::internal,
                                                           std::string("internal error: ") + e.what())));
    }
    // A client that sends requests without reading the answers is not read
    // from until its replies drain (on_write resumes), so memory stays bounded.
    if (reply_backlog() >= reply_cap_) {
      read_paused_ = true;
      return;
    }
    do_read();
  }

  // Replies queued plus port calls still out (strand only).
  std::size_t reply_backlog() {
    std::lock_guard lock(mu_);
    return out_.queued_replies() + inflight_;
  }

  // Every frame, well-formed or not, takes a token; true (and an overloaded
  // answer sent) when the connection is over its rate.
  bool rate_limited(const json& id) {
    if (bucket_.take(std::chrono::steady_clock::now())) return false;
    enqueue_reply(render_error(
        id, base::make_error(base::errc::overloaded,
                             "rate limit exceeded: at most " +
                                 std::to_string(core_->opts.settings.requests_per_sec) +
                                 " requests per second per connection",
                             true)));
    return true;
  }

  void handle_frame(const std::string& text) {
    auto req = parse_request_frame(text);
    if (rate_limited(req ? req->id : req.error().id)) return;
    if (!req) return enqueue_reply(render_error(req.error().id, req.error().err));
    if (auto allowed = authorize(who_, req->op); !allowed)
      return enqueue_reply(render_error(req->id, allowed.error()));
    if (req->op == "hello") {
      return enqueue_reply(render_ok(req->id, json{{"protocol", protocol_name},
                                                   {"server", "troupe"},
                                                   {"principal", who_.name},
                                                   {"role", role_name(who_.granted)}}));
    }
    if (req->op == "subscribe") return subscribe(*req);
    if (req->op == "unsubscribe") return unsubscribe(*req);
    // "id" is taken by the request id on the wire, so task ops name their task
    // "task"; the port sees "id" as it does for the HTTP routes.
    if ((req->op == "task" || req->op == "cancel") && req->args.contains("task") &&
        !req->args.contains("id"))
      req->args["id"] = req->args["task"];
    call_port(req->op, std::move(req->args),
              [id = req->id](std::shared_ptr<ws_session> self, base::result<json> r) {
                self->enqueue_reply(r ? render_ok(id, *r) : render_error(id, r.error()));
              });
  }

  // Calls the port and hands the reply, on our strand, to `then`.
  template <class Then>
  void call_port(const std::string& op, json args, Then then) {
    ++inflight_;
    try {
      core_->port.call(who_, op, std::move(args),
                       [self = shared_from_this(), then](base::result<json> r) mutable {
                         auto ex = self->executor_;
                         self->core_->post(ex, [self, then, r = std::move(r)]() mutable {
                           --self->inflight_;
                           then(self, std::move(r));
                         });
                       });
    } catch (const std::exception& e) {
      --inflight_;
      then(shared_from_this(), base::fail(base::errc::internal, "op '" + op + "' failed: " + e.what()));
    }
  }

  void subscribe(const ws_request& req) {
    auto filter = parse_subscription(req.args);
    if (!filter) return enqueue_reply(render_error(req.id, filter.error()));
    std::uint64_t sub = 0;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      if (!out_.subscribed()) core_->subscribed.fetch_add(1);
      sub = out_.subscribe(*filter);  // live events wait until the snapshot went out
    }
    enqueue_reply(render_ok(req.id, json{{"subscription", sub}}));

    struct part {
      std::string key, op;
      json args;
    };
    std::vector<part> parts;
    json scope = json::object();
    if (!filter->team.empty()) scope["team"] = filter->team;
    if (filter->topics.count("agents")) parts.push_back({"agents", "agents", scope});
    if (filter->topics.count("tasks")) {
      if (!filter->task.empty())
        parts.push_back({"tasks", "task", json{{"id", filter->task}}});
      else
        parts.push_back({"tasks", "tasks", scope});
    }
    if (filter->topics.count("decisions")) parts.push_back({"decisions", "decisions", scope});
    struct collector {
      json data = json::object();
      std::size_t remaining = 0;
    };
    auto col = std::make_shared<collector>();
    col->data["subscription"] = sub;
    col->remaining = parts.size();
    if (parts.empty()) return finish_snapshot(col->data);
    for (auto& p : parts) {
      call_port(p.op, std::move(p.args),
                [col, key = p.key, single = p.op == "task"](std::shared_ptr<ws_session> self,
                                                            base::result<json> r) {
                  if (!r) {
                    col->data[key] = json{{"error",
                                           {{"code", base::to_string(r.error().code)},
                                            {"message", r.error().message}}}};
                  } else if (single) {
                    col->data[key] = json::array({*r});
                  } else if (r->is_object() && r->contains(key)) {
                    col->data[key] = (*r)[key];  // tolerate {"agents":[...]} wrappers
                  } else {
                    col->data[key] = std::move(*r);
                  }
                  if (--col->remaining == 0) self->finish_snapshot(std::move(col->data));
                });
    }
  }

  void finish_snapshot(json data) {
    {
      std::lock_guard lock(mu_);
      out_.add_snapshot(std::move(data));
    }
    do_write();
  }

  void unsubscribe(const ws_request& req) {
    auto it = req.args.find("subscription");
    if (it == req.args.end() || !it->is_number_integer())
      return enqueue_reply(render_error(
          req.id, base::make_error(base::errc::bad_request,
                                   "unsubscribe needs 'subscription': the integer returned by subscribe")));
    const auto sub = it->get<std::int64_t>();
    bool found = false;
    {
      std::lock_guard lock(mu_);
      found = sub > 0 && out_.unsubscribe(static_cast<std::uint64_t>(sub));
      if (found && !out_.subscribed()) core_->subscribed.fetch_sub(1);
    }
    if (!found)
      return enqueue_reply(render_error(
          req.id, base::make_error(base::errc::not_found,
                                   "no subscription " + std::to_string(sub) + " on this connection")));
    enqueue_reply(render_ok(req.id, json{{"subscription", sub}, {"unsubscribed", true}}));
  }

  // Strand only.
  void enqueue_reply(std::string frame) {
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      out_.add_reply(std::move(frame));
    }
    do_write();
  }

  void close_with(websocket::close_code code, const std::string& reason) {
    if (closing_) return;
    closing_ = true;
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    ws_.async_close(websocket::close_reason(code, reason),
                    [self = shared_from_this()](beast::error_code) { self->on_closed(); });
  }

  void on_closed() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      if (out_.subscribed()) core_->subscribed.fetch_sub(1);
      out_.clear();
    }
    finish();
  }

  void finish() {
    if (finished_.exchange(true)) return;
    core_->session_finished();
  }

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

// ---------------------------------------------------------------------------
// Event fan-out (core methods that need the session type).

// A runtime thread: serialise once, append, wake parked sessions.
void core::publish(const std::shared_ptr<const event>& ev) {
  if (stopping || subscribed.load() == 0) return;  // nobody listens: do not serialise
  const auto position = log.append(prepare_event(ev));
  if (parked_count.load() > 0) request_wake();
  // Once per chunk, bound how far behind any session may fall.
  if (event_log::starts_chunk(position) && !bound_posted.exchange(true)) {
    std::weak_ptr<core> weak = weak_from_this();
    post(ioc->get_executor(), [weak] {
      if (auto c = weak.lock()) c->bound_pass();
    });
  }
}

// Strand of `s`: it had nothing to write. The seq_cst pair (parked_count here,
// the log head in publish) makes sure an event appended meanwhile is not
// missed: either publish sees the session parked, or the session sees the event.
void core::park(const std::shared_ptr<ws_session>& s) {
  {
    std::lock_guard lock(park_mu);
    if (s->parked_) return;
    s->parked_ = true;
    parked.push_back(s);
    parked_count.fetch_add(1);
  }
  if (s->behind(log.head()) > 0) request_wake();
}

void core::request_wake() {
  if (wake_posted.exchange(true)) return;
  std::weak_ptr<core> weak = weak_from_this();
  post(ioc->get_executor(), [weak] {
    if (auto c = weak.lock()) c->wake_pass();
  });
}

// Any I/O thread: wakes the parked sessions that have something to write.
void core::wake_pass() {
  wake_posted.store(false);  // events appended from now on ask for another pass
  std::vector<std::shared_ptr<ws_session>> ready;
  {
    std::lock_guard lock(park_mu);
    std::erase_if(parked, [&](const std::weak_ptr<ws_session>& w) {
      auto s = w.lock();
      if (s && !s->wake_check()) return false;
      if (s) {
        s->parked_ = false;
        ready.push_back(std::move(s));
      }
      parked_count.fetch_sub(1);
      return true;
    });
  }
  for (auto& s : ready) post(s->executor(), [s] { s->do_write(); });
}

void core::bound_pass() {
  bound_posted.store(false);
  const auto head = log.head();
  for (const auto& w : *ws_snapshot())
    if (auto s = w.lock()) s->bound_lag(head);
}

// ---------------------------------------------------------------------------
// HTTP session: one per TCP connection until it upgrades or closes. Requests
// are handled one at a time (read, answer, read the next), so pipelined
// requests are answered in order.
class http_session : public std::enable_shared_from_this<http_session> {
 public:
  http_session(std::shared_ptr<core> c, tcp::socket&& socket)
      : core_(std::move(c)), stream_(std::move(socket)), timer_(stream_.get_executor()) {}

  void start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
  }

  /// On the strand: server stop.
  void shutdown_now() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
    timer_.cancel();
  }
  void force_close() {
    beast::error_code ec;
    stream_.socket().close(ec);
    timer_.cancel();
  }
  asio::any_io_executor executor() { return stream_.get_executor(); }

 private:
  void do_read() {
    if (core_->stopping) return shutdown_now();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(core_->opts.max_header_bytes));
    parser_->body_limit(static_cast<std::uint64_t>(std::max<std::int64_t>(0, core_->opts.settings.max_body_bytes)));
    timed_out_ = false;
    reading_ = true;
    const auto gen = ++read_gen_;
    stream_.expires_never();
    // Our own timer rather than the stream's expiry: on a slow-loris we still
    // want to answer 408 before closing.
    timer_.expires_after(milliseconds(core_->opts.request_timeout_ms));
    timer_.async_wait([weak = weak_from_this(), gen](beast::error_code ec) {
      if (ec) return;
      if (auto self = weak.lock(); self && self->reading_ && self->read_gen_ == gen) {
        self->timed_out_ = true;
        beast::error_code ignored;
        self->stream_.socket().cancel(ignored);
      }
    });
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    reading_ = false;
    timer_.cancel();
    label_ = "other";
    close_after_ = true;  // every error below ends the connection
    if (ec == http::error::end_of_stream) return linger_close();
    if (timed_out_) {
      if (parser_->got_some() || buffer_.size() > 0)
        return send_error(408, base::make_error(base::errc::bad_request,
                                                "request not received completely within " +
                                                    std::to_string(core_->opts.request_timeout_ms) + " ms"));
      return linger_close();  // an idle keep-alive connection simply ends
    }
    if (ec == http::error::body_limit)
      return send_error(413, base::make_error(base::errc::bad_request,
                                              "request body exceeds the limit of " +
                                                  std::to_string(core_->opts.settings.max_body_bytes) +
                                                  " bytes (control.max_body_bytes)"));
    if (ec == http::error::header_limit)
      return send_error(431, base::make_error(base::errc::bad_request,
                                              "request header exceeds the limit of " +
                                                  std::to_string(core_->opts.max_header_bytes) + " bytes"));
    if (ec && ec.category() == http::make_error_code(http::error::bad_chunk).category()) {
      const bool chunk = ec == http::error::bad_chunk || ec == http::error::bad_chunk_extension;
      return send_error(400, base::make_error(base::errc::bad_request,
                                              std::string(chunk ? "bad chunked encoding: "
                                                                : "malformed HTTP request: ") +
                                                  ec.message()));
    }
    if (ec) return shutdown_now();
    auto req = parser_->release();
    try {
      handle(std::move(req));
    } catch (const std::exception& e) {
      logger()->error("control http request failed what={}", e.what());
      close_after_ = true;
      send_error(500, base::make_error(base::errc::internal, std::string("internal error: ") + e.what()));
    }
  }

  std::string token_of(const http::request<http::string_body>& req) const {
    auto token = bearer_token(req[http::field::authorization]);
    if (token.empty()) {
      auto q = parse_query(req.target());
      if (auto it = q.find("access_token"); it != q.end()) token = it->second;
    }
    return token;
  }

  void handle(http::request<http::string_body> req) {
    close_after_ = !req.keep_alive();
    const std::string target(req.target());
    if (websocket::is_upgrade(req) && target_path(target) == "/v1/ws") return upgrade(std::move(req));
    auto r = resolve_route(req.method_string(), target, req.body());
    label_ = r.label;
    if (r.kind == route_kind::reject) return send_error(r.status, r.err, r.allow);
    principal who{"probe", config::role::viewer};
    if (r.needs_auth) {
      auto p = authenticate(core_->opts.settings, token_of(req));
      if (!p) return send_error(401, p.error());
      who = *p;
    }
    switch (r.kind) {
      case route_kind::healthz:
        return send(200, "application/json", R"({"status":"ok"})");
      case route_kind::metrics: {
        if (auto ok = authorize(who, "metrics"); !ok) return send_error(403, ok.error());
        auto text = core_->port.metrics_text();
        if (!text.empty() && text.back() != '\n') text += '\n';
        text += core_->metrics.render(core_->ws_count.load());
        return send(200, "text/plain; version=0.0.4; charset=utf-8", std::move(text));
      }
      case route_kind::readyz:
        return call_port(who, "ready", json::object(), 200, true);
      case route_kind::op: {
        if (auto ok = authorize(who, r.op); !ok) return send_error(http_status(ok.error().code), ok.error());
        return call_port(who, r.op, std::move(r.args), r.success_status, false);
      }
      default:
        return send_error(404, base::make_error(base::errc::not_found, "no route"));
    }
  }

  void call_port(const principal& who, const std::string& op, json args, int success, bool ready) {
    try {
      core_->port.call(who, op, std::move(args),
                       [self = shared_from_this(), success, ready](base::result<json> r) mutable {
                         auto ex = self->stream_.get_executor();
                         self->core_->post(ex, [self, success, ready, r = std::move(r)]() mutable {
                           self->on_reply(std::move(r), success, ready);
                         });
                       });
    } catch (const std::exception& e) {
      send_error(500, base::make_error(base::errc::internal, "op '" + op + "' failed: " + e.what()));
    }
  }

  void on_reply(base::result<json> r, int success, bool ready) {
    if (core_->stopping) return shutdown_now();
    if (r) return send(success, "application/json", r->dump(-1, ' ', false, json::error_handler_t::replace));
    send_error(ready ? 503 : http_status(r.error().code), r.error());
  }

  void upgrade(http::request<http::string_body> req) {
    label_ = "/v1/ws";
    auto who = authenticate(core_->opts.settings, token_of(req));
    if (!who) return send_error(401, who.error());
    if (core_->stopping) {
      close_after_ = true;
      return send_error(503, base::make_error(base::errc::unavailable, "server is shutting down"));
    }
    const auto max = static_cast<std::size_t>(std::max(0, core_->opts.settings.max_clients));
    if (core_->ws_count.fetch_add(1) >= max) {
      core_->ws_count.fetch_sub(1);
      core_->metrics.count_ws_rejected();
      close_after_ = true;
      return send_error(503, base::make_error(base::errc::overloaded,
                                              "too many WebSocket clients: limit is " +
                                                  std::to_string(max) + " (control.max_clients)",
                                              true));
    }
    core_->metrics.count_request(label_, 101);
    timer_.cancel();
    auto session = std::make_shared<ws_session>(core_, stream_.release_socket(), std::move(who).value());
    session->start(std::move(req));
  }

  void send_error(int status, const base::error& e, const std::string& allow = {}) {
    send(status, "application/json", error_body(e), allow);
  }

  void send(int status, const std::string& content_type, std::string body, const std::string& allow = {}) {
    res_ = {};
    res_.version(11);
    res_.result(static_cast<unsigned>(status));
    res_.set(http::field::server, "troupe");
    res_.set(http::field::content_type, content_type);
    if (!allow.empty()) res_.set(http::field::allow, allow);
    res_.keep_alive(!close_after_);
    res_.body() = std::move(body);
    res_.prepare_payload();
    core_->metrics.count_request(label_, status);
    stream_.expires_after(std::chrono::seconds(30));
    http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->shutdown_now();
      if (self->close_after_) return self->linger_close();
      self->do_read();
    });
  }

  // Half-close, then read and discard until the peer closes (bounded in time),
  // so unread pipelined bytes do not turn our close into a reset that could
  // destroy the response before the client read it.
  void linger_close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.expires_after(std::chrono::seconds(2));
    drain_ = std::make_shared<std::array<char, 4096>>();
    do_drain();
  }
  void do_drain() {
    stream_.async_read_some(asio::buffer(*drain_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec || self->core_->stopping) return self->force_close();
      self->do_drain();
    });
  }

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

// Splits "HOST:PORT" ("[::1]:7700" for IPv6).
base::result<tcp::endpoint> parse_listen(const std::string& listen) {
  const auto where = "control.listen '" + listen + "': ";
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return base::fail(base::errc::invalid_config, where + "expected HOST:PORT, e.g. 127.0.0.1:7700");
  std::string host = listen.substr(0, colon);
  const std::string port_text = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc{} || ptr != port_text.data() + port_text.size() || port > 65535)
    return base::fail(base::errc::invalid_config, where + "port '" + port_text + "' is not a number in 0..65535");
  beast::error_code aec;
  auto addr = asio::ip::make_address(host, aec);
  if (aec)
    return base::fail(base::errc::invalid_config,
                      where + "'" + host + "' is not an IP address (" + aec.message() + ")");
  return tcp::endpoint(addr, static_cast<unsigned short>(port));
}

}  // namespace

struct control_server::impl {
  impl(server_options o, control_port& p) : c(std::make_shared<core>(std::move(o), p)) {}

  std::shared_ptr<core> c;  // before the acceptor: the acceptor needs the io_context
  std::optional<tcp::acceptor> acceptor;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::shared_ptr<void> listen_token;
  std::string bound;
  std::mutex mu;
  bool started = false;
  bool stopped = false;

  void do_accept() {
    acceptor->async_accept(asio::make_strand(*c->ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || c->stopping || !acceptor->is_open()) return;
      if (ec) {
        logger()->warn("control accept failed error={}", ec.message());
      } else {
        auto session = std::make_shared<http_session>(c, std::move(socket));
        c->add_http(session);
        session->start();
      }
      do_accept();
    });
  }

  void run_thread() {
    pthread_setname_np(pthread_self(), "troupe-ctl-io");  // visible in top -H and perf
    for (;;) {
      try {
        c->ioc->run();
        break;
      } catch (const std::exception& e) {
        // Catch-all: a throwing handler must not end the I/O thread.
        logger()->error("control I/O handler threw what={}", e.what());
      }
    }
  }
};

control_server::control_server(server_options opts, control_port& port)
    : impl_(std::make_unique<impl>(std::move(opts), port)) {}

control_server::~control_server() { stop(); }

base::result<void> control_server::start() {
  auto& m = *impl_;
  std::lock_guard lock(m.mu);
  if (m.started) return base::fail(base::errc::conflict, "control server already started");
  const auto& opts = m.c->opts;
  auto ep = parse_listen(opts.listen);
  if (!ep) return base::fail(ep.error());
  if (!ep->address().is_loopback() && opts.settings.tokens.empty())
    return base::fail(base::errc::invalid_config,
                      "control.listen '" + opts.listen +
                          "' is not a loopback address and control.tokens is empty: refusing to "
                          "serve the control plane without authentication");
  beast::error_code ec;
  m.acceptor.emplace(asio::make_strand(*m.c->ioc));  // close and accept never race
  m.acceptor->open(ep->protocol(), ec);
  if (!ec) m.acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) m.acceptor->bind(*ep, ec);
  if (!ec) m.acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    m.acceptor.reset();
    return base::fail(base::errc::invalid_config,
                      "control.listen '" + opts.listen + "': cannot listen: " + ec.message());
  }
  const auto local = m.acceptor->local_endpoint();
  m.bound = (local.address().is_v6() ? "[" + local.address().to_string() + "]" : local.address().to_string()) +
            ":" + std::to_string(local.port());

  std::weak_ptr<core> weak = m.c;
  m.listen_token = m.c->port.listen([weak](const std::shared_ptr<const event>& ev) {
    if (auto c = weak.lock(); c && ev) c->publish(ev);
  });

  m.work.emplace(m.c->ioc->get_executor());
  m.do_accept();
  const int n = std::max(1, opts.io_threads);
  for (int i = 0; i < n; ++i) m.threads.emplace_back([&m] { m.run_thread(); });
  m.started = true;
  logger()->info("control server listening endpoint={} io_threads={} tokens={}", m.bound, n,
                 opts.settings.tokens.size());
  return {};
}

std::string control_server::endpoint() const {
  std::lock_guard lock(impl_->mu);
  return impl_->bound;
}

std::size_t control_server::clients() const { return impl_->c->ws_count.load(); }

void control_server::stop() {
  auto& m = *impl_;
  std::lock_guard lock(m.mu);
  if (!m.started || m.stopped) return;
  m.stopped = true;
  auto& c = *m.c;
  c.stopping = true;
  m.listen_token.reset();

  asio::post(m.acceptor->get_executor(), [&m] {
    beast::error_code ec;
    m.acceptor->close(ec);
  });
  auto ws_list = c.ws_snapshot();
  for (const auto& w : *ws_list)
    if (auto s = w.lock()) c.post(s->executor(), [s] { s->begin_shutdown(); });
  std::vector<std::shared_ptr<http_session>> https;
  {
    std::lock_guard reg(c.reg_mu);
    for (const auto& w : c.http_list)
      if (auto h = w.lock()) https.push_back(std::move(h));
  }
  for (const auto& h : https) c.post(h->executor(), [h] { h->shutdown_now(); });
  https.clear();
  m.work.reset();

  // Sessions finish their close handshakes on their own (Beast ends a stuck
  // one after the handshake timeout); then the context stops. Idle timers
  // still armed inside Beast hold only weak references, so stopping is safe.
  {
    std::unique_lock idle(c.idle_mu);
    const auto limit = milliseconds(c.opts.handshake_timeout_ms + 1000);
    if (!c.idle_cv.wait_for(idle, limit, [&c] { return c.ws_count.load() == 0; }))
      logger()->warn("control server stop: {} sessions did not close in time, forcing", c.ws_count.load());
  }
  c.ioc->stop();
  for (auto& t : m.threads) t.join();
  m.threads.clear();
  {
    std::unique_lock post_lock(c.post_mu);
    c.io_alive = false;
  }
  // Run what is left on this thread with every socket closed, so no handler
  // stays queued holding a session (and through it the io_context).
  for (const auto& w : *c.ws_snapshot())
    if (auto s = w.lock()) s->force_close();
  {
    std::lock_guard reg(c.reg_mu);
    for (const auto& w : c.http_list)
      if (auto h = w.lock()) h->force_close();
  }
  {
    std::lock_guard park(c.park_mu);
    c.parked.clear();
  }
  beast::error_code ec;
  if (m.acceptor) m.acceptor->close(ec);
  c.ioc->restart();
  while (c.ioc->poll() > 0) {
  }
  logger()->info("control server stopped endpoint={}", m.bound);
}

}  // namespace troupe::protocols::control
