// llm_daemon_bench: the real `troupe` daemon making network LLM calls. Starts
// `fake-llm` (a separate process, fixed latency) and `troupe run` on a config
// with one provider of the given kind pointed at it, a team whose agents hold
// exactly N calls in flight (agents x max_concurrent = provider max_concurrency
// = N), and a fresh SQLite store. The team's workflow has S sequential steps
// (--steps, default 1 and 8), each one LLM call.
//
// Per case: warm-up; the team is paused (WebSocket op) while M tasks are
// submitted over keep-alive HTTP connections; then resumed, and the run is timed
// from the resume until /metrics counts all M finished. So the figures cover
// dispatching, the calls and their durable results, not the HTTP submits
// (reported apart). The bound for N in flight at latency L is N / L calls/s.
// CPU time is the daemon process's only (/proc/PID/stat), split by thread name
// (the llm client's I/O threads are named "troupe-llm-io": while CAF's idle worker
// drives the io_context, which is most of the time under load, the replies are read on
// the workers and that thread is near zero; CAF's workers, its
// clock and the store actor's own thread are the rest).
//
// What a call costs versus the durable task around it: a 1-step task pays the
// task's fixed costs (its actor, the task row, its completion's commit) once per
// call; an S-step task spreads them over S calls (each step still commits its
// result). With CPU per call c1 (1 step) and cS (S steps), c = a + b / S gives
// the task's fixed cost b = (c1 - cS) S / (S - 1) and a call's own cost a
// (dispatch, the HTTP call, the step's durable result), printed at the end.
// The daemon always has a store; a call without any store is measured by
// llm_bench (the client alone) and the in-process runtime tests.
//
//   llm_daemon_bench [--troupe PATH] [--fake-llm PATH] [--latency-ms 50]
//                    [--inflight 256,1000] [--kinds openai,anthropic] [--steps 1,8]
//                    [--seconds 8] [--stream] [--clients 16] [--fake-threads 1]
//                    [--runtime-threads N]  (the daemon's CAF workers; default: its own, 2)
//                    [--on-resume CMD]  (run by `sh -c` in the background at each resume,
//                                        with TROUPE_PID set: e.g. a profiler of the timed run)
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_proc.hpp"
#include "daemon_process.hpp"
#include "troupe/protocols/client/http_client.hpp"
#include "troupe/protocols/client/ws_client.hpp"

#ifndef TROUPE_BIN
#define TROUPE_BIN "troupe"
#endif
#ifndef TROUPE_FAKE_LLM_BIN
#define TROUPE_FAKE_LLM_BIN "fake-llm"
#endif

namespace {

using nlohmann::json;
using namespace troupe::bench;
namespace client = troupe::protocols::client;
namespace fs = std::filesystem;
using ms = std::chrono::milliseconds;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "llm_daemon_bench: %s\n", what.c_str());
  std::exit(1);
}

struct options {
  std::string troupe = TROUPE_BIN, fake = TROUPE_FAKE_LLM_BIN;
  long latency_ms = 50;
  std::vector<int> inflight = {256, 1000};
  std::vector<std::string> kinds = {"openai", "anthropic"};
  std::vector<int> steps = {1, 8};
  double seconds = 8;
  bool stream = false;
  int clients = 16;
  int fake_threads = 1;
  int runtime_threads = 0;  ///< 0: the daemon's default
  std::string on_resume;    ///< shell command started at each resume (profiling)
};

/// Splits "a,b,c".
std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');)
    if (!part.empty()) out.push_back(part);
  return out;
}

/// The daemon's config: provider "llm" of `kind` at `base_url`, team "t" of
/// `agents` agents whose max_concurrent adds up to `inflight`, and a workflow of
/// `steps` sequential steps.
json make_config(const options& o, const std::string& kind, const std::string& base_url, int inflight,
                 int steps, const std::string& store) {
  const int agents = 4;
  json cfg;
  cfg["store"] = store;
  cfg["control"] = {{"listen", "127.0.0.1:0"}, {"max_clients", 4096}};
  if (o.runtime_threads > 0) cfg["runtime"]["threads"] = o.runtime_threads;
  cfg["providers"]["llm"] = {{"kind", kind},
                             {"base_url", base_url},
                             {"max_concurrency", inflight},
                             {"timeout_ms", 30000},
                             {"retry", {{"max_attempts", 4}, {"base_ms", 50}, {"max_ms", 1000}}}};
  cfg["models"]["m"] = {{"provider", "llm"}, {"name", "bench-model"}, {"max_tokens", 64}, {"stream", o.stream}};
  json names = json::array();
  for (int i = 0; i < agents; ++i) {
    int share = inflight / agents + (i < inflight % agents ? 1 : 0);
    auto name = numbered("a", i);
    cfg["agents"].push_back({{"name", name},
                             {"model", "m"},
                             {"system", "You echo."},
                             {"max_concurrent", share},
                             {"capabilities", {"work"}}});
    names.push_back(name);
  }
  json wf = json::array();
  for (int s = 0; s < steps; ++s)
    wf.push_back({{"id", numbered("s", s)}, {"capability", "work"}, {"prompt", "Echo: {{input}}"}});
  cfg["teams"] = json::array({{{"name", "t"}, {"agents", names}, {"workflow", wf}, {"max_queued", 10000000}}});
  return cfg;
}

