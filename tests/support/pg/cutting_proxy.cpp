#include "cutting_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace troupe::test {
namespace {

constexpr std::uint32_t ssl_request_code = 80877103;
constexpr std::uint32_t gss_request_code = 80877104;

std::uint32_t be32(const char* p) {
  std::uint32_t v = 0;
  std::memcpy(&v, p, 4);
  return ntohl(v);
}

bool send_all(int fd, const char* data, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

int connect_to(const std::string& host, std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) return -1;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/// Length of the first whole message in `buf`, 0 when it is incomplete. Before
/// the startup packet the messages carry no type byte.
std::size_t message_length(const std::string& buf, bool typed) {
  const std::size_t head = typed ? 5 : 4;
  if (buf.size() < head) return 0;
  const std::size_t len = (typed ? 1 : 0) + be32(buf.data() + (typed ? 1 : 0));
  return buf.size() >= len ? len : 0;
}

}  // namespace

pg_cutting_proxy::pg_cutting_proxy(std::string upstream_host, std::uint16_t upstream_port)
    : upstream_host_(std::move(upstream_host)), upstream_port_(upstream_port) {
  listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener_ < 0) throw std::runtime_error("proxy: socket: " + std::string(std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener_, 16) != 0 ||
      ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(listener_);
    throw std::runtime_error("proxy: bind/listen: " + std::string(std::strerror(errno)));
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

pg_cutting_proxy::~pg_cutting_proxy() {
  stopping_ = true;
  acceptor_.join();
  ::close(listener_);
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
}

void pg_cutting_proxy::arm(cut how) {
  std::lock_guard lock(mu_);
  armed_ = true;
  how_ = how;
  fired_ = false;
}

bool pg_cutting_proxy::take_arm(cut& how) {
  std::lock_guard lock(mu_);
  if (!armed_) return false;
  armed_ = false;
  how = how_;
  return true;
}

void pg_cutting_proxy::accept_loop() {
  while (!stopping_) {
    pollfd p{listener_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;  // the timeout only lets `stopping_` be seen
    const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    std::lock_guard lock(mu_);
    threads_.emplace_back([this, client] { serve(client); });
  }
}

void pg_cutting_proxy::serve(int client) {
  const int server = connect_to(upstream_host_, upstream_port_);
  if (server < 0) {
    ::close(client);
    return;
  }
  std::string from_client;   // bytes not yet forwarded, cut at message boundaries
  std::string from_server;   // the withheld answer, while a cut waits for its ReadyForQuery
  bool typed = false;        // past the untyped startup packets
  bool withholding = false;  // after_commit fired: the server's answer is not passed on
  bool done = false;
  pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
  char buf[16384];
  while (!stopping_ && !done) {
    const int n = ::poll(fds, 2, 50);
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    if (fds[0].revents != 0) {
      const ssize_t r = ::recv(client, buf, sizeof buf, 0);
      if (r <= 0) break;
      if (withholding) continue;  // the client waits for an answer it will not get
      from_client.append(buf, static_cast<std::size_t>(r));
      while (std::size_t len = message_length(from_client, typed)) {
        if (!typed) {
          const std::uint32_t code = len >= 8 ? be32(from_client.data() + 4) : 0;
          typed = code != ssl_request_code && code != gss_request_code;
        } else if (from_client[0] == 'E') {
          cut how{};
          if (take_arm(how)) {
            if (how == cut::before_statement) {
              fired_ = true;
              done = true;
              break;
            }
            withholding = true;  // this Execute and its Sync go through; the answer does not
          }
        }
        if (!send_all(server, from_client.data(), len)) {
          done = true;
          break;
        }
        from_client.erase(0, len);
      }
    }
    if (!done && fds[1].revents != 0) {
      const ssize_t r = ::recv(server, buf, sizeof buf, 0);
      if (r <= 0) break;
      if (!withholding) {
        if (!send_all(client, buf, static_cast<std::size_t>(r))) break;
        continue;
      }
      from_server.append(buf, static_cast<std::size_t>(r));
      while (std::size_t len = message_length(from_server, true)) {
        if (from_server[0] == 'Z') {  // ReadyForQuery: the statement's transaction ended
          fired_ = true;
          done = true;
          break;
        }
        from_server.erase(0, len);
      }
    }
  }
  ::close(client);
  ::close(server);
}

bool split_host_port(const std::string& url, std::string& host, std::uint16_t& port) {
  const auto at = url.find('@');
  const auto slash = url.find('/', at == std::string::npos ? 13 : at);
  const auto colon = url.rfind(':', slash);
  if (at == std::string::npos || slash == std::string::npos || colon == std::string::npos || colon < at) return false;
  host = url.substr(at + 1, colon - at - 1);
  port = static_cast<std::uint16_t>(std::stoi(url.substr(colon + 1, slash - colon - 1)));
  return true;
}

std::string via_proxy(const std::string& url, std::uint16_t proxy_port) {
  const auto at = url.find('@');
  const auto slash = url.find('/', at);
  return url.substr(0, at + 1) + "127.0.0.1:" + std::to_string(proxy_port) + url.substr(slash);
}

}  // namespace troupe::test
