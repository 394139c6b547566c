// llm_bench: throughput and CPU cost of the llm client against the fake provider
// at a fixed latency, with a constant number of calls in flight (closed loop:
// each finished call starts the next one).
//
//   llm_bench [--latency-ms 50] [--seconds 5] [--inflight 256,1000] [--stream]
//             [--io-threads 1] [--child | --fake-bin PATH]
// --child runs the fake as a `fake-llm` child process so that the client's CPU
// time is measured apart from the fake's.
//
// The bound for N calls in flight at latency L is N / L calls per second.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "troupe/fake_llm/fake_llm.hpp"
#include "troupe/protocols/llm/llm_pool.hpp"

namespace {

using steady = std::chrono::steady_clock;
namespace llm = troupe::protocols::llm;

double cpu_seconds_self() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/// utime + stime of another process, from /proc/PID/stat.
double cpu_seconds_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = s.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(s.substr(close + 2));
  std::string field;
  double ut = 0, st = 0;
  for (int i = 3; rest >> field; ++i) {
    if (i == 14) ut = std::stod(field);
    if (i == 15) {
      st = std::stod(field);
      break;
    }
  }
  return (ut + st) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct child_fake {
  pid_t pid = -1;
  std::uint16_t port = 0;
};

child_fake spawn_fake(const std::string& bin, long latency_ms) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    std::string lat = std::to_string(latency_ms);
    execl(bin.c_str(), bin.c_str(), "--latency-ms", lat.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string line;
  char c;
  while (read(fds[0], &c, 1) == 1 && c != '\n') line.push_back(c);
  close(fds[0]);
  if (line.empty()) return {};
  return {pid, static_cast<std::uint16_t>(std::stoi(line))};
}

struct run_result {
  double calls_per_s = 0;
  double client_cpu_us_per_call = 0;
  double fake_cpu_us_per_call = -1;
  std::uint64_t failures = 0;
};

run_result run(llm::llm_pool& client, int inflight, double seconds, bool stream, pid_t fake_pid) {
  std::atomic<std::uint64_t> done{0}, failed{0};
  std::atomic<bool> stop{false};
  std::atomic<int> outstanding{0};
  std::mutex mu;
  std::condition_variable cv;
  troupe::base::llm_request req;
  req.provider = "fake";
  req.model = "bench";
  req.system = "You echo.";
  req.messages = {{"user", "the quick brown fox jumps over the lazy dog"}};
  req.max_tokens = 32;
  req.stream = stream;
  req.timeout_ms = 30000;

  std::function<void()> start_one = [&] {
    outstanding.fetch_add(1);
    client.call(req, nullptr, [&](troupe::base::result<troupe::base::llm_response> r) {
      if (r) done.fetch_add(1);
      else failed.fetch_add(1);
      if (!stop.load()) {
        start_one();
      }
      if (outstanding.fetch_sub(1) == 1) {
        std::lock_guard lock(mu);
        cv.notify_all();
      }
    });
  };
  // Warm up: connections are opened during the first round trip.
  for (int i = 0; i < inflight; ++i) start_one();
  auto warm_until = steady::now() + std::chrono::milliseconds(500);
  while (steady::now() < warm_until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  auto d0 = done.load();
  auto cpu0 = cpu_seconds_self();
  auto fake0 = fake_pid > 0 ? cpu_seconds_of(fake_pid) : 0;
  auto t0 = steady::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  auto d1 = done.load();
  auto cpu1 = cpu_seconds_self();
  auto fake1 = fake_pid > 0 ? cpu_seconds_of(fake_pid) : 0;
  auto t1 = steady::now();
  stop = true;
  {
    std::unique_lock lock(mu);
    cv.wait_for(lock, std::chrono::seconds(30), [&] { return outstanding.load() == 0; });
  }
  run_result r;
  double calls = static_cast<double>(d1 - d0);
  r.calls_per_s = calls / std::chrono::duration<double>(t1 - t0).count();
  r.client_cpu_us_per_call = (cpu1 - cpu0) * 1e6 / calls;
  if (fake_pid > 0) r.fake_cpu_us_per_call = (fake1 - fake0) * 1e6 / calls;
  r.failures = failed.load();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  long latency_ms = 50;
  double seconds = 5;
  bool stream = false;
  std::string fake_bin;
  std::vector<int> inflights = {256, 1000};
  int io_threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--stream") stream = true;
    else if (a == "--child") fake_bin = TROUPE_FAKE_LLM_BIN;
    else if (a == "--latency-ms") latency_ms = std::atol(value());
    else if (a == "--seconds") seconds = std::atof(value());
    else if (a == "--fake-bin") fake_bin = value();
    else if (a == "--io-threads") io_threads = std::atoi(value());
    else if (a == "--inflight") {
      inflights.clear();
      std::stringstream ss(value());
      for (std::string n; std::getline(ss, n, ',');) inflights.push_back(std::stoi(n));
    } else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);

  troupe::fake_llm::fake_llm_server in_process;
  child_fake child;
  std::uint16_t port = 0;
  if (!fake_bin.empty()) {
    child = spawn_fake(fake_bin, latency_ms);
    if (child.pid <= 0) {
      std::fprintf(stderr, "could not start %s\n", fake_bin.c_str());
      return 1;
    }
    port = child.port;
  } else {
    auto p = in_process.start();
    if (!p) {
      std::fprintf(stderr, "%s\n", p.error().message.c_str());
      return 1;
    }
    in_process.set_latency_ms(latency_ms);
    port = *p;
  }
  std::printf("fake: %s, latency %ld ms, %s, client io threads %d\n",
              fake_bin.empty() ? "in-process (CPU includes the fake)" : "child process (CPU separated)", latency_ms,
              stream ? "streaming" : "non-streaming", io_threads);
  for (int n : inflights) {
    troupe::config::provider p;
    p.name = "fake";
    p.kind = troupe::config::provider_kind::openai;
    p.base_url = "http://127.0.0.1:" + std::to_string(port) + "/v1";
    p.max_concurrency = n;
    p.timeout_ms = 30000;
    auto client = llm::make_llm_pool({{"fake", p}}, io_threads);
    auto r = run(*client, n, seconds, stream, child.pid);
    double bound = n * 1000.0 / static_cast<double>(latency_ms);
    std::printf("inflight %5d: %8.0f calls/s of %8.0f bound (%5.1f%%), client CPU %6.1f us/call", n, r.calls_per_s,
                bound, 100.0 * r.calls_per_s / bound, r.client_cpu_us_per_call);
    if (r.fake_cpu_us_per_call >= 0) std::printf(", fake CPU %6.1f us/call", r.fake_cpu_us_per_call);
    std::printf(", failures %llu\n", static_cast<unsigned long long>(r.failures));
    std::fflush(stdout);
    client->shutdown();
  }
  if (child.pid > 0) {
    kill(child.pid, SIGTERM);
    waitpid(child.pid, nullptr, 0);
  }
  return 0;
}
