#pragma once
/// A provider's base URL split into what the HTTP client needs.
#include <string>
#include <string_view>

#include "troupe/base/result.hpp"

namespace troupe::protocols::llm {

struct endpoint {
  bool tls = false;
  std::string host;
  std::string port;  ///< "443" / "80" when the URL has none
  std::string path;  ///< base path without trailing '/', e.g. "/v1"; may be empty
  /// Host header value (host, plus ":port" when not the scheme default).
  std::string host_header() const;
};

/// Parses "http[s]://host[:port][/path]" (IPv6 literals in brackets). No
/// credentials, queries or fragments. Errors name the URL's problem.
base::result<endpoint> parse_endpoint(std::string_view url);

}  // namespace troupe::protocols::llm
