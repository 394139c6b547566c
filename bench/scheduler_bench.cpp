// scheduler_bench: the actor runtime in-process, without a store, on the
// zero-latency scripted provider. Measures what the scheduler itself costs:
//   1. tasks/s for a 1-step and a 5-step workflow (a bounded number of tasks in
//      flight; timed from the first submit to the last "finished" event),
//   2. work orders/s through one agent's mailbox (one agent, large max_concurrent),
//   3. resident memory per idle agent (100,000 agents) and per queued task
//      (1,000,000 tasks queued behind a paused team).
// The memory figures come from child processes (this binary re-executed with
// --child) so that each measurement starts from a clean heap.
//
//   scheduler_bench [--tasks N] [--window K] [--agents N] [--queued N]
//                   [--mailbox-concurrency N] [--repeat R] [--sections 123] [--quick]
// Each throughput case runs R times (default 3) and reports the fastest run: the
// build machine is shared, so single runs vary a lot. "No event listener" counts
// completions by polling the runtime's counters instead of listening on the bus,
// which shows what building the events costs.
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#ifdef TROUPE_WITH_TCMALLOC
#include <gperftools/malloc_extension_c.h>
#endif
#include <spdlog/spdlog.h>

#include "bench_proc.hpp"
#include "troupe/agents/event.hpp"
#include "troupe/host/runtime.hpp"

namespace {

using nlohmann::json;
using namespace troupe;
using namespace troupe::bench;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "scheduler_bench: %s\n", what.c_str());
  std::exit(1);
}

/// A config with one scripted zero-latency provider and the given teams.
/// Each team gets `agents` agents with capability "work" and a workflow of
/// `steps` sequential steps routed by that capability.
json make_config(int teams, int agents, int max_concurrent, int steps, int max_queued) {
  json cfg;
  cfg["store"] = "sqlite:unused.db";
  cfg["providers"]["p"] = {{"kind", "scripted"}, {"latency_ms", 0}, {"replies", json::array({{{"text", "ok"}}})}};
  cfg["models"]["m"] = {{"provider", "p"}};
  cfg["agents"] = json::array();
  cfg["teams"] = json::array();
  for (int t = 0; t < teams; ++t) {
    json names = json::array();
    for (int i = 0; i < agents; ++i) {
      auto name = numbered("t", t) + numbered("a", i);
      cfg["agents"].push_back({{"name", name}, {"model", "m"}, {"max_concurrent", max_concurrent}, {"capabilities", {"work"}}});
      names.push_back(name);
    }
    json wf = json::array();
    for (int s = 0; s < steps; ++s)
      wf.push_back({{"id", numbered("s", s)}, {"capability", "work"}, {"prompt", "step {{input}}"}});
    cfg["teams"].push_back({{"name", numbered("team", t)}, {"agents", names}, {"workflow", wf}, {"max_queued", max_queued}});
  }
  return cfg;
}

config::config load(const json& cfg) {
  auto r = config::load_config_text(cfg.dump());
  if (!r.cfg) {
    std::string problems;
    for (const auto& p : r.problems) problems += "\n  " + p.path + ": " + p.message;
    die("generated config rejected:" + problems);
  }
  return *r.cfg;
}

/// One control-port call, waited for with a deadline.
base::result<json> call(host::runtime& rt, const std::string& op, json args,
                        std::chrono::seconds timeout = std::chrono::seconds(60)) {
  auto p = std::make_shared<std::promise<base::result<json>>>();
  auto f = p->get_future();
  rt.call(protocols::principal{}, op, std::move(args), [p](base::result<json> r) { p->set_value(std::move(r)); });
  if (f.wait_for(timeout) != std::future_status::ready)
    return base::fail(base::errc::timeout, "no reply to '" + op + "' within " + std::to_string(timeout.count()) + " s");
  return f.get();
}

