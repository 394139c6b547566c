// The only Beast TU of troupe_llm (compile cost: see CAF-NOTES §8).
#include "http_channel.hpp"

#include <openssl/ssl.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/version.hpp>
#include <optional>

namespace troupe::protocols::llm::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct tls_context {
  asio::ssl::context ctx{asio::ssl::context::tls_client};
};

base::result<std::shared_ptr<tls_context>> make_tls_context(const std::string& ca_file) {
  auto tls = std::make_shared<tls_context>();
  boost::system::error_code ec;
  tls->ctx.set_default_verify_paths(ec);
  if (ec) return base::fail(base::errc::invalid_config, "cannot load the system CA store: " + ec.message());
  if (!ca_file.empty()) {
    tls->ctx.load_verify_file(ca_file, ec);
    if (ec)
      return base::fail(base::errc::invalid_config, "ca_file '" + ca_file + "': " + ec.message());
  }
  tls->ctx.set_verify_mode(asio::ssl::verify_peer);
  return tls;
}

namespace {

constexpr std::uint64_t max_body_bytes = 64ull << 20;

template <class Stream>
class channel_impl final : public http_channel,
                           public std::enable_shared_from_this<channel_impl<Stream>> {
 public:
  static constexpr bool is_tls = !std::is_same_v<Stream, beast::tcp_stream>;

  channel_impl(asio::any_io_executor ex, endpoint ep, std::shared_ptr<tls_context> tls,
               const std::shared_ptr<const header_list>& headers)
      : stream_(make_stream(ex, tls)), resolver_(ex), ep_(std::move(ep)), tls_(std::move(tls)) {
    // The header is built once per connection; an exchange sets only what varies
    // (target, accept, body and its length).
    req_.method(http::verb::post);
    req_.version(11);
    req_.set(http::field::host, ep_.host_header());
    req_.set(http::field::user_agent, "troupe/0.1");
    req_.set(http::field::content_type, "application/json");
    if (headers)
      for (const auto& [k, v] : *headers) req_.set(k, v);
    req_.keep_alive(true);
  }

  void exchange(http_request_spec spec, std::chrono::steady_clock::time_point deadline,
                std::chrono::milliseconds connect_timeout, bool stream, chunk_fn on_chunk,
                done_fn done) override {
    if (req_.target() != spec.target) req_.target(spec.target);
    if (!accept_set_ || stream != stream_mode_) {
      req_.set(http::field::accept, stream ? "text/event-stream" : "application/json");
      accept_set_ = true;
    }
    req_.body() = std::move(spec.body);
    req_.prepare_payload();
    deadline_ = deadline;
    stream_mode_ = stream;
    on_chunk_ = std::move(on_chunk);
    done_ = std::move(done);
    out_ = {};
    keep_alive_ = false;
    reused_ = connected_;
    if (connected_) return write();
    // connect_timeout bounds resolve, TCP connect and TLS handshake together, so a
    // server that accepts but never speaks TLS fails as fast as one that never answers.
    connect_deadline_ = std::min(deadline_, std::chrono::steady_clock::now() + connect_timeout);
    auto self = this->shared_from_this();
    out_.stage = "resolve";
    resolver_.async_resolve(ep_.host, ep_.port,
                            [self](beast::error_code ec, tcp::resolver::results_type r) {
                              if (ec) return self->finish(ec);
                              self->connect(r);
                            });
  }

  void abort() override {
    aborted_ = true;
    broken_ = true;
    resolver_.cancel();
    beast::get_lowest_layer(stream_).close();
  }

  bool reusable() const override { return connected_ && !broken_ && keep_alive_; }
  bool reused() const override { return reused_; }

 private:
  static Stream make_stream(asio::any_io_executor ex, const std::shared_ptr<tls_context>& tls) {
    if constexpr (is_tls) {
      return Stream(ex, tls->ctx);
    } else {
      (void)tls;
      return Stream(ex);
    }
  }

  void connect(const tcp::resolver::results_type& results) {
    if (aborted_) return finish(asio::error::operation_aborted);
    beast::get_lowest_layer(stream_).expires_at(connect_deadline_);
    out_.stage = "connect";
    auto self = this->shared_from_this();
    beast::get_lowest_layer(stream_).async_connect(
        results, [self](beast::error_code ec, const tcp::endpoint&) {
          if (ec) return self->finish(ec);
          beast::get_lowest_layer(self->stream_).socket().set_option(tcp::no_delay(true));
          self->handshake();
        });
  }

  void handshake() {
    if constexpr (is_tls) {
      // SNI (host names only: RFC 6066 forbids IP literals), then verify the
      // certificate chain and that it names our host (DNS name or IP address).
      beast::error_code not_ip;
      (void)asio::ip::make_address(ep_.host, not_ip);
      if (not_ip && !SSL_set_tlsext_host_name(stream_.native_handle(), ep_.host.c_str()))
        return finish(beast::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()));
      stream_.set_verify_callback(asio::ssl::host_name_verification(ep_.host));
      beast::get_lowest_layer(stream_).expires_at(connect_deadline_);
      out_.stage = "tls";
      auto self = this->shared_from_this();
      stream_.async_handshake(asio::ssl::stream_base::client, [self](beast::error_code ec) {
        if (ec) return self->finish(ec);
        self->connected_ = true;
        self->write();
      });
    } else {
      connected_ = true;
      write();
    }
  }

