#include "troupe/persistence/open_store.hpp"

#include <charconv>
#include <cstdlib>
#include <string_view>

#include "pg_store.hpp"
#include "sqlite_store.hpp"

namespace troupe::persistence {
namespace {

using base::errc;

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

/// Parses `sqlite:PATH[?key=value&...]`.
base::result<detail::sqlite_options> parse_sqlite_url(const std::string& url) {
  detail::sqlite_options options;
  std::string_view rest = std::string_view(url).substr(7);  // after "sqlite:"
  const auto query = rest.find('?');
  options.path = std::string(rest.substr(0, query));
  if (options.path.empty()) {
    return base::fail(errc::invalid_config, "store URL '" + url +
                                                "': missing database path, expected "
                                                "sqlite:PATH (e.g. sqlite:./troupe.db)");
  }
  if (query == std::string_view::npos) return options;
  std::string_view params = rest.substr(query + 1);
  while (!params.empty()) {
    const auto amp = params.find('&');
    const std::string_view param = params.substr(0, amp);
    params = amp == std::string_view::npos ? std::string_view{} : params.substr(amp + 1);
    const auto eq = param.find('=');
    const std::string_view key = param.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view{} : param.substr(eq + 1);
    if (key == "sync" && (value == "normal" || value == "full")) {
      options.sync = value == "full" ? detail::sqlite_sync::full : detail::sqlite_sync::normal;
    } else if (key == "busy_timeout_ms") {
      int ms = -1;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
      if (ec != std::errc{} || end != value.data() + value.size() || ms < 0 || ms > 600000) {
        return base::fail(errc::invalid_config, "store URL '" + url +
                                                    "': busy_timeout_ms must be an integer in "
                                                    "[0, 600000], got '" +
                                                    std::string(value) + "'");
      }
      options.busy_timeout_ms = ms;
    } else {
      return base::fail(errc::invalid_config,
                        "store URL '" + url + "': unknown or invalid option '" +
                            std::string(param) +
                            "', expected sync=normal|full or busy_timeout_ms=N");
    }
  }
  return options;
}

}  // namespace

base::result<std::unique_ptr<base::snapshot_store>> open_store(const std::string& url) {
  if (starts_with(url, "sqlite:")) {
    auto options = parse_sqlite_url(url);
    if (!options) return base::fail(options.error());
    return detail::open_sqlite_store(*options);
  }
  if (starts_with(url, "postgresql://") || starts_with(url, "postgres://")) {
    return detail::open_pg_store(url);
  }
  return base::fail(errc::invalid_config,
                    "store URL '" + redact_store_url(url) +
                        "' is not supported: expected sqlite:PATH or postgresql://...");
}

std::size_t overlapped_writers(const std::string& url) {
  if (!starts_with(url, "postgresql://") && !starts_with(url, "postgres://")) return 0;
  // For A/B measurements only (daemon_bench): TROUPE_PG_WRITERS=0 gives the
  // single-connection store actor.
  if (const char* env = std::getenv("TROUPE_PG_WRITERS")) {
    int n = -1;
    const std::string_view v(env);
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec == std::errc{} && end == v.data() + v.size() && n >= 0 && n <= 16)
      return static_cast<std::size_t>(n);
  }
  return 3;
}

}  // namespace troupe::persistence
