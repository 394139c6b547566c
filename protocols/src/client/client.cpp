// The control-plane client: the one Beast TU on the client side (HTTP and
// WebSocket together, to pay the Beast compile cost once). Every call drives a
// private io_context on the calling thread, so timeouts are plain deadlines on
// asynchronous operations and nothing runs in the background.
#include <charconv>
#include <deque>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "troupe/protocols/client/http_client.hpp"
#include "troupe/protocols/client/ws_client.hpp"

namespace troupe::protocols::client {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using nlohmann::json;

http::verb to_verb(method m) {
  switch (m) {
    case method::get: return http::verb::get;
    case method::post: return http::verb::post;
    case method::put: return http::verb::put;
    case method::del: return http::verb::delete_;
  }
  return http::verb::get;
}

// Runs the context until `done` is set or the deadline passes.
bool run_until(asio::io_context& ioc, const bool& done, std::chrono::steady_clock::time_point deadline) {
  ioc.restart();
  while (!done) {
    if (ioc.run_one_until(deadline) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      ioc.restart();
    }
  }
  return true;
}

base::error io_error(const std::string& what, const beast::error_code& ec) {
  if (ec == beast::error::timeout || ec == asio::error::timed_out)
    return base::make_error(base::errc::timeout, what + ": timed out", true);
  return base::make_error(base::errc::unavailable, what + ": " + ec.message(), true);
}

// Turns an error reply {"error":{"code","message"}} (or any status) into an error.
base::error reply_error(int status, const std::string& body) {
  base::errc code = status == 401   ? base::errc::unauthorized
                    : status == 403 ? base::errc::forbidden
                    : status == 404 ? base::errc::not_found
                    : status == 409 ? base::errc::conflict
                    : status == 402 ? base::errc::budget_exceeded
                    : status == 429 ? base::errc::overloaded
                    : status == 503 ? base::errc::unavailable
                    : status >= 500 ? base::errc::internal
                                    : base::errc::bad_request;
  std::string message = body;
  try {
    auto doc = json::parse(body);
    if (doc.is_object() && doc.contains("error") && doc["error"].is_object()) {
      const auto& e = doc["error"];
      if (auto c = base::errc_from_string(e.value("code", std::string()))) code = *c;
      message = e.value("message", body);
    }
  } catch (const json::exception&) {
  }
  return base::make_error(code, "HTTP " + std::to_string(status) + ": " + message);
}

}  // namespace

base::result<url_parts> parse_url(const std::string& url) {
  url_parts u;
  const auto sep = url.find("://");
  if (sep == std::string::npos)
    return base::fail(base::errc::bad_request, "URL '" + url + "' has no scheme; use http://HOST:PORT");
  u.scheme = url.substr(0, sep);
  if (u.scheme == "https" || u.scheme == "wss")
    return base::fail(base::errc::bad_request, "URL '" + url + "': TLS is not supported by this client");
  if (u.scheme != "http" && u.scheme != "ws")
    return base::fail(base::errc::bad_request, "URL '" + url + "': scheme must be http or ws");
  auto rest = url.substr(sep + 3);
  const auto slash = rest.find('/');
  if (slash != std::string::npos) {
    u.path = rest.substr(slash);
    rest = rest.substr(0, slash);
  }
  std::string port_text;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string::npos)
      return base::fail(base::errc::bad_request, "URL '" + url + "': unterminated [IPv6] host");
    u.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size() && rest[close + 1] == ':') port_text = rest.substr(close + 2);
  } else {
    const auto colon = rest.rfind(':');
    u.host = rest.substr(0, colon);
    if (colon != std::string::npos) port_text = rest.substr(colon + 1);
  }
  if (u.host.empty()) return base::fail(base::errc::bad_request, "URL '" + url + "' has no host");
  if (!port_text.empty()) {
    unsigned port = 0;
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc{} || ptr != port_text.data() + port_text.size() || port == 0 || port > 65535)
      return base::fail(base::errc::bad_request, "URL '" + url + "': port '" + port_text + "' is not 1..65535");
    u.port = static_cast<std::uint16_t>(port);
  }
  return u;
}

// ---------------------------------------------------------------------------
struct http_connection::impl {
  explicit impl(std::chrono::milliseconds t) : timeout(t) {}
  asio::io_context ioc;
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;
  std::chrono::milliseconds timeout;
  std::string host_header;
  bool is_connected = false;

