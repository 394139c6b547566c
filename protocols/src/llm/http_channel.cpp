// The only Beast TU of troupe_llm (compile cost: see CAF-NOTES §8).
#include "http_channel.hpp"

#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/version.hpp>
#include <array>
#include <optional>
#include <string_view>

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
  static constexpr bool is_tls = !std::is_same_v<Stream, tcp::socket>;

  channel_impl(asio::any_io_executor ex, endpoint ep, std::shared_ptr<tls_context> tls,
               const std::shared_ptr<const header_list>& headers)
      : stream_(make_stream(ex, tls)), resolver_(ex), timer_(ex), ep_(std::move(ep)), tls_(std::move(tls)) {
    // The fields every request of the connection carries are rendered once; an
    // exchange adds only what varies (target, accept, the body's length).
    append_field(fixed_fields_, "Host", ep_.host_header());
    append_field(fixed_fields_, "User-Agent", "troupe/0.1");
    append_field(fixed_fields_, "Content-Type", "application/json");
    if (headers)
      for (const auto& [k, v] : *headers) append_field(fixed_fields_, k, v);
  }

  void exchange(http_request_spec spec, std::chrono::steady_clock::time_point deadline,
                std::chrono::milliseconds connect_timeout, bool stream, chunk_fn on_chunk,
                done_fn done) override {
    if (head_prefix_.empty() || target_ != spec.target || stream != stream_mode_) {
      // Written by hand rather than through Beast's serializer: a request is one
      // short header and a JSON body, and this runs for every attempt.
      target_ = spec.target;
      head_prefix_ = "POST ";
      head_prefix_ += target_;
      head_prefix_ += " HTTP/1.1\r\n";
      head_prefix_ += fixed_fields_;
      append_field(head_prefix_, "Accept", stream ? "text/event-stream" : "application/json");
      head_prefix_ += "Content-Length: ";
    }
    body_ = std::move(spec.body);
    read_timeout_ = spec.read_timeout;
    head_ = head_prefix_;
    head_ += std::to_string(body_.size());
    head_ += "\r\n\r\n";
    deadline_ = deadline;
    stream_mode_ = stream;
    on_chunk_ = std::move(on_chunk);
    done_ = std::move(done);
    out_ = {};
    keep_alive_ = false;
    reused_ = connected_;
    if (connected_) {
      arm(deadline_);
      return write();
    }
    // connect_timeout bounds resolve, TCP connect and TLS handshake together, so a
    // server that accepts but never speaks TLS fails as fast as one that never answers.
    arm(std::min(deadline_, std::chrono::steady_clock::now() + connect_timeout));
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
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).close(ignored);
  }

  bool reusable() const override { return connected_ && !broken_ && keep_alive_; }
  bool reused() const override { return reused_; }

 private:
  /// Appends "name: value\r\n"; a line break inside a value could only forge further
  /// fields, so control characters are dropped (the config refuses them in keys).
  static void append_field(std::string& out, std::string_view name, std::string_view value) {
    out += name;
    out += ": ";
    for (char c : value)
      if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) out += c;
    out += "\r\n";
  }

  static Stream make_stream(asio::any_io_executor ex, const std::shared_ptr<tls_context>& tls) {
    if constexpr (is_tls) {
      return Stream(ex, tls->ctx);
    } else {
      (void)tls;
      return Stream(ex);
    }
  }

  void connect(const tcp::resolver::results_type& results) {
    if (aborted_ || expired_) return finish(asio::error::operation_aborted);
    out_.stage = "connect";
    auto self = this->shared_from_this();
    asio::async_connect(beast::get_lowest_layer(stream_), results,
                        [self](beast::error_code ec, const tcp::endpoint&) {
                          if (ec) return self->finish(ec);
                          beast::error_code ignored;
                          beast::get_lowest_layer(self->stream_).set_option(tcp::no_delay(true), ignored);
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
      out_.stage = "tls";
      auto self = this->shared_from_this();
      stream_.async_handshake(asio::ssl::stream_base::client, [self](beast::error_code ec) {
        if (ec) return self->finish(ec);
        self->connected_ = true;
        self->arm(self->deadline_);
        self->write();
      });
    } else {
      connected_ = true;
      arm(deadline_);
      write();
    }
  }

  /// One timer per exchange, not one per socket operation (as Beast's tcp_stream
  /// would): when it fires, the socket is closed, which ends the pending operation.
  /// Re-arming for the request after a connect costs a second wait.
  void arm(std::chrono::steady_clock::time_point when) {
    ++generation_;
    timer_.expires_at(when);
    timer_.async_wait([self = this->shared_from_this(), gen = generation_](beast::error_code ec) {
      if (ec || gen != self->generation_ || !self->done_) return;  // cancelled or stale
      self->expired_ = true;
      self->idle_expired_ = self->idle_armed_;
      self->broken_ = true;
      self->resolver_.cancel();
      beast::error_code ignored;
      beast::get_lowest_layer(self->stream_).close(ignored);
    });
  }

  /// Before each wait for response bytes: the read timeout, when it ends before the
  /// exchange's deadline, bounds this wait.
  void arm_read() {
    if (read_timeout_.count() <= 0) return;
    const auto idle = std::chrono::steady_clock::now() + read_timeout_;
    if (idle < deadline_) {
      idle_armed_ = true;
      arm(idle);
    } else if (idle_armed_) {
      idle_armed_ = false;
      arm(deadline_);
    }
  }

  void write() {
    out_.stage = "write";
    auto self = this->shared_from_this();
    std::array<asio::const_buffer, 2> request{asio::buffer(head_), asio::buffer(body_)};
    asio::async_write(stream_, request, [self](beast::error_code ec, std::size_t) {
      std::string().swap(self->body_);  // sent: an idle connection keeps no prompt
      if (ec) return self->finish(ec);
      self->parser_.emplace();
      self->parser_->body_limit(max_body_bytes);
      self->out_.stage = "read";
      self->arm_read();
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
    arm_read();
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
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).close(ignored);
    finish({});
    return false;
  }

  void finish(beast::error_code ec) {
    ++generation_;
    timer_.cancel();
    if (expired_ && (ec || !parser_ || !parser_->is_done())) ec = beast::error::timeout;
    expired_ = false;
    if (ec) {
      out_.ec = ec;
      out_.timed_out = (ec == beast::error::timeout);
      if (out_.timed_out && idle_expired_) out_.idle_ms = read_timeout_.count();
      broken_ = true;
      connected_ = false;
    }
    idle_armed_ = idle_expired_ = false;
    out_.aborted = aborted_;
    if (parser_) {
      keep_alive_ = !ec && !out_.stopped && parser_->is_done() && parser_->keep_alive();
      if (!incremental_) out_.body = std::move(parser_->get().body());
      parser_.reset();
    }
    if (!keep_alive_) {
      connected_ = false;
      beast::error_code ignored;
      beast::get_lowest_layer(stream_).close(ignored);
    }
    auto done = std::move(done_);
    done_ = nullptr;
    on_chunk_ = nullptr;
    if (done) done(std::move(out_));
  }

  Stream stream_;
  tcp::resolver resolver_;
  asio::steady_timer timer_;  ///< the running exchange's deadline
  endpoint ep_;
  std::shared_ptr<tls_context> tls_;
  beast::flat_buffer buffer_;
  std::string fixed_fields_;  ///< "Name: value\r\n" lines sent with every request
  std::string target_;
  std::string head_prefix_;   ///< request line and fields, up to "Content-Length: "
  std::string head_;          ///< the current request's header
  std::string body_;          ///< the current request's body, until it is sent
  std::optional<http::response_parser<http::string_body>> parser_;
  std::chrono::steady_clock::time_point deadline_;
  std::uint64_t generation_ = 0;  ///< bumped per arm and finish: a stale timer does nothing
  bool expired_ = false;          ///< the deadline passed during this exchange
  std::chrono::milliseconds read_timeout_{0};
  bool idle_armed_ = false;       ///< the timer stands at a read timeout, not the deadline
  bool idle_expired_ = false;     ///< ... and fired there
  chunk_fn on_chunk_;
  done_fn done_;
  http_outcome out_;
  bool stream_mode_ = false;
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
    return std::make_shared<channel_impl<asio::ssl::stream<tcp::socket>>>(ex, ep, std::move(tls), headers);
  return std::make_shared<channel_impl<tcp::socket>>(ex, ep, nullptr, headers);
}

}  // namespace troupe::protocols::llm::detail
