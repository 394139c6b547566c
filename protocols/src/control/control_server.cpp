// The control server's lifecycle: listening, the I/O threads, publishing
// events into the fan-out, and an orderly stop. The sessions are in
// http_session.cpp and ws_session.cpp, the fan-out in fanout.cpp; routing,
// access rules and the troupe.v1 frame logic are plain C++ files next to them.
#include "troupe/protocols/control/control_server.hpp"

#include <pthread.h>

#include <charconv>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/strand.hpp>

#include "http_session.hpp"
#include "ws_session.hpp"

namespace troupe::protocols::control {
namespace detail {

std::shared_ptr<spdlog::logger> logger() {
  auto l = spdlog::get("control");
  return l ? l : spdlog::default_logger();
}

}  // namespace detail

using namespace detail;
using std::chrono::milliseconds;

namespace {

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
        // Whole frames and responses are written at once; without this, Nagle
        // holds a small frame back until the peer's (delayed) ACK for the
        // previous one: up to 40 ms of latency for an event.
        beast::error_code nodelay_ec;
        socket.set_option(tcp::no_delay(true), nodelay_ec);
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
  c.stop_listening();

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