  // Runs one asynchronous operation to completion (the stream's expiry bounds it).
  template <class Start>
  beast::error_code run(Start start) {
    beast::error_code result;
    bool done = false;
    start([&](beast::error_code ec, auto&&...) {
      result = ec;
      done = true;
    });
    ioc.restart();
    while (!done && ioc.run_one() > 0) {
    }
    return result;
  }

  base::result<http_reply> read_reply() {
    http::response_parser<http::string_body> parser;
    parser.body_limit(256 * 1024 * 1024);
    stream.expires_after(timeout);
    auto ec = run([&](auto handler) { http::async_read(stream, buffer, parser, handler); });
    if (ec) {
      is_connected = false;
      return base::fail(io_error("reading the reply from " + host_header, ec));
    }
    auto& res = parser.get();
    http_reply reply;
    reply.status = static_cast<int>(res.result_int());
    for (const auto& field : res) {
      std::string name(field.name_string());
      for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      reply.headers[name] = std::string(field.value());
    }
    reply.keep_alive = res.keep_alive();
    reply.body = std::move(res.body());
    return reply;
  }

  base::result<void> write_raw(const std::string& bytes) {
    stream.expires_after(timeout);
    auto ec = run([&](auto handler) { asio::async_write(stream, asio::buffer(bytes), handler); });
    if (ec) {
      is_connected = false;
      return base::fail(io_error("sending to " + host_header, ec));
    }
    return {};
  }
};

http_connection::http_connection(std::chrono::milliseconds timeout)
    : impl_(std::make_unique<impl>(timeout)) {}
http_connection::~http_connection() {
  if (impl_) close();
}
http_connection::http_connection(http_connection&&) noexcept = default;
http_connection& http_connection::operator=(http_connection&&) noexcept = default;

base::result<void> http_connection::connect(const std::string& host, std::uint16_t port) {
  auto& m = *impl_;
  close();
  m.host_header = host + ":" + std::to_string(port);
  tcp::resolver resolver(m.ioc);
  beast::error_code ec;
  auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (ec) return base::fail(base::errc::unavailable, "cannot resolve '" + host + "': " + ec.message());
  m.stream.expires_after(m.timeout);
  bool done = false;
  m.stream.async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) {
    ec = e;
    done = true;
  });
  m.ioc.restart();
  while (!done && m.ioc.run_one() > 0) {
  }
  if (ec) return base::fail(io_error("connecting to " + m.host_header, ec));
  m.stream.socket().set_option(tcp::no_delay(true), ec);
  m.is_connected = true;
  return {};
}

base::result<http_reply> http_connection::request(method m, const std::string& target,
                                                  const std::string& body,
                                                  const header_list& headers) {
  auto& p = *impl_;
  if (!p.is_connected) return base::fail(base::errc::unavailable, "not connected to " + p.host_header);
  http::request<http::string_body> req{to_verb(m), target, 11};
  req.set(http::field::host, p.host_header);
  req.set(http::field::user_agent, "troupe-client");
  for (const auto& [name, value] : headers) req.set(name, value);
  if (!body.empty() && req[http::field::content_type].empty())
    req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  p.stream.expires_after(p.timeout);
  auto ec = p.run([&](auto handler) { http::async_write(p.stream, req, handler); });
  if (ec) {
    p.is_connected = false;
    return base::fail(io_error("sending the request to " + p.host_header, ec));
  }
  return p.read_reply();
}

base::result<http_reply> http_connection::raw(const std::string& bytes) {
  if (auto ok = send_raw(bytes); !ok) return base::fail(ok.error());
  return read_reply();
}

base::result<void> http_connection::send_raw(const std::string& bytes) {
  if (!impl_->is_connected) return base::fail(base::errc::unavailable, "not connected");
  return impl_->write_raw(bytes);
}

base::result<http_reply> http_connection::read_reply() {
  if (!impl_->is_connected) return base::fail(base::errc::unavailable, "not connected");
  return impl_->read_reply();
}

bool http_connection::peer_closed() {
  auto& p = *impl_;
  if (p.buffer.size() > 0) return false;
  std::array<char, 512> scratch{};
  p.stream.expires_after(p.timeout);
  beast::error_code ec;
  std::size_t n = 0;
  ec = p.run([&](auto handler) {
    p.stream.async_read_some(asio::buffer(scratch), [&n, handler](beast::error_code e, std::size_t got) mutable {
      n = got;
      handler(e);
    });
  });
  if (ec == asio::error::eof || ec == asio::error::connection_reset) {
    p.is_connected = false;
    return true;
  }
  return false;
}

