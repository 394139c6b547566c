#include "troupe/protocols/llm/endpoint.hpp"

#include <algorithm>
#include <cctype>

namespace troupe::protocols::llm {

std::string endpoint::host_header() const {
  bool default_port = (tls && port == "443") || (!tls && port == "80");
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return default_port ? h : h + ":" + port;
}

base::result<endpoint> parse_endpoint(std::string_view url) {
  endpoint ep;
  std::string where = "base_url '" + std::string(url) + "'";
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos)
    return base::fail(base::errc::invalid_config, where + ": expected http:// or https://");
  std::string scheme(url.substr(0, scheme_end));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (scheme == "https") {
    ep.tls = true;
  } else if (scheme != "http") {
    return base::fail(base::errc::invalid_config, where + ": scheme must be http or https");
  }
  auto rest = url.substr(scheme_end + 3);
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  ep.path = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
  while (!ep.path.empty() && ep.path.back() == '/') ep.path.pop_back();
  if (ep.path.find_first_of("?#") != std::string::npos)
    return base::fail(base::errc::invalid_config, where + ": query or fragment not allowed");
  if (authority.find('@') != std::string_view::npos)
    return base::fail(base::errc::invalid_config, where + ": credentials in the URL are not allowed");
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos)
      return base::fail(base::errc::invalid_config, where + ": unterminated IPv6 literal");
    ep.host = std::string(authority.substr(1, close - 1));
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return base::fail(base::errc::invalid_config, where + ": bad port");
      port = after.substr(1);
    }
  } else {
    auto colon = authority.find(':');
    ep.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (ep.host.empty()) return base::fail(base::errc::invalid_config, where + ": missing host");
  if (port.empty()) {
    ep.port = ep.tls ? "443" : "80";
  } else {
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return base::fail(base::errc::invalid_config, where + ": port must be a number");
    int p = std::stoi(std::string(port));
    if (p < 1 || p > 65535)
      return base::fail(base::errc::invalid_config, where + ": port out of range 1-65535");
    ep.port = std::string(port);
  }
  return ep;
}

}  // namespace troupe::protocols::llm