/// Reads /metrics (reconnecting once if the server closed the connection).
std::string metrics_text(client::http_connection& c, std::uint16_t port) {
  auto r = c.request(client::method::get, "/metrics");
  if (!r) {
    c.close();
    if (auto ok = c.connect("127.0.0.1", port); !ok) die("reconnect for /metrics: " + ok.error().message);
    r = c.request(client::method::get, "/metrics");
  }
  if (!r) die("GET /metrics: " + r.error().message);
  if (r->status != 200) die("GET /metrics: HTTP " + std::to_string(r->status) + " " + r->body);
  return r->body;
}

/// The value of the sample `name_and_labels` ("x{a=\"b\"}") in /metrics text; 0 when absent.
double sample(const std::string& text, const std::string& name_and_labels) {
  auto at = text.find("\n" + name_and_labels + " ");
  return at == std::string::npos ? 0.0 : std::atof(text.c_str() + at + name_and_labels.size() + 2);
}

double finished_tasks(const std::string& m) {
  double total = 0;
  for (const char* outcome : {"succeeded", "failed", "cancelled"})
    total += sample(m, std::string("troupe_tasks_total{team=\"t\",outcome=\"") + outcome + "\"}");
  return total;
}

/// CPU seconds per thread name of process `pid`, from /proc/PID/task/TID/stat
/// (/proc/TID/stat would give the whole process's figures).
std::map<std::string, double> thread_cpu(pid_t pid) {
  std::map<std::string, double> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(e.path() / "stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    auto open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    // After the name: state is field 3, utime and stime are fields 14 and 15.
    std::istringstream rest(line.substr(close + 2));
    std::vector<std::string> f{std::istream_iterator<std::string>(rest), {}};
    if (f.size() < 13) continue;
    out[line.substr(open + 1, close - open - 1)] +=
        (std::stod(f[11]) + std::stod(f[12])) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  return out;
}

/// One op over a fresh WebSocket connection (closed at once, so no subscriber lingers).
void control_op(std::uint16_t port, const std::string& op) {
  client::ws_client ws;
  if (auto c = ws.connect("ws://127.0.0.1:" + std::to_string(port)); !c) die("ws connect: " + c.error().message);
  auto r = ws.request(op, {{"team", "t"}}, std::chrono::seconds(30));
  if (!r) die(op + " failed: " + r.error().message);
  ws.close();
}

/// Submits `n` tasks over `clients` keep-alive connections; returns accepted.
long long submit(std::uint16_t port, long long n, int clients) {
  std::atomic<long long> next{0}, accepted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&] {
      client::http_connection conn(std::chrono::seconds(60));
      if (auto c = conn.connect("127.0.0.1", port); !c) die("connect: " + c.error().message);
      const std::string body = R"({"team":"t","input":"the quick brown fox jumps over the lazy dog"})";
      while (next.fetch_add(1) < n) {
        auto r = conn.request(client::method::post, "/v1/tasks", body);
        if (!r || r->status != 202) die("submit failed: " + (r ? std::to_string(r->status) + " " + r->body : r.error().message));
        accepted.fetch_add(1);
      }
    });
  for (auto& t : threads) t.join();
  return accepted.load();
}

/// Polls /metrics until `target` tasks finished; samples the provider's in-flight gauge.
struct drain_result {
  double seconds = 0, mean_in_flight = 0;
  /// LLM calls per second while 10 % to 90 % of the tasks finished: the run without its
  /// ramp and its drain (the last tasks' remaining steps run with ever fewer calls in
  /// flight, ~S x 50 ms for S-step tasks). 0 when the run was too short to tell.
  double steady_calls_per_s = 0;
};

