#pragma once
/// Private to troupe_llm: one keep-alive HTTP/1.1 connection to a provider,
/// plain or TLS, on Boost.Beast. Only http_channel.cpp includes Beast; this header
/// needs just the executor type.
#include <boost/asio/any_io_executor.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "troupe/base/result.hpp"
#include "troupe/protocols/llm/endpoint.hpp"

namespace troupe::protocols::llm::detail {

/// Opaque holder of an OpenSSL client context (system CA store + optional file).
struct tls_context;

/// Builds a verifying TLS client context; errc::invalid_config when the CA file
/// cannot be loaded.
base::result<std::shared_ptr<tls_context>> make_tls_context(const std::string& ca_file);

/// Header fields every request of a provider carries (credentials, API version).
using header_list = std::vector<std::pair<std::string, std::string>>;

struct http_request_spec {
  std::string target;
  std::string body;
  /// Longest wait for the next bytes of the response once the request is sent,
  /// the first ones included (0: only the exchange's deadline).
  std::chrono::milliseconds read_timeout{0};
};

/// What one exchange produced. `ec` is set for transport failures (connect,
/// write, read, timeout, abort); `status` is set once the header arrived.
struct http_outcome {
  boost::system::error_code ec;
  bool timed_out = false;
  std::int64_t idle_ms = 0;  ///< timed out because no bytes came for this long (read_timeout)
  bool aborted = false;   ///< abort() was called
  bool stopped = false;   ///< the chunk callback asked to stop
  bool got_header = false;
  int status = 0;
  std::string retry_after;
  std::string retry_after_ms;
  std::string body;  ///< whole body, except for a streamed 2xx response
  bool incremental = false;  ///< the body went to the chunk callback (a 2xx event stream)
  std::string stage;  ///< where a transport failure happened: resolve, connect, tls, write, read
};

/// One connection. Every member function and callback runs on the executor
/// given at creation (its engine's: handlers never overlap); one exchange at a time.
class http_channel {
 public:
  using chunk_fn = std::function<bool(std::string_view)>;
  using done_fn = std::function<void(http_outcome)>;

  virtual ~http_channel() = default;
  /// `headers` are set once on the connection's request and sent with every exchange.
  static std::shared_ptr<http_channel> create(boost::asio::any_io_executor ex, const endpoint& ep,
                                              std::shared_ptr<tls_context> tls,
                                              std::shared_ptr<const header_list> headers);

  /// Sends the request (connecting first if needed) and reads the response. The
  /// whole exchange must end by `deadline`; connecting by connect_timeout too. With
  /// `stream`, the body of a 2xx response goes to `on_chunk` as it arrives.
  virtual void exchange(http_request_spec request, std::chrono::steady_clock::time_point deadline,
                        std::chrono::milliseconds connect_timeout, bool stream, chunk_fn on_chunk,
                        done_fn done) = 0;
  /// Closes the socket now; a running exchange completes with aborted = true.
  virtual void abort() = 0;
  /// Connected, last response fully read and keep-alive.
  virtual bool reusable() const = 0;
  /// The current/last exchange ran on a connection used before (it may have gone
  /// stale while idle).
  virtual bool reused() const = 0;
};

}  // namespace troupe::protocols::llm::detail
