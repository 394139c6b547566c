#include "troupe/base/ids.hpp"

#include <cstdio>

#include "troupe/base/clock.hpp"

namespace troupe::base {

std::string id_generator::next() {
  auto candidate = static_cast<std::uint64_t>(now_ms()) << 16;
  auto prev = last_.load(std::memory_order_relaxed);
  std::uint64_t id = 0;
  do {
    id = candidate > prev ? candidate : prev + 1;
  } while (!last_.compare_exchange_weak(prev, id, std::memory_order_relaxed));
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return prefix_ + "_" + buf;
}

std::string format_rfc3339(std::int64_t ms) {
  auto secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

}  // namespace troupe::base