/// Polls /metrics until `target` tasks finished. Each scrape costs the daemon CPU
/// (the whole metrics text is rendered), which the figures would count as the calls'
/// own: so it polls every 100 ms while the end is far, and every 10 ms once the
/// remaining tasks would take under half a second at the current rate, keeping the
/// end's timing accurate. The in-flight gauge's mean weighs each sample by the time
/// until the next one.
drain_result wait_finished(client::http_connection& c, std::uint16_t port, double target,
                           clock_type::time_point t0) {
  drain_result out;
  double weighted = 0, span = 0;
  auto deadline = clock_type::now() + std::chrono::seconds(900);
  double last_done = -1;
  auto last_at = clock_type::now();
  double last_in_flight = 0;
  double first_done = -1;
  std::optional<std::pair<clock_type::time_point, double>> at10, at90;  // (when, calls)
  for (;;) {
    auto m = metrics_text(c, port);
    auto now = clock_type::now();
    double done = finished_tasks(m);
    if (first_done < 0) first_done = done;
    const double share = target > first_done ? (done - first_done) / (target - first_done) : 1.0;
    const auto calls = [&] { return sample(m, "troupe_llm_provider_calls_total{provider=\"llm\",outcome=\"all\"}"); };
    if (!at10 && share >= 0.1) at10.emplace(now, calls());
    if (!at90 && share >= 0.9) at90.emplace(now, calls());
    double dt = std::chrono::duration<double>(now - last_at).count();
    if (last_done >= 0) {
      weighted += last_in_flight * dt;
      span += dt;
    }
    if (done >= target) break;
    double rate = last_done >= 0 ? (done - last_done) / std::max(1e-3, dt) : 0;
    last_done = done;
    last_at = now;
    last_in_flight = sample(m, "troupe_llm_provider_in_flight{provider=\"llm\"}");
    if (now > deadline) die("tasks did not finish within 900 s");
    bool near_end = rate <= 0 || (target - done) / rate < 0.5;
    std::this_thread::sleep_for(ms(near_end ? 10 : 100));
  }
  out.seconds = seconds_since(t0);
  out.mean_in_flight = span > 0 ? weighted / span : 0;
  if (at10 && at90 && at90->first > at10->first)
    out.steady_calls_per_s =
        (at90->second - at10->second) / std::chrono::duration<double>(at90->first - at10->first).count();
  return out;
}

/// CPU per call of one case, for the summary.
struct case_cpu {
  double total = 0, io = 0, rest = 0;
};