void http_connection::close() {
  auto& p = *impl_;
  beast::error_code ec;
  if (p.stream.socket().is_open()) {
    p.stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    p.stream.socket().close(ec);
  }
  p.buffer.consume(p.buffer.size());
  p.is_connected = false;
}

bool http_connection::connected() const { return impl_->is_connected; }

base::result<http_reply> http_call(const std::string& url, method m, const std::string& target,
                                   const std::string& body, const std::string& token,
                                   std::chrono::milliseconds timeout) {
  auto u = parse_url(url);
  if (!u) return base::fail(u.error());
  http_connection conn(timeout);
  if (auto ok = conn.connect(u->host, u->port); !ok) return base::fail(ok.error());
  header_list headers;
  if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
  headers.emplace_back("Connection", "close");
  return conn.request(m, target, body, headers);
}

// ---------------------------------------------------------------------------
struct ws_client::impl {
  asio::io_context ioc;
  std::optional<websocket::stream<beast::tcp_stream>> ws;
  beast::flat_buffer rbuf;
  bool read_pending = false;
  bool read_done = false;
  beast::error_code read_ec;
  std::optional<close_info> closed;
  std::deque<json> backlog;
  std::int64_t next_id = 1;
  bool open = false;

  void note_closed(const beast::error_code& ec) {
    if (closed) return;
    if (ec == websocket::error::closed)
      closed = close_info{static_cast<int>(ws->reason().code), std::string(ws->reason().reason.c_str())};
    else
      closed = close_info{1006, ec.message()};
    open = false;
  }

  base::result<void> write(const std::string& data, bool text) {
    if (!open) return base::fail(base::errc::unavailable, "WebSocket is not open");
    ws->text(text);
    bool done = false;
    beast::error_code ec;
    ws->async_write(asio::buffer(data), [&](beast::error_code e, std::size_t) {
      ec = e;
      done = true;
    });
    if (!run_until(ioc, done, std::chrono::steady_clock::now() + std::chrono::seconds(30))) {
      beast::error_code ignored;
      beast::get_lowest_layer(*ws).socket().close(ignored);
      run_until(ioc, done, std::chrono::steady_clock::now() + std::chrono::seconds(5));
      open = false;
      return base::fail(base::errc::timeout, "sending a frame timed out (server not reading)");
    }
    if (ec) {
      note_closed(ec);
      return base::fail(io_error("sending a frame", ec));
    }
    return {};
  }
};

ws_client::ws_client() : impl_(std::make_unique<impl>()) {}
ws_client::~ws_client() { abort(); }

base::result<void> ws_client::connect(const std::string& url, const std::string& token,
                                      std::chrono::milliseconds timeout) {
  auto u = parse_url(url);
  if (!u) return base::fail(u.error());
  auto& m = *impl_;
  abort();
  m.ws.emplace(m.ioc);
  m.closed.reset();
  m.backlog.clear();
  m.rbuf.consume(m.rbuf.size());
  tcp::resolver resolver(m.ioc);
  beast::error_code ec;
  auto endpoints = resolver.resolve(u->host, std::to_string(u->port), ec);
  if (ec) return base::fail(base::errc::unavailable, "cannot resolve '" + u->host + "': " + ec.message());
  auto& lowest = beast::get_lowest_layer(*m.ws);
  lowest.expires_after(timeout);
  bool done = false;
  lowest.async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) {
    ec = e;
    done = true;
  });
  run_until(m.ioc, done, std::chrono::steady_clock::time_point::max());
  const std::string where = u->host + ":" + std::to_string(u->port);
  if (ec) return base::fail(io_error("connecting to " + where, ec));
  lowest.socket().set_option(tcp::no_delay(true), ec);
  m.ws->set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
    req.set(http::field::user_agent, "troupe-client");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  }));
  m.ws->read_message_max(256 * 1024 * 1024);
  const std::string path = u->path.empty() || u->path == "/" ? "/v1/ws" : u->path;
  websocket::response_type res;
  done = false;
  m.ws->async_handshake(res, where, path, [&](beast::error_code e) {
    ec = e;
    done = true;
  });
  run_until(m.ioc, done, std::chrono::steady_clock::time_point::max());
  if (ec) {
    if (ec == websocket::error::upgrade_declined)
      return base::fail(reply_error(static_cast<int>(res.result_int()), res.body()));
    return base::fail(io_error("WebSocket handshake with " + where, ec));
  }
  lowest.expires_never();
  m.open = true;
  return {};
}