  void write() {
    beast::get_lowest_layer(stream_).expires_at(deadline_);
    out_.stage = "write";
    auto self = this->shared_from_this();
    http::async_write(stream_, req_, [self](beast::error_code ec, std::size_t) {
      std::string().swap(self->req_.body());  // sent: an idle connection keeps no prompt
      if (ec) return self->finish(ec);
      self->parser_.emplace();
      self->parser_->body_limit(max_body_bytes);
      self->out_.stage = "read";
      http::async_read_header(self->stream_, self->buffer_, *self->parser_,
                              [self](beast::error_code ec2, std::size_t) { self->on_header(ec2); });
    });
  }

  void on_header(beast::error_code ec) {
    if (ec) return finish(ec);
    const auto& res = parser_->get();
    out_.got_header = true;
    out_.status = static_cast<int>(res.result_int());
    out_.retry_after = std::string(res["retry-after"]);
    out_.retry_after_ms = std::string(res["retry-after-ms"]);
    // Only an event stream is handed over piecemeal; a server that ignored
    // "stream": true answers with one JSON body, read whole.
    incremental_ = stream_mode_ && out_.status / 100 == 2 &&
                   res[http::field::content_type].find("text/event-stream") != beast::string_view::npos;
    out_.incremental = incremental_;
    if (parser_->is_done()) return finish({});
    read_body();
  }

  void read_body() {
    auto self = this->shared_from_this();
    http::async_read_some(stream_, buffer_, *parser_, [self](beast::error_code ec, std::size_t) {
      // Hand over what arrived even when the read then failed: the caller decides
      // whether a stream that stops early is an error.
      if (self->incremental_ && !self->deliver()) return;
      if (ec) return self->finish(ec);
      if (self->parser_->is_done()) return self->finish({});
      self->read_body();
    });
  }

  /// Passes the body bytes read so far to on_chunk; false when it asked to stop.
  bool deliver() {
    auto& body = parser_->get().body();
    if (body.empty()) return true;
    // string_body appends to whatever the body holds, so taking it keeps the
    // buffer small however long the stream runs.
    std::string chunk;
    chunk.swap(body);
    if (on_chunk_(chunk)) return true;
    out_.stopped = true;
    broken_ = true;
    beast::get_lowest_layer(stream_).close();
    finish({});
    return false;
  }

  void finish(beast::error_code ec) {
    beast::get_lowest_layer(stream_).expires_never();
    if (ec) {
      out_.ec = ec;
      out_.timed_out = (ec == beast::error::timeout);
      broken_ = true;
      connected_ = false;
    }
    out_.aborted = aborted_;
    if (parser_) {
      keep_alive_ = !ec && !out_.stopped && parser_->is_done() && parser_->keep_alive();
      if (!incremental_) out_.body = std::move(parser_->get().body());
      parser_.reset();
    }
    if (!keep_alive_) {
      connected_ = false;
      beast::error_code ignored;
      beast::get_lowest_layer(stream_).socket().close(ignored);
    }
    auto done = std::move(done_);
    done_ = nullptr;
    on_chunk_ = nullptr;
    if (done) done(std::move(out_));
  }

  Stream stream_;
  tcp::resolver resolver_;
  endpoint ep_;
  std::shared_ptr<tls_context> tls_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  std::optional<http::response_parser<http::string_body>> parser_;
  std::chrono::steady_clock::time_point deadline_;
  std::chrono::steady_clock::time_point connect_deadline_;  ///< of the connect and TLS handshake
  chunk_fn on_chunk_;
  done_fn done_;
  http_outcome out_;
  bool stream_mode_ = false;
  bool accept_set_ = false;
  bool incremental_ = false;
  bool connected_ = false;
  bool keep_alive_ = false;
  bool broken_ = false;
  bool aborted_ = false;
  bool reused_ = false;
};

}  // namespace

std::shared_ptr<http_channel> http_channel::create(asio::any_io_executor ex, const endpoint& ep,
                                                   std::shared_ptr<tls_context> tls,
                                                   std::shared_ptr<const header_list> headers) {
  if (ep.tls)
    return std::make_shared<channel_impl<beast::ssl_stream<beast::tcp_stream>>>(ex, ep, std::move(tls), headers);
  return std::make_shared<channel_impl<beast::tcp_stream>>(ex, ep, nullptr, headers);
}

}  // namespace troupe::protocols::llm::detail
