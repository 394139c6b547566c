#pragma once
/// Small helpers shared by scheduler_bench and daemon_bench: process memory and
/// CPU readings from /proc and getrusage, percentiles, and table printing.
/// Linux only (benchmarks run on the Debian build machine).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace troupe::bench {

using clock_type = std::chrono::steady_clock;

/// Seconds elapsed since `t0`.
inline double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// Resident set size of this process in bytes (/proc/self/statm, second field).
inline std::int64_t self_rss_bytes() {
  std::ifstream in("/proc/self/statm");
  std::int64_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * static_cast<std::int64_t>(sysconf(_SC_PAGESIZE));
}

/// User + system CPU seconds used by this process so far (all threads).
inline double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

/// User + system CPU seconds of process `pid` (/proc/PID/stat fields 14 and 15);
/// negative when the process cannot be read.
inline double proc_cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return -1;
  // The command name (field 2) may contain spaces: fields are counted after its ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

/// VmRSS of process `pid` in bytes (/proc/PID/status); negative when unreadable.
inline std::int64_t proc_rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      std::int64_t kib = 0;
      in >> kib;
      return kib * 1024;
    }
    std::string skip;
    std::getline(in, skip);
  }
  return -1;
}

/// The q-quantile (0..1) of `xs` by nearest rank; sorts `xs`. 0 when empty.
inline double percentile(std::vector<double>& xs, double q) {
  if (xs.empty()) return 0;
  std::sort(xs.begin(), xs.end());
  auto rank = static_cast<std::size_t>(q * static_cast<double>(xs.size() - 1) + 0.5);
  return xs[std::min(rank, xs.size() - 1)];
}

/// Prints one row of a two-column result table: a label and a formatted value.
inline void row(const std::string& label, const std::string& value) {
  std::printf("  %-52s %s\n", label.c_str(), value.c_str());
  std::fflush(stdout);
}

/// printf into a std::string.
template <class... Ts>
std::string strf(const char* f, Ts... xs) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, xs...);
  return buf;
}

/// `prefix` followed by the decimal `n` ("a" + 7 -> "a7"). Appends instead of
/// `"lit" + std::to_string(n)`, which trips GCC 12's -Wrestrict false positive at -O3.
inline std::string numbered(const char* prefix, long long n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}

/// A section heading for the tables.
inline void heading(const std::string& title) {
  std::printf("\n%s\n  %s\n", title.c_str(), std::string(title.size(), '-').c_str());
  std::fflush(stdout);
}

}  // namespace troupe::bench
