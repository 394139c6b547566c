// connect_timeout_ms bounds the TCP connect and the TLS handshake, apart from the
// (longer) attempt timeout: against a loopback listener that never accepts.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "one_call.hpp"

namespace troupe::protocols::llm {
namespace {

using namespace std::chrono_literals;

/// A TCP listener on 127.0.0.1 that never accepts, reads or writes. The kernel
/// completes handshakes into its accept queue until the queue is full; after
/// that it drops SYNs, so connects hang.
class silent_listener {
 public:
  explicit silent_listener(int backlog) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ok_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) == 0 && ::listen(fd_, backlog) == 0 &&
          ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0;
    port_ = ntohs(a.sin_port);
  }
  ~silent_listener() {
    for (int f : fillers_) ::close(f);
    if (fd_ >= 0) ::close(fd_);
  }
  silent_listener(const silent_listener&) = delete;
  silent_listener& operator=(const silent_listener&) = delete;

  bool ok() const { return ok_; }
  std::uint16_t port() const { return port_; }

  /// Fills a backlog-0 accept queue (it holds one connection) so that the next
  /// connect cannot complete.
  bool fill() {
    int f = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port_);
    fillers_.push_back(f);
    return f >= 0 && ::connect(f, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
  std::uint16_t port_ = 0;
  std::vector<int> fillers_;
};

/// One call with one attempt, connect timeout 300 ms, attempt timeout 10 s.
test::call_result call_once(const std::string& base_url) {
  config::provider p;
  p.name = "p";
  p.kind = config::provider_kind::openai;
  p.base_url = base_url;
  p.connect_timeout_ms = 300;
  p.timeout_ms = 10000;
  p.retry = {1, 1, 1};
  return test::one_call(p, [](base::llm_request& r) { r.timeout_ms = 20000; });
}

TEST(llm_timeouts, a_connect_that_never_completes_ends_at_connect_timeout) {
  silent_listener l(0);
  ASSERT_TRUE(l.ok());
  ASSERT_TRUE(l.fill());
  auto t = call_once("http://127.0.0.1:" + std::to_string(l.port()) + "/v1");
  ASSERT_FALSE(t.result);
  EXPECT_EQ(t.result.error().code, base::errc::timeout) << t.result.error().message;
  EXPECT_NE(t.result.error().message.find("during connect"), std::string::npos) << t.result.error().message;
  EXPECT_GE(t.elapsed, 250ms);
  EXPECT_LT(t.elapsed, 5s);  // the attempt timeout (10 s) did not decide
}

TEST(llm_timeouts, a_tls_handshake_that_never_completes_ends_at_connect_timeout) {
  silent_listener l(16);  // connects complete; the ClientHello is never answered
  ASSERT_TRUE(l.ok());
  auto t = call_once("https://127.0.0.1:" + std::to_string(l.port()) + "/v1");
  ASSERT_FALSE(t.result);
  EXPECT_EQ(t.result.error().code, base::errc::timeout) << t.result.error().message;
  EXPECT_NE(t.result.error().message.find("during tls"), std::string::npos) << t.result.error().message;
  EXPECT_GE(t.elapsed, 250ms);
  EXPECT_LT(t.elapsed, 5s);
}

}  // namespace
}  // namespace troupe::protocols::llm