base::result<void> ws_client::send(const json& frame) { return impl_->write(frame.dump(), true); }
base::result<void> ws_client::send_text(const std::string& text) { return impl_->write(text, true); }
base::result<void> ws_client::send_binary(const std::string& bytes) { return impl_->write(bytes, false); }

base::result<std::string> ws_client::read_text(std::chrono::milliseconds timeout) {
  auto& m = *impl_;
  if (!m.ws) return base::fail(base::errc::unavailable, "WebSocket is not connected");
  if (m.closed && !m.read_pending)
    return base::fail(base::errc::unavailable, "connection closed by server: code " +
                                                   std::to_string(m.closed->code) + " " + m.closed->reason);
  if (!m.read_pending) {
    m.read_pending = true;
    m.read_done = false;
    m.ws->async_read(m.rbuf, [&m](beast::error_code ec, std::size_t) {
      m.read_ec = ec;
      m.read_done = true;
    });
  }
  if (!run_until(m.ioc, m.read_done, std::chrono::steady_clock::now() + timeout))
    return base::fail(base::errc::timeout, "no frame within " + std::to_string(timeout.count()) + " ms");
  m.read_pending = false;
  if (m.read_ec) {
    m.note_closed(m.read_ec);
    return base::fail(base::errc::unavailable, "connection closed: code " + std::to_string(m.closed->code) +
                                                   " " + m.closed->reason);
  }
  std::string text = beast::buffers_to_string(m.rbuf.data());
  m.rbuf.consume(m.rbuf.size());
  return text;
}

base::result<json> ws_client::read(std::chrono::milliseconds timeout) {
  auto& m = *impl_;
  if (!m.backlog.empty()) {
    auto front = std::move(m.backlog.front());
    m.backlog.pop_front();
    return front;
  }
  auto text = read_text(timeout);
  if (!text) return base::fail(text.error());
  try {
    return json::parse(*text);
  } catch (const json::parse_error& e) {
    return base::fail(base::errc::bad_request, std::string("server sent a frame that is not JSON: ") + e.what());
  }
}

base::result<json> ws_client::request(const std::string& op, json args, std::chrono::milliseconds timeout) {
  auto& m = *impl_;
  json frame = args.is_object() ? std::move(args) : json::object();
  const auto id = m.next_id++;
  frame["id"] = id;
  frame["op"] = op;
  if (auto ok = send(frame); !ok) return base::fail(ok.error());
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::deque<json> held;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      for (auto& h : held) m.backlog.push_back(std::move(h));
      return base::fail(base::errc::timeout, "no reply to op '" + op + "' within " +
                                                 std::to_string(timeout.count()) + " ms");
    }
    auto text = read_text(left);
    if (!text) {
      for (auto& h : held) m.backlog.push_back(std::move(h));
      return base::fail(text.error());
    }
    json doc;
    try {
      doc = json::parse(*text);
    } catch (const json::parse_error&) {
      continue;
    }
    if (doc.is_object() && doc.contains("ok") && doc.value("id", json()) == json(id)) {
      for (auto& h : held) m.backlog.push_back(std::move(h));
      if (doc.value("ok", false)) return doc.value("result", json::object());
      const auto& e = doc.value("error", json::object());
      auto code = base::errc_from_string(e.value("code", std::string("internal")));
      return base::fail(code.value_or(base::errc::internal), e.value("message", std::string()));
    }
    held.push_back(std::move(doc));
  }
}

void ws_client::close() {
  auto& m = *impl_;
  if (!m.ws) return;
  if (m.open && !m.closed) {
    bool done = false;
    m.ws->async_close(websocket::close_code::normal, [&](beast::error_code) { done = true; });
    run_until(m.ioc, done, std::chrono::steady_clock::now() + std::chrono::seconds(2));
    m.open = false;
    if (!m.closed) m.closed = close_info{1000, "closed by client"};
  }
  abort();
}

void ws_client::abort() {
  auto& m = *impl_;
  if (!m.ws) return;
  beast::error_code ec;
  auto& sock = beast::get_lowest_layer(*m.ws).socket();
  if (sock.is_open()) sock.close(ec);
  m.open = false;
  // Let aborted handlers run so none refers to this object later.
  m.ioc.restart();
  m.ioc.poll();
  m.read_pending = false;
}

std::optional<close_info> ws_client::closed() const { return impl_->closed; }

}  // namespace troupe::protocols::client