case_cpu run_case(const options& o, const std::string& kind, int inflight, int steps) {
  std::string tmpl = (fs::temp_directory_path() / "troupe-llm-bench-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) die("mkdtemp failed");
  fs::path dir = tmpl;
  std::string why;
  troupe::test::daemon_process fake;
  if (!fake.start(o.fake, {"--latency-ms", std::to_string(o.latency_ms), "--threads", std::to_string(o.fake_threads)},
                  "", why))
    die("cannot start fake-llm: " + why);
  if (!fake.wait_for_output("\n", std::chrono::seconds(10))) die("fake-llm printed no port: " + fake.output());
  auto fake_port = std::stoi(fake.output());
  auto base_url = "http://127.0.0.1:" + std::to_string(fake_port) + (kind == "openai" ? "/v1" : "");
  {
    std::ofstream out(dir / "troupe.json");
    out << make_config(o, kind, base_url, inflight, steps, "sqlite:" + (dir / "troupe.db").string()).dump(1);
  }
  troupe::test::daemon_process d;
  if (!d.start(o.troupe, {"run", (dir / "troupe.json").string(), "--log-level", "info"}, "", why))
    die("cannot start troupe: " + why);
  auto port = d.wait_until_ready(std::chrono::seconds(60));
  if (!port) die("the daemon did not become ready; its output:\n" + d.output());
  client::http_connection probe(std::chrono::seconds(30));
  if (auto c = probe.connect("127.0.0.1", *port); !c) die("connect: " + c.error().message);

  // Warm-up: connections to the fake, allocator arenas, SQLite cache.
  long long warm = submit(*port, std::max(inflight * 4LL / steps, 2LL * inflight), o.clients);
  (void)wait_finished(probe, *port, static_cast<double>(warm), clock_type::now());

  const double bound = inflight * 1000.0 / static_cast<double>(o.latency_ms);
  const auto m = static_cast<long long>(bound * o.seconds / steps);
  control_op(*port, "pause");
  auto cpu_s0 = proc_cpu_seconds(d.pid());
  auto ts = clock_type::now();
  auto accepted = submit(*port, m, o.clients);
  auto submit_s = seconds_since(ts);
  auto submit_cpu = proc_cpu_seconds(d.pid()) - cpu_s0;

  auto before = metrics_text(probe, *port);
  auto threads0 = thread_cpu(d.pid());
  auto cpu0 = proc_cpu_seconds(d.pid());
  auto fake_cpu0 = proc_cpu_seconds(fake.pid());
  auto t0 = clock_type::now();
  control_op(*port, "resume");
  if (!o.on_resume.empty()) {
    ::setenv("TROUPE_PID", std::to_string(d.pid()).c_str(), 1);
    if (std::system(("(" + o.on_resume + ") &").c_str()) != 0) die("--on-resume: cannot start " + o.on_resume);
  }
  auto r = wait_finished(probe, *port, static_cast<double>(warm + accepted), t0);
  auto cpu = proc_cpu_seconds(d.pid()) - cpu0;
  auto fake_cpu = proc_cpu_seconds(fake.pid()) - fake_cpu0;
  auto threads1 = thread_cpu(d.pid());
  auto after = metrics_text(probe, *port);
  auto delta = [&](const std::string& key) { return sample(after, key) - sample(before, key); };
  double calls = delta("troupe_llm_provider_calls_total{provider=\"llm\",outcome=\"all\"}");
  double failed = delta("troupe_llm_provider_calls_total{provider=\"llm\",outcome=\"failed\"}");
  double succeeded = delta("troupe_tasks_total{team=\"t\",outcome=\"succeeded\"}");

  heading(strf("%s, %d calls in flight, %d-step tasks%s", kind.c_str(), inflight, steps, o.stream ? ", streaming" : ""));
  row(strf("tasks (%d LLM call%s each): submitted / succeeded", steps, steps == 1 ? "" : "s"),
      strf("%lld / %.0f", accepted, succeeded));
  row("LLM calls / failed / retries",
      strf("%.0f / %.0f / %.0f", calls, failed, delta("troupe_llm_provider_retries_total{provider=\"llm\"}")));
  row("calls/s (resume -> all finished)", strf("%.0f", calls / r.seconds));
  row(strf("fraction of the bound (%d / %ld ms = %.0f/s)", inflight, o.latency_ms, bound),
      strf("%.1f %%", 100.0 * calls / r.seconds / bound));
  if (r.steady_calls_per_s > 0)
    row("  steady state (10 % -> 90 % of the tasks finished): calls/s, of the bound",
        strf("%.0f, %.1f %%", r.steady_calls_per_s, 100.0 * r.steady_calls_per_s / bound));
  row("mean provider in-flight gauge (time-weighted samples)", strf("%.0f", r.mean_in_flight));
  row("daemon CPU per call (utime+stime)", strf("%.1f us  (%.2f cores busy)", cpu * 1e6 / calls, cpu / r.seconds));
  double io = 0, rest = 0;
  for (const auto& [name, s] : threads1) {
    double used = s - (threads0.count(name) ? threads0.at(name) : 0.0);
    (name == "troupe-llm-io" ? io : rest) += used;
  }
  row("  of which the llm I/O thread / all other threads", strf("%.1f / %.1f us", io * 1e6 / calls, rest * 1e6 / calls));
  double clock = 0, store = 0, control = 0;
  for (const auto& [name, s] : threads1) {
    double used = s - (threads0.count(name) ? threads0.at(name) : 0.0);
    if (name == "caf.clock") clock += used;
    else if (name == "caf.actor") store += used;  // detached actors: the store's writer
    else if (name == "troupe-ctl-io") control += used;  // mostly this benchmark's /metrics polls
  }
  row("  other threads: CAF workers / detached (the store) / CAF clock / control server",
      strf("%.1f / %.1f / %.1f / %.1f us", (rest - clock - store - control) * 1e6 / calls, store * 1e6 / calls,
           clock * 1e6 / calls, control * 1e6 / calls));
  row("  store: group commits / rows written per call",
      strf("%.3f / %.2f", delta("troupe_store_commits_total") / calls, delta("troupe_store_rows_total") / calls));
  std::string load;
  {
    std::ifstream la("/proc/loadavg");
    std::getline(la, load);
  }
  row("load average (1/5/15 min) at the end", load.substr(0, load.find(' ', load.find(' ', load.find(' ') + 1) + 1)));
  row("fake-llm CPU per call (separate process)", strf("%.1f us", fake_cpu * 1e6 / calls));
  // The fake provider does a comparable job (loopback HTTP, JSON) on the same cores,
  // so this ratio moves with the daemon's code, not with the machine's speed.
  row("daemon CPU per call / fake-llm CPU per call", strf("%.2f", cpu / fake_cpu));
  row("submits while paused: tasks/s, daemon CPU per submit",
      strf("%.0f, %.1f us", static_cast<double>(accepted) / submit_s, submit_cpu * 1e6 / static_cast<double>(accepted)));
  row("daemon RSS at the end", strf("%.1f MiB", static_cast<double>(proc_rss_bytes(d.pid())) / 1048576.0));

  d.signal(SIGTERM);
  if (!d.wait_exit(std::chrono::seconds(60))) d.kill_hard();
  fake.signal(SIGTERM);
  if (!fake.wait_exit(std::chrono::seconds(10))) fake.kill_hard();
  fs::remove_all(dir);
  return {cpu * 1e6 / calls, io * 1e6 / calls, rest * 1e6 / calls};
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value after " + a);
      return argv[++i];
    };
    if (a == "--troupe") o.troupe = next();
    else if (a == "--fake-llm") o.fake = next();
    else if (a == "--latency-ms") o.latency_ms = std::stol(next());
    else if (a == "--inflight") {
      o.inflight.clear();
      for (const auto& s : split(next())) o.inflight.push_back(std::stoi(s));
    } else if (a == "--kinds") o.kinds = split(next());
    else if (a == "--steps") {
      o.steps.clear();
      for (const auto& s : split(next())) o.steps.push_back(std::stoi(s));
    }
    else if (a == "--seconds") o.seconds = std::stod(next());
    else if (a == "--stream") o.stream = true;
    else if (a == "--clients") o.clients = std::stoi(next());
    else if (a == "--fake-threads") o.fake_threads = std::stoi(next());
    else if (a == "--runtime-threads") o.runtime_threads = std::stoi(next());
    else if (a == "--on-resume") o.on_resume = next();
    else
      die("unknown argument '" + a +
          "' (use --troupe PATH --fake-llm PATH --latency-ms N --inflight N,N --kinds openai,anthropic --steps 1,8 "
          "--seconds S --stream --clients C --fake-threads N --runtime-threads N --on-resume CMD)");
  }
  if (o.latency_ms <= 0) die("--latency-ms must be positive");
  for (int s : o.steps)
    if (s < 1) die("--steps must be positive");
  for (const auto& k : o.kinds)
    if (k != "openai" && k != "anthropic") die("unknown kind '" + k + "' (openai or anthropic)");
  for (const auto* bin : {&o.troupe, &o.fake})
    if (access(bin->c_str(), X_OK) != 0) die("no executable at '" + *bin + "' (pass --troupe / --fake-llm)");
  signal(SIGPIPE, SIG_IGN);
  std::printf("llm_daemon_bench: troupe run + fake-llm (separate processes), latency %ld ms, team of 4 agents,\n"
              "  %.0f s of calls at the bound per case, %d submit connections, %u hardware threads\n",
              o.latency_ms, o.seconds, o.clients, std::thread::hardware_concurrency());
  std::map<std::tuple<std::string, int, int>, case_cpu> got;
  for (const auto& kind : o.kinds)
    for (int n : o.inflight)
      for (int s : o.steps) got[{kind, n, s}] = run_case(o, kind, n, s);
  // A call's own cost and the task's fixed cost, from each pair (1 step, S steps).
  bool titled = false;
  for (const auto& kind : o.kinds)
    for (int n : o.inflight)
      for (int s : o.steps) {
        if (s == 1 || !got.count({kind, n, 1})) continue;
        if (!titled) {
          heading("CPU per call split: c = a + b / steps (from the 1-step and the S-step case)");
          titled = true;
        }
        const auto& one = got.at({kind, n, 1});
        const auto& many = got.at({kind, n, s});
        double k = static_cast<double>(s) / (s - 1);
        double b = (one.total - many.total) * k, b_io = (one.io - many.io) * k;
        row(strf("%s, %d in flight, S = %d: a call / a task's fixed part", kind.c_str(), n, s),
            strf("%.1f us (I/O thread %.1f) / %.1f us", one.total - b, one.io - b_io, b));
      }
  return 0;
}
