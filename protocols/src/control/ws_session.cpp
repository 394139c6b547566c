#include "ws_session.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include "troupe/base/clock.hpp"

namespace troupe::protocols::control::detail {

using std::chrono::milliseconds;

void ws_session::start(http::request<http::string_body> req) {
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

bool ws_session::wake_check() {
  std::lock_guard lock(mu_);
  return !closed_ && out_.ready();
}

void ws_session::bound_lag(std::uint64_t head) {
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

void ws_session::do_write(bool after_write) {
  if (writing_ || closing_ || !accepted_) return;
  bool have = false, subscribed = false, pace = false;
  std::uint64_t drops = 0;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    // A frame that filled up means more is waiting: no pause then.
    pace = after_write && out_.batched() && !out_.urgent() && current_.size() < batch_bytes;
    if (!pace) have = out_.next_frame(current_, base::now_ms());
    drops = out_.take_drops();
    subscribed = out_.subscribed();
  }
  if (drops > 0) core_->metrics.count_dropped(drops);
  if (!have) {
    if (!subscribed) return;
    core_->park(shared_from_this());
    // Pausing, it may hold events the log no longer shows (spilled ones).
    if (pace) core_->request_wake();
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
                    self->do_write(true);
                  });
}

void ws_session::begin_shutdown() {
  if (!accepted_) {
    force_close();
    return;
  }
  close_with(websocket::close_code::going_away, "server shutting down");
}

void ws_session::force_close() {
  beast::error_code ec;
  beast::get_lowest_layer(ws_).socket().close(ec);
}

void ws_session::on_accept(beast::error_code ec) {
  if (ec) {
    logger()->debug("control ws handshake failed error={}", ec.message());
    return on_closed();
  }
  accepted_ = true;
  core_->add_ws(weak_from_this());
  if (core_->stopping) return begin_shutdown();
  do_read();
}

void ws_session::do_read() {
  if (closing_) return;
  ws_.async_read_some(rbuf_, 64 * 1024,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        self->on_read(ec);
                      });
}

void ws_session::on_read(beast::error_code ec) {
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

std::size_t ws_session::reply_backlog() {
  std::lock_guard lock(mu_);
  return out_.queued_replies() + inflight_;
}

bool ws_session::rate_limited(const json& id) {
  if (bucket_.take(std::chrono::steady_clock::now())) return false;
  enqueue_reply(render_error(
      id, base::make_error(base::errc::overloaded,
                           "rate limit exceeded: at most " +
                               std::to_string(core_->opts.settings.requests_per_sec) +
                               " requests per second per connection",
                           true)));
  return true;
}

template <class Then>
void ws_session::call_port(const std::string& op, json args, Then then) {
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

void ws_session::handle_frame(const std::string& text) {
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

void ws_session::subscribe(const ws_request& req) {
  auto filter = parse_subscription(req.args);
  if (!filter) return enqueue_reply(render_error(req.id, filter.error()));
  std::uint64_t sub = 0;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    if (!out_.subscribed()) core_->add_subscriber();
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

void ws_session::finish_snapshot(json data) {
  {
    std::lock_guard lock(mu_);
    out_.add_snapshot(std::move(data));
  }
  do_write();
}

void ws_session::unsubscribe(const ws_request& req) {
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
    if (found && !out_.subscribed()) core_->remove_subscriber();
  }
  if (!found)
    return enqueue_reply(render_error(
        req.id, base::make_error(base::errc::not_found,
                                 "no subscription " + std::to_string(sub) + " on this connection")));
  enqueue_reply(render_ok(req.id, json{{"subscription", sub}, {"unsubscribed", true}}));
}

void ws_session::enqueue_reply(std::string frame) {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    out_.add_reply(std::move(frame));
  }
  do_write();
}

void ws_session::close_with(websocket::close_code code, const std::string& reason) {
  if (closing_) return;
  closing_ = true;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  ws_.async_close(websocket::close_reason(code, reason),
                  [self = shared_from_this()](beast::error_code) { self->on_closed(); });
}

void ws_session::on_closed() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    if (out_.subscribed()) core_->remove_subscriber();
    out_.clear();
  }
  finish();
}

void ws_session::finish() {
  if (finished_.exchange(true)) return;
  core_->session_finished();
}

}  // namespace troupe::protocols::control::detail