/// Counts finished tasks from the event bus and wakes the submitter when the
/// count reaches the target it waits for (one wake-up per batch, not per task).
class completions {
 public:
  /// `listen`: count "finished" events from the bus (every event is then built);
  /// otherwise poll the runtime's counters (no listener: the bus builds no events).
  completions(host::runtime& rt, bool listen) : rt_(rt), listen_(listen) {
    if (!listen) return;
    token_ = rt.bus()->subscribe([this](const agents::event_ptr& ev) {
      if (ev->name != "task.update") return;
      auto what = ev->data.find("what");
      if (what == ev->data.end() || *what != "finished") return;
      auto state = ev->data.find("state");
      if (state == ev->data.end() || *state != "succeeded") failed_.fetch_add(1);
      add(1);
    });
  }
  /// Counts tasks that will never finish (rejected submits) so waits still end.
  void add(std::uint64_t n) {
    auto now = done_.fetch_add(n) + n;
    if (waiting_.load() && now >= target_.load()) {
      std::lock_guard guard{mutex_};
      cv_.notify_one();
    }
  }
  /// Waits until at least `n` tasks ended; false at the deadline.
  bool wait_for(std::uint64_t n, std::chrono::seconds deadline) {
    if (!listen_) return poll_for(n, deadline);
    if (done_.load() >= n) return true;
    std::unique_lock lock{mutex_};
    target_.store(n);
    waiting_.store(true);
    bool ok = cv_.wait_for(lock, deadline, [&] { return done_.load() >= n; });
    waiting_.store(false);
    return ok;
  }
  std::uint64_t done() const { return done_.load(); }
  std::uint64_t failed() const { return failed_.load(); }

