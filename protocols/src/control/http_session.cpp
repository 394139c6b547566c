#include "http_session.hpp"

#include <algorithm>
#include <chrono>

#include <boost/asio/dispatch.hpp>
#include <boost/beast/websocket.hpp>

#include "troupe/protocols/control/http_routes.hpp"
#include "ws_session.hpp"

namespace troupe::protocols::control::detail {

using std::chrono::milliseconds;

void http_session::start() {
  asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
}

void http_session::shutdown_now() {
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream_.socket().close(ec);
  timer_.cancel();
}

void http_session::force_close() {
  beast::error_code ec;
  stream_.socket().close(ec);
  timer_.cancel();
}

void http_session::do_read() {
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

void http_session::on_read(beast::error_code ec) {
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

std::string http_session::token_of(const http::request<http::string_body>& req) const {
  auto token = bearer_token(req[http::field::authorization]);
  if (token.empty()) {
    auto q = parse_query(req.target());
    if (auto it = q.find("access_token"); it != q.end()) token = it->second;
  }
  return token;
}

void http_session::handle(http::request<http::string_body> req) {
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

void http_session::call_port(const principal& who, const std::string& op, json args, int success, bool ready) {
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

void http_session::on_reply(base::result<json> r, int success, bool ready) {
  if (core_->stopping) return shutdown_now();
  if (r) return send(success, "application/json", r->dump(-1, ' ', false, json::error_handler_t::replace));
  send_error(ready ? 503 : http_status(r.error().code), r.error());
}

void http_session::upgrade(http::request<http::string_body> req) {
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

void http_session::send_error(int status, const base::error& e, const std::string& allow) {
  send(status, "application/json", error_body(e), allow);
}

void http_session::send(int status, const std::string& content_type, std::string body, const std::string& allow) {
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

void http_session::linger_close() {
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream_.expires_after(std::chrono::seconds(2));
  drain_ = std::make_shared<std::array<char, 4096>>();
  do_drain();
}

void http_session::do_drain() {
  stream_.async_read_some(asio::buffer(*drain_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
    if (ec || self->core_->stopping) return self->force_close();
    self->do_drain();
  });
}

}  // namespace troupe::protocols::control::detail
