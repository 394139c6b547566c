// The fake provider server. One Beast TU; sessions are plain callback chains,
// each on its own strand, registered so that set_down() can close them all.
#include "troupe/fake_llm/fake_llm.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "fake_replies.hpp"

namespace troupe::fake_llm {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

using detail::plan;

struct fake_llm_server::impl {
  struct session;

  asio::io_context ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  asio::strand<asio::io_context::executor_type> accept_strand{asio::make_strand(ioc)};
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  std::uint16_t bound_port = 0;
  std::optional<asio::ssl::context> tls_ctx;  ///< set: serve HTTPS

  mutable std::mutex mu;  // knobs, counters, rng, sessions
  fake_knobs k;
  fake_counters c;
  std::mt19937_64 rng{42};
  std::map<std::uint64_t, std::weak_ptr<session>> sessions;
  std::uint64_t next_session = 0;
  bool down = false;

  // ---- one connection ----
  struct session : std::enable_shared_from_this<session> {
    session(impl& o, tcp::socket s, std::uint64_t i)
        : owner(o), timer(s.get_executor()), id(i) {
      if (o.tls_ctx) tls.emplace(std::move(s), *o.tls_ctx);
      else plain.emplace(std::move(s));
    }
    impl& owner;
    std::optional<tcp::socket> plain;
    std::optional<asio::ssl::stream<tcp::socket>> tls;
    asio::steady_timer timer;
    bool handshaken = false;

    tcp::socket& socket() { return tls ? tls->next_layer() : *plain; }
    /// Runs `f` with whichever stream this session speaks.
    template <class F>
    void io(F&& f) {
      if (tls) f(*tls);
      else f(*plain);
    }
    std::uint64_t id;
    beast::flat_buffer buffer;
    std::optional<http::request<http::string_body>> req;
    http::response<http::string_body> res;
    http::response<http::empty_body> stream_res;
    std::optional<http::response_serializer<http::empty_body>> stream_sr;
    plan p;
    std::size_t next_event = 0;
    std::string combined;  ///< events sent as one chunk
    bool counted = false;  ///< this request is in the concurrency count
    bool keep_alive = true;

    void read() {
      auto self = shared_from_this();
      if (tls && !handshaken) {
        tls->async_handshake(asio::ssl::stream_base::server, [self](beast::error_code ec) {
          if (ec) return self->close();
          self->handshaken = true;
          self->read();
        });
        return;
      }
      req.emplace();
      io([&](auto& s) {
        http::async_read(s, buffer, *req, [self](beast::error_code ec, std::size_t) {
          if (ec) return self->close();
          if (self->p.hang) return self->close();  // a hanging request only ends with its connection
          self->on_request();
        });
      });
    }

    void on_request() {
      keep_alive = req->keep_alive();
      p = owner.decide(*req);
      counted = true;
      owner.enter();
      if (p.hang) return read();  // notices the client closing
      if (p.latency_ms > 0) {
        auto self = shared_from_this();
        timer.expires_after(std::chrono::milliseconds(p.latency_ms));
        timer.async_wait([self](beast::error_code ec) {
          if (ec) return self->close();
          self->respond();
        });
        return;
      }
      respond();
    }

    void respond() {
      auto self = shared_from_this();
      if (!p.stream || p.status != 200) {
        res = {};
        res.version(11);
        res.result(static_cast<http::status>(p.status));
        res.set(http::field::content_type, "application/json");
        if (p.retry_after_ms >= 0 && p.retry_after_date) {
          res.set("retry-after", detail::http_date_after(p.retry_after_ms));
        } else if (p.retry_after_ms >= 0) {
          res.set("retry-after", std::to_string((p.retry_after_ms + 999) / 1000));
          res.set("retry-after-ms", std::to_string(p.retry_after_ms));
        }
        res.keep_alive(keep_alive);
        res.body() = std::move(p.body);
        res.prepare_payload();
        io([&](auto& s) {
          http::async_write(s, res, [self](beast::error_code ec, std::size_t) { self->after_response(ec); });
        });
        return;
      }
      stream_res = {};
      stream_res.version(11);
      stream_res.result(http::status::ok);
      stream_res.set(http::field::content_type, "text/event-stream");
      stream_res.set(http::field::cache_control, "no-cache");
      stream_res.keep_alive(keep_alive);
      stream_res.chunked(true);
      stream_sr.emplace(stream_res);
      next_event = 0;
      io([&](auto& s) {
        http::async_write_header(s, *stream_sr, [self](beast::error_code ec, std::size_t) {
          if (ec) return self->close();
          self->write_event();
        });
      });
    }