 private:
  // The "metrics" op reads the teams' atomic counters on the calling thread: cheap to poll.
  bool poll_for(std::uint64_t n, std::chrono::seconds deadline) {
    auto until = clock_type::now() + deadline;
    while (true) {
      auto m = call(rt_, "metrics", json::object());
      if (!m) die("metrics: " + m.error().message);
      std::uint64_t ended = 0, failed = 0;
      for (const auto& [name, t] : (*m)["teams"].items()) {
        ended += t["succeeded"].get<std::uint64_t>() + t["failed"].get<std::uint64_t>() +
                 t["cancelled"].get<std::uint64_t>();
        failed += t["failed"].get<std::uint64_t>() + t["cancelled"].get<std::uint64_t>();
      }
      failed_.store(failed);
      auto extra = done_.load();  // rejected submits, counted through add()
      if (ended + extra >= n) return true;
      if (clock_type::now() > until) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  host::runtime& rt_;
  bool listen_;
  std::atomic<std::uint64_t> done_{0}, failed_{0}, target_{0};
  std::atomic<bool> waiting_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
  std::shared_ptr<void> token_;
};

struct throughput_result {
  double seconds = 0;
  double cpu_seconds = 0;
  std::uint64_t tasks = 0, failed = 0, rejected = 0;
};

/// Submits `n` tasks round-robin over `teams` with at most `window` unfinished
/// at any time; times first submit -> last finished event.
throughput_result run_throughput(const json& cfg_json, int teams, std::size_t n, std::size_t window,
                                 bool listen = true) {
  host::runtime rt(load(cfg_json), host::runtime_options{false, {}, 200});
  if (auto s = rt.start(); !s) die("runtime start failed: " + s.error().message);
  completions done(rt, listen);
  std::atomic<std::uint64_t> rejected{0};
  std::vector<std::string> team_names;
  for (int t = 0; t < teams; ++t) team_names.push_back(numbered("team", t));
  auto submit_all = [&](std::size_t count, std::uint64_t base) {
    for (std::size_t i = 0; i < count; ++i) {
      auto submitted = base + i;
      if (submitted >= window && !done.wait_for(submitted - window + window / 8 + 1, std::chrono::seconds(120)))
        die("tasks stopped finishing (" + std::to_string(submitted) + " submitted)");
      rt.call(protocols::principal{}, "submit", json{{"team", team_names[i % team_names.size()]}, {"input", "x"}},
              [&rejected, &done](base::result<json> r) {
                if (!r) {
                  rejected.fetch_add(1);
                  done.add(1);
                }
              });
    }
    if (!done.wait_for(base + count, std::chrono::seconds(300))) die("not every task finished within 300 s");
  };
  // Warm-up: CAF spawns its workers lazily, allocators grow their arenas.
  std::size_t warm = std::min<std::size_t>(n / 10, 20000);
  submit_all(warm, 0);
  auto cpu0 = self_cpu_seconds();
  auto t0 = clock_type::now();
  submit_all(n, warm);
  throughput_result r;
  r.seconds = seconds_since(t0);
  r.cpu_seconds = self_cpu_seconds() - cpu0;
  r.tasks = n;
  r.failed = done.failed();
  r.rejected = rejected.load();
  rt.stop(1000);
  return r;
}

/// Repeats a run `times` times (the machine is shared: figures vary) and keeps the fastest;
/// every run's tasks/s is printed.
int repeats = 3;
template <class F>
throughput_result best_of(const std::string& label, F run) {
  throughput_result best;
  std::string all;
  for (int i = 0; i < repeats; ++i) {
    auto r = run();
    all += (all.empty() ? "" : ", ") + strf("%.0f", double(r.tasks) / r.seconds);
    if (best.seconds == 0 || r.seconds < best.seconds) best = r;
  }
  row(label + ": every run, tasks/s", all);
  return best;
}

void print_throughput(const std::string& label, const throughput_result& r, int steps) {
  row(label + ": tasks/s (best run)", strf("%.0f  (%llu tasks in %.2f s; %llu failed, %llu rejected)", double(r.tasks) / r.seconds,
                               (unsigned long long)r.tasks, r.seconds, (unsigned long long)r.failed,
                               (unsigned long long)r.rejected));
  row(label + ": steps/s", strf("%.0f", double(r.tasks) * steps / r.seconds));
  row(label + ": CPU per task (whole process)", strf("%.1f us  (%.2f cores busy)", r.cpu_seconds * 1e6 / double(r.tasks),
                                                    r.cpu_seconds / r.seconds));
}

/// Waits until RSS stops moving (three equal samples 50 ms apart, at most 3 s):
/// CAF starts spawned actors asynchronously.
std::int64_t settled_rss() {
  auto last = self_rss_bytes();
  int same = 0;
  auto t0 = clock_type::now();
  while (same < 3 && seconds_since(t0) < 3) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto now = self_rss_bytes();
    same = now == last ? same + 1 : 0;
    last = now;
  }
  return last;
}

/// Bytes the allocator has handed out and not taken back. Unlike RSS it does not
/// depend on where freed memory (the parsed JSON) left holes, nor on the caches
/// of the allocator.
std::int64_t heap_in_use() {
#ifdef TROUPE_WITH_TCMALLOC
  std::size_t bytes = 0;
  MallocExtension_GetNumericProperty("generic.current_allocated_bytes", &bytes);
  return static_cast<std::int64_t>(bytes);
#else
  auto mi = mallinfo2();
  return static_cast<std::int64_t>(mi.uordblks + mi.hblkhd);
#endif
}

/// Child: a runtime with `n` idle agents in one team. Prints RSS before the
/// config, after loading it, and after start() with every actor spawned.
int child_idle(int n) {
  auto rss0 = self_rss_bytes();
  auto cfg_json = make_config(1, n, 1, 1, 10000);
  auto cfg = load(cfg_json);
  cfg_json = json();
  auto rss1 = self_rss_bytes();
  auto heap1 = heap_in_use();
  host::runtime rt(std::move(cfg), host::runtime_options{false, {}, 200});
  if (auto s = rt.start(); !s) die("runtime start failed: " + s.error().message);
  // The team answers only after its init spawned every agent. A small query on
  // purpose: pause/resume answer with the status of all 100,000 agents, a ~100 MB
  // JSON document that is freed but leaves the heap (and RSS) grown.
  if (auto r = call(rt, "tasks", {{"team", "team0"}, {"limit", 1}}); !r) die("tasks: " + r.error().message);
  auto rss2 = settled_rss();
  auto heap2 = heap_in_use();
  std::printf("RESULT %lld %lld %lld %lld %lld\n", (long long)rss0, (long long)rss1, (long long)rss2,
              (long long)heap1, (long long)heap2);
  rt.stop(0);
  return 0;
}

/// Child: `n` tasks queued behind a paused team. Prints RSS before and after.
int child_queued(std::size_t n) {
  auto cfg = load(make_config(1, 1, 1, 1, static_cast<int>(n + 10)));
  host::runtime rt(std::move(cfg), host::runtime_options{false, {}, 200});
  if (auto s = rt.start(); !s) die("runtime start failed: " + s.error().message);
  if (auto r = call(rt, "pause", {{"team", "team0"}}); !r) die("pause: " + r.error().message);
  auto rss0 = settled_rss();
  // Few replies outstanding at a time, so the mailbox itself never holds many submits.
  std::atomic<std::uint64_t> replied{0}, rejected{0};
  std::mutex m;
  std::condition_variable cv;
  const std::uint64_t window = 1000;
  for (std::size_t i = 0; i < n; ++i) {
    if (i >= window) {
      std::unique_lock lock{m};
      cv.wait(lock, [&] { return replied.load() + window > i; });
    }
    rt.call(protocols::principal{}, "submit", json{{"team", "team0"}, {"input", "x"}},
            [&](base::result<json> r) {
              if (!r) rejected.fetch_add(1);
              replied.fetch_add(1);
              if (replied.load() % 256 == 0 || replied.load() == n) {
                std::lock_guard guard{m};
                cv.notify_one();
              }
            });
  }
  {
    std::unique_lock lock{m};
    if (!cv.wait_for(lock, std::chrono::seconds(300), [&] { return replied.load() >= n; }))
      die("not every submit was answered within 300 s");
  }
  auto metrics = call(rt, "metrics", json::object());
  if (!metrics) die("metrics: " + metrics.error().message);
  auto queued = (*metrics)["teams"]["team0"]["queued"].get<long long>();
  auto rss1 = settled_rss();
  std::printf("RESULT %lld %lld %lld %llu\n", (long long)rss0, (long long)rss1, queued,
              (unsigned long long)rejected.load());
  std::fflush(stdout);
  std::_Exit(0);  // tearing down a million tasks tells us nothing
}

/// Runs this binary with `args` and returns the numbers of its RESULT line.
std::vector<long long> run_child(const std::string& self, const std::string& args) {
  auto cmd = self + " " + args;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) die("cannot run " + cmd);
  std::vector<long long> out;
  char line[512];
  while (std::fgets(line, sizeof line, p)) {
    if (std::strncmp(line, "RESULT ", 7) != 0) continue;
    char* s = line + 7;
    char* end = nullptr;
    for (long long v = std::strtoll(s, &end, 10); end != s; v = std::strtoll(s, &end, 10)) {
      out.push_back(v);
      s = end;
    }
  }
  if (pclose(p) != 0 || out.empty()) die("child '" + cmd + "' failed");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  std::size_t tasks = 200000, window = 10000, queued = 1000000;
  int idle_agents = 100000, mailbox_concurrency = 10000;
  std::string sections = "123";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value after " + a);
      return argv[++i];
    };
    if (a == "--child") {
      auto kind = next();
      auto n = std::stoll(next());
      if (kind == "idle") return child_idle(static_cast<int>(n));
      if (kind == "queued") return child_queued(static_cast<std::size_t>(n));
      die("unknown child kind '" + kind + "'");
    } else if (a == "--tasks") {
      tasks = std::stoull(next());
    } else if (a == "--window") {
      window = std::stoull(next());
    } else if (a == "--agents") {
      idle_agents = std::stoi(next());
    } else if (a == "--queued") {
      queued = std::stoull(next());
    } else if (a == "--mailbox-concurrency") {
      mailbox_concurrency = std::stoi(next());
    } else if (a == "--repeat") {
      repeats = std::max(1, std::stoi(next()));
    } else if (a == "--sections") {
      sections = next();
    } else if (a == "--quick") {
      tasks = 20000, idle_agents = 10000, queued = 100000, repeats = 1;
    } else {
      die("unknown argument '" + a + "' (use --tasks N --window K --agents N --queued N --mailbox-concurrency N --repeat R --sections 123 --quick)");
    }
  }
  std::printf("scheduler_bench: in-process runtime, no store, scripted provider with latency 0\n");
  std::printf("  %zu tasks per run, at most %zu unfinished at once, %u hardware threads\n", tasks, window,
              std::thread::hardware_concurrency());

  if (sections.find('1') != std::string::npos) {
  heading("1. Task throughput (team of 4 agents, max_concurrent 64 each, capability routing)");
  auto case1 = [&](const std::string& label, int teams, int steps, std::size_t n, bool listen) {
    auto cfg = make_config(teams, 4, 64, steps, 10000000);
    print_throughput(label, best_of(label, [&] { return run_throughput(cfg, teams, n, window, listen); }), steps);
  };
  case1("1-step, 1 team", 1, 1, tasks, true);
  case1("1-step, 1 team, no event listener", 1, 1, tasks, false);
  case1("1-step, 2 teams", 2, 1, tasks, true);
  case1("5-step, 1 team", 1, 5, tasks / 5, true);

  }
  if (sections.find('2') != std::string::npos) {
    heading(strf("2. One agent's mailbox (1 agent, max_concurrent %d, 1-step tasks)", mailbox_concurrency));
    auto cfg = make_config(1, 1, mailbox_concurrency, 1, 10000000);
    auto r = best_of("1 agent", [&] {
      return run_throughput(cfg, 1, tasks, std::max<std::size_t>(window, 2 * static_cast<std::size_t>(mailbox_concurrency)));
    });
    row("work orders/s through the agent (assign in, step_done out)", strf("%.0f", double(r.tasks) / r.seconds));
    row("CPU per work order (whole process)", strf("%.1f us", r.cpu_seconds * 1e6 / double(r.tasks)));
  }

  if (sections.find('3') == std::string::npos) return 0;
  heading("3. Memory");
  {
    auto base = run_child(argv[0], "--child idle 1");
    auto many = run_child(argv[0], numbered("--child idle ", idle_agents));
    auto runtime_delta = [](const std::vector<long long>& v) { return double(v[2] - v[1]); };
    auto total_delta = [](const std::vector<long long>& v) { return double(v[2] - v[0]); };
    double per_agent_rt = (runtime_delta(many) - runtime_delta(base)) / double(idle_agents - 1);
    double per_agent_all = (total_delta(many) - total_delta(base)) / double(idle_agents - 1);
    row(strf("idle agents: %d (1 team), RSS after start", idle_agents), strf("%.1f MiB", double(many[2]) / 1048576.0));
    row("per idle agent: actors + team state (RSS delta / agents)", strf("%.0f bytes", per_agent_rt));
    row("per idle agent: including its parsed config", strf("%.0f bytes", per_agent_all));
    auto heap_delta = [](const std::vector<long long>& v) { return double(v[4] - v[3]); };
    row("per idle agent: heap in use after start (allocator's count, delta / agents)",
        strf("%.0f bytes", (heap_delta(many) - heap_delta(base)) / double(idle_agents - 1)));
  }
  {
    auto q = run_child(argv[0], numbered("--child queued ", static_cast<long long>(queued)));
    row(strf("queued tasks behind a paused team: %lld (rejected %lld)", q[2], q[3]),
        strf("RSS %.1f -> %.1f MiB", double(q[0]) / 1048576.0, double(q[1]) / 1048576.0));
    row("per queued task (RSS delta / tasks)", strf("%.0f bytes", double(q[1] - q[0]) / double(queued)));
  }
  return 0;
}
