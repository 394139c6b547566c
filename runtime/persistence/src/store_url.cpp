#include "store_url.hpp"

#include "troupe/persistence/open_store.hpp"

namespace troupe::persistence {
namespace detail {
namespace {

struct span {
  std::size_t begin = std::string::npos;
  std::size_t end = std::string::npos;
  bool found() const { return begin != std::string::npos; }
};

/// Where the password sits in user info: scheme://user:PASSWORD@host...
span userinfo_password(const std::string& url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return {};
  const auto authority_begin = scheme_end + 3;
  auto authority_end = url.find_first_of("/?#", authority_begin);
  if (authority_end == std::string::npos) authority_end = url.size();
  // The last '@' of the authority ends the user info (a password may hold '@'
  // only percent-encoded, but be lenient).
  const auto at = url.rfind('@', authority_end);
  if (at == std::string::npos || at < authority_begin) return {};
  const auto colon = url.find(':', authority_begin);
  if (colon == std::string::npos || colon > at) return {};
  return {colon + 1, at};
}

/// Where the value of a `password=` query parameter sits.
span query_password(const std::string& url) {
  const auto query = url.find('?');
  if (query == std::string::npos) return {};
  std::size_t pos = query + 1;
  while (pos < url.size()) {
    auto next = url.find('&', pos);
    if (next == std::string::npos) next = url.size();
    if (url.compare(pos, 9, "password=") == 0) return {pos + 9, next};
    pos = next + 1;
  }
  return {};
}

}  // namespace

std::string url_password(const std::string& url) {
  if (auto s = userinfo_password(url); s.found()) return url.substr(s.begin, s.end - s.begin);
  if (auto s = query_password(url); s.found()) return url.substr(s.begin, s.end - s.begin);
  return {};
}

std::string scrub(std::string text, const std::string& secret) {
  if (secret.empty()) return text;
  for (auto pos = text.find(secret); pos != std::string::npos; pos = text.find(secret, pos + 3)) {
    text.replace(pos, secret.size(), "***");
  }
  return text;
}

}  // namespace detail

std::string redact_store_url(const std::string& url) {
  std::string out = url;
  // Query first: replacing it does not move the user info that precedes it.
  if (auto s = detail::query_password(out); s.found()) out.replace(s.begin, s.end - s.begin, "***");
  if (auto s = detail::userinfo_password(out); s.found()) {
    out.replace(s.begin, s.end - s.begin, "***");
  }
  return out;
}

}  // namespace troupe::persistence