    void write_event() {
      auto self = shared_from_this();
      std::size_t limit = p.truncate ? p.events.size() / 2 : p.events.size();  // events never change mid-stream
      if (next_event >= limit) {
        if (p.truncate) return close();  // mid-stream, no terminating chunk
        io([&](auto& s) {
          asio::async_write(s, http::make_chunk_last(),
                            [self](beast::error_code ec, std::size_t) { self->after_response(ec); });
        });
        return;
      }
      const std::string* ev = &p.events[next_event++];
      if (p.token_delay_ms <= 0 && limit - next_event > 0) {
        // No pacing asked for: send the events in one chunk (fewer syscalls on
        // both sides; the client's parser must cope with any split anyway).
        combined.clear();
        for (std::size_t i = next_event - 1; i < limit; ++i) combined += p.events[i];
        next_event = limit;
        ev = &combined;
      }
      io([&](auto& s) {
        asio::async_write(s, http::make_chunk(asio::buffer(*ev)), [self](beast::error_code ec, std::size_t) {
          if (ec) return self->close();
          if (self->p.token_delay_ms <= 0) return self->write_event();
          self->timer.expires_after(std::chrono::milliseconds(self->p.token_delay_ms));
          self->timer.async_wait([self](beast::error_code ec2) {
            if (ec2) return self->close();
            self->write_event();
          });
        });
      });
    }

    void after_response(beast::error_code ec) {
      leave();
      if (ec || !keep_alive) return close();
      read();
    }

    void leave() {
      if (counted) owner.exit();
      counted = false;
    }

    void close() {
      leave();
      beast::error_code ignored;
      socket().shutdown(tcp::socket::shutdown_both, ignored);
      socket().close(ignored);
      timer.cancel();
      std::lock_guard lock(owner.mu);
      owner.sessions.erase(id);
    }
  };

  void enter() {
    std::lock_guard lock(mu);
    ++c.concurrent;
    c.max_concurrent = std::max(c.max_concurrent, c.concurrent);
  }
  void exit() {
    std::lock_guard lock(mu);
    --c.concurrent;
  }

  plan decide(const http::request<http::string_body>& r) {
    detail::request_view v;
    v.path = std::string(r.target());
    v.is_post = r.method() == http::verb::post;
    v.authorization = std::string(r[http::field::authorization]);
    v.x_api_key = std::string(r["x-api-key"]);
    v.body = r.body();
    std::lock_guard lock(mu);
    return detail::make_plan(v, k, rng, c);
  }

  // ---- listener ----
  base::result<void> listen(std::uint16_t port) {
    beast::error_code ec;
    tcp::acceptor a(accept_strand);
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
    a.open(ep.protocol(), ec);
    if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) a.bind(ep, ec);
    if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return base::fail(base::errc::unavailable,
                        "fake-llm: cannot listen on 127.0.0.1:" + std::to_string(port) + ": " + ec.message());
    bound_port = a.local_endpoint().port();
    acceptor.emplace(std::move(a));
    accept();
    return {};
  }

  void accept() {
    // `this` outlives every handler: stop() joins the threads before impl dies.
    auto* self = this;
    acceptor->async_accept(asio::make_strand(ioc), [self](beast::error_code ec, tcp::socket s) {
      if (ec) {
        if (ec == asio::error::operation_aborted || !self->acceptor || !self->acceptor->is_open()) return;
        return self->accept();  // e.g. EMFILE: keep serving the others
      }
      beast::error_code ignored;
      s.set_option(tcp::no_delay(true), ignored);
      std::shared_ptr<session> sess;
      {
        std::lock_guard lock(self->mu);
        ++self->c.connections;
        auto id = self->next_session++;
        sess = std::make_shared<session>(*self, std::move(s), id);
        self->sessions[id] = sess;
      }
      asio::post(sess->timer.get_executor(), [sess] { sess->read(); });
      self->accept();
    });
  }

  /// Runs `f` on the accept strand and waits for it.
  template <class F>
  void on_accept_strand(F f) {
    std::promise<void> done;
    asio::post(accept_strand, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  void close_sessions() {
    std::vector<std::shared_ptr<session>> live;
    {
      std::lock_guard lock(mu);
      for (auto& [id, w] : sessions)
        if (auto s = w.lock()) live.push_back(s);
    }
    std::vector<std::future<void>> waits;
    for (auto& s : live) {
      auto pr = std::make_shared<std::promise<void>>();
      waits.push_back(pr->get_future());
      asio::post(s->timer.get_executor(), [s, pr] {
        s->close();
        pr->set_value();
      });
    }
    for (auto& w : waits) w.wait();
  }
};

fake_llm_server::fake_llm_server() : impl_(std::make_unique<impl>()) {}
fake_llm_server::~fake_llm_server() { stop(); }

base::result<std::uint16_t> fake_llm_server::start(std::uint16_t port, int threads) {
  if (!impl_->threads.empty()) return impl_->bound_port;
  if (auto r = impl_->listen(port); !r) return base::fail(r.error());
  impl_->work.emplace(asio::make_work_guard(impl_->ioc));
  for (int i = 0; i < std::max(threads, 1); ++i) impl_->threads.emplace_back([i = impl_.get()] { i->ioc.run(); });
  return impl_->bound_port;
}

base::result<std::uint16_t> fake_llm_server::start_tls(const std::string& cert_pem, const std::string& key_pem,
                                                       std::uint16_t port, int threads) {
  if (!impl_->threads.empty()) return impl_->bound_port;
  beast::error_code ec;
  asio::ssl::context ctx(asio::ssl::context::tls_server);
  ctx.use_certificate_chain(asio::buffer(cert_pem), ec);
  if (!ec) ctx.use_private_key(asio::buffer(key_pem), asio::ssl::context::pem, ec);
  if (ec) return base::fail(base::errc::invalid_config, "fake-llm: bad TLS certificate or key: " + ec.message());
  impl_->tls_ctx.emplace(std::move(ctx));
  return start(port, threads);
}

void fake_llm_server::stop() {
  if (impl_->threads.empty()) return;
  impl_->on_accept_strand([&] {
    beast::error_code ignored;
    if (impl_->acceptor) impl_->acceptor->close(ignored);
  });
  impl_->close_sessions();
  impl_->work.reset();
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
}

std::uint16_t fake_llm_server::port() const { return impl_->bound_port; }
std::string fake_llm_server::endpoint() const {
  return (impl_->tls_ctx ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(impl_->bound_port);
}

void fake_llm_server::set_down(bool down) {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->down == down) return;
    impl_->down = down;
  }
  if (down) {
    impl_->on_accept_strand([&] {
      beast::error_code ignored;
      if (impl_->acceptor) impl_->acceptor->close(ignored);
      impl_->acceptor.reset();
    });
    impl_->close_sessions();
  } else {
    impl_->on_accept_strand([&] { (void)impl_->listen(impl_->bound_port); });
  }
}

void fake_llm_server::set_knobs(const fake_knobs& k) {
  std::lock_guard lock(impl_->mu);
  impl_->k = k;
}
fake_knobs fake_llm_server::knobs() const {
  std::lock_guard lock(impl_->mu);
  return impl_->k;
}
#define TROUPE_FAKE_KNOB(body) \
  std::lock_guard lock(impl_->mu); \
  body;
void fake_llm_server::set_latency_ms(std::int64_t ms) { TROUPE_FAKE_KNOB(impl_->k.latency_ms = ms) }
void fake_llm_server::set_error_rate_500(double p) { TROUPE_FAKE_KNOB(impl_->k.error_rate_500 = p) }
void fake_llm_server::set_error_rate_429(double p, std::int64_t retry_after_ms) {
  TROUPE_FAKE_KNOB(impl_->k.error_rate_429 = p; impl_->k.retry_after_ms = retry_after_ms)
}
void fake_llm_server::set_retry_after_date(bool on) { TROUPE_FAKE_KNOB(impl_->k.retry_after_date = on) }
void fake_llm_server::set_hang(bool on) { TROUPE_FAKE_KNOB(impl_->k.hang = on) }
void fake_llm_server::set_token_delay_ms(std::int64_t ms) { TROUPE_FAKE_KNOB(impl_->k.token_delay_ms = ms) }
void fake_llm_server::set_malformed_json(bool on) { TROUPE_FAKE_KNOB(impl_->k.malformed_json = on) }
void fake_llm_server::set_truncated_stream(bool on) { TROUPE_FAKE_KNOB(impl_->k.truncated_stream = on) }
void fake_llm_server::set_status_override(int status) { TROUPE_FAKE_KNOB(impl_->k.status_override = status) }
void fake_llm_server::set_expected_key(std::string key) { TROUPE_FAKE_KNOB(impl_->k.expected_key = std::move(key)) }
void fake_llm_server::set_seed(std::uint64_t seed) { TROUPE_FAKE_KNOB(impl_->rng.seed(seed)) }
#undef TROUPE_FAKE_KNOB

fake_counters fake_llm_server::counters() const {
  std::lock_guard lock(impl_->mu);
  return impl_->c;
}
void fake_llm_server::reset_counters() {
  std::lock_guard lock(impl_->mu);
  int concurrent = impl_->c.concurrent;
  impl_->c = {};
  impl_->c.concurrent = concurrent;
  impl_->c.max_concurrent = concurrent;
}

}  // namespace troupe::fake_llm
