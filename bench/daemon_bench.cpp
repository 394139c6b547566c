// daemon_bench: the real troupe binary end to end. Starts `troupe run` on a
// generated config (zero-latency scripted provider, 1-step team) with a fresh
// SQLite store (and PostgreSQL when --pg URL is given), listening on
// 127.0.0.1:0; C client threads, each with one keep-alive connection, submit
// N tasks over HTTP (every 202 means the task is committed). Reports accepted
// tasks/s, end-to-end tasks/s (until /metrics counts them all finished),
// p50/p99 submit latency and the daemon's CPU per task. Then the daemon's
// resident memory with 10,000 idle agents minus a 1-agent baseline.
//
//   daemon_bench [--troupe PATH] [--tasks N] [--clients C] [--agents N] [--pg URL] [--quick]
//                [--pg-server-pid PID] [--no-sqlite] [--no-memory]
//
// --pg-server-pid names the postmaster of the --pg server (`head -1 PGDATA/postmaster.pid`)
// so its CPU per task is reported too: on a 2-core machine the daemon, the
// server and the bench's own clients share the same cores.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_proc.hpp"
#include "troupe/protocols/client/http_client.hpp"

#ifndef TROUPE_BIN
#define TROUPE_BIN "troupe"
#endif

namespace {

using nlohmann::json;
using namespace troupe;
using namespace troupe::bench;
namespace client = troupe::protocols::client;
namespace fs = std::filesystem;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "daemon_bench: %s\n", what.c_str());
  std::exit(1);
}

/// A config for the daemon: one team "t" of `agents` agents (capability
/// "work") on a zero-latency scripted provider, 1-step workflow.
json make_config(const std::string& store, int agents, int max_concurrent) {
  json cfg;
  cfg["store"] = store;
  cfg["control"] = {{"listen", "127.0.0.1:0"}, {"max_clients", 4096}};
  cfg["providers"]["p"] = {{"kind", "scripted"}, {"latency_ms", 0}, {"replies", json::array({{{"text", "ok"}}})}};
  cfg["models"]["m"] = {{"provider", "p"}};
  json names = json::array();
  for (int i = 0; i < agents; ++i) {
    auto name = numbered("a", i);
    cfg["agents"].push_back({{"name", name}, {"model", "m"}, {"max_concurrent", max_concurrent}, {"capabilities", {"work"}}});
    names.push_back(name);
  }
  json wf = json::array({{{"id", "only"}, {"capability", "work"}, {"prompt", "do {{input}}"}}});
  cfg["teams"] = json::array({{{"name", "t"}, {"agents", names}, {"workflow", wf}, {"max_queued", 10000000}}});
  return cfg;
}

/// A running `troupe run` child: its pid, port, and a thread draining its stderr.
class daemon_process {
 public:
  daemon_process(const std::string& bin, const std::string& config_path, const std::string& store_override) {
    int fds[2];
    if (pipe(fds) != 0) die("pipe failed");
    std::vector<std::string> args = {bin, "run", config_path, "--listen", "127.0.0.1:0", "--log-level", "info"};
    if (!store_override.empty()) args.insert(args.end(), {"--store", store_override});
    pid_ = fork();
    if (pid_ < 0) die("fork failed");
    if (pid_ == 0) {
      dup2(fds[1], STDERR_FILENO);
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      std::fprintf(stderr, "exec %s failed: %s\n", argv[0], std::strerror(errno));
      _exit(127);
    }
    close(fds[1]);
    fd_ = fds[0];
    wait_listening();
    drain_ = std::thread([this] { drain(); });
  }
  ~daemon_process() { stop(); }
  daemon_process(const daemon_process&) = delete;
  daemon_process& operator=(const daemon_process&) = delete;

  pid_t pid() const { return pid_; }
  std::uint16_t port() const { return port_; }

  /// SIGTERM, then waits (SIGKILL after 30 s).
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    auto t0 = clock_type::now();
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (seconds_since(t0) > 30) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
    if (drain_.joinable()) drain_.join();
    close(fd_);
  }

  /// The last lines the daemon wrote (for error reports).
  std::string tail() {
    std::lock_guard guard{mutex_};
    std::string out;
    for (const auto& l : lines_) out += "    | " + l + "\n";
    return out;
  }

 private:
  // Reads stderr until the "troupe listening on http://HOST:PORT" line (60 s at most).
  void wait_listening() {
    std::string buf;
    auto t0 = clock_type::now();
    while (seconds_since(t0) < 60) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 200) <= 0) continue;
      char chunk[4096];
      auto n = read(fd_, chunk, sizeof chunk);
      if (n <= 0) break;
      buf.append(chunk, static_cast<std::size_t>(n));
      std::size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        auto line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        keep(line);
        auto at = line.find("troupe listening on http://");
        if (at == std::string::npos) continue;
        auto hostport = line.substr(at + std::strlen("troupe listening on http://"));
        auto colon = hostport.find(':');
        if (colon == std::string::npos) continue;
        port_ = static_cast<std::uint16_t>(std::stoi(hostport.substr(colon + 1)));
        return;
      }
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    die("the daemon did not report 'troupe listening on' within 60 s; its output:\n" + tail());
  }
  void drain() {
    std::string buf;
    char chunk[4096];
    ssize_t n;
    while ((n = read(fd_, chunk, sizeof chunk)) > 0) {
      buf.append(chunk, static_cast<std::size_t>(n));
      std::size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        keep(buf.substr(0, nl));
        buf.erase(0, nl + 1);
      }
    }
  }
  void keep(const std::string& line) {
    std::lock_guard guard{mutex_};
    lines_.push_back(line);
    if (lines_.size() > 20) lines_.erase(lines_.begin());
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread drain_;
  std::mutex mutex_;
  std::vector<std::string> lines_;
};

/// Sum of troupe_tasks_total for team "t" over the terminal outcomes; nullopt on error.
std::optional<long long> finished_count(client::http_connection& c) {
  auto r = c.request(client::method::get, "/metrics");
  if (!r || r->status != 200) return std::nullopt;
  long long total = 0;
  for (const char* outcome : {"succeeded", "failed", "cancelled"}) {
    auto key = std::string("troupe_tasks_total{team=\"t\",outcome=\"") + outcome + "\"} ";
    auto at = r->body.find(key);
    if (at == std::string::npos) return std::nullopt;
    total += std::atoll(r->body.c_str() + at + key.size());
  }
  return total;
}

/// The value of an unlabelled sample `name` in /metrics text; 0 when absent.
double metric(const std::string& text, const std::string& name) {
  auto at = text.find("\n" + name + " ");
  return at == std::string::npos ? 0.0 : std::atof(text.c_str() + at + name.size() + 2);
}

/// CPU seconds of this process (the 64 client threads), to split the 2 cores.
double self_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

/// CPU seconds of a PostgreSQL server: the postmaster with its reaped
/// children (cutime, cstime: backends that exited) plus its live children.
/// -1 without a pid.
double server_cpu_seconds(pid_t postmaster) {
  if (postmaster <= 0) return -1;
  auto fields = [](pid_t pid, bool with_children) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(in, line)) return 0.0;
    auto close = line.rfind(')');
    if (close == std::string::npos) return 0.0;
    std::istringstream rest(line.substr(close + 2));
    std::string field;
    double total = 0;
    for (int i = 3; i <= 17 && rest >> field; ++i)
      if (i == 14 || i == 15 || (with_children && (i == 16 || i == 17))) total += std::stod(field);
    return total;
  };
  double ticks = fields(postmaster, true);
  std::ifstream kids("/proc/" + std::to_string(postmaster) + "/task/" + std::to_string(postmaster) + "/children");
  for (pid_t kid = 0; kids >> kid;) ticks += fields(kid, false);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

pid_t g_server_pid = 0;  ///< --pg-server-pid: the postmaster, for its CPU per task

/// The store writer's counters, to attribute time to group commits.
struct store_counters {
  double commits = 0, rows = 0, seconds = 0;
};

store_counters read_store_counters(std::uint16_t port) {
  client::http_connection c(std::chrono::seconds(10));
  if (auto ok = c.connect("127.0.0.1", port); !ok) return {};
  auto r = c.request(client::method::get, "/metrics");
  if (!r || r->status != 200) return {};
  return {metric(r->body, "troupe_store_commits_total"), metric(r->body, "troupe_store_rows_total"),
          metric(r->body, "troupe_store_commit_seconds_total")};
}

struct load_result {
  long long accepted = 0, errors = 0;
  double accept_seconds = 0, e2e_seconds = 0, cpu_seconds = 0, client_cpu_seconds = 0, server_cpu_seconds = -1;
  std::vector<double> latencies_ms;
  std::string first_error;
  std::int64_t rss = 0;
  store_counters store;  ///< deltas over the run
};

/// `n` submits spread over `clients` threads (one keep-alive connection each).
load_result submit_load(const daemon_process& d, long long n, int clients, long long already_finished) {
  load_result out;
  std::atomic<long long> next{0}, accepted{0}, errors{0};
  std::mutex mutex;
  std::vector<std::vector<double>> lat(static_cast<std::size_t>(clients));
  std::atomic<std::int64_t> last_ack_ns{0};
  std::vector<client::http_connection> conns;
  for (int i = 0; i < clients; ++i) {
    conns.emplace_back(std::chrono::seconds(60));
    if (auto c = conns.back().connect("127.0.0.1", d.port()); !c) die("connect: " + c.error().message);
  }
  const std::string body = R"({"team":"t","input":"x"})";
  auto store0 = read_store_counters(d.port());
  auto cpu0 = proc_cpu_seconds(d.pid());
  auto client_cpu0 = self_cpu_seconds();
  auto server_cpu0 = server_cpu_seconds(g_server_pid);
  auto t0 = clock_type::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&, i] {
      auto& conn = conns[static_cast<std::size_t>(i)];
      auto& mine = lat[static_cast<std::size_t>(i)];
      mine.reserve(static_cast<std::size_t>(n / clients + 1));
      while (next.fetch_add(1) < n) {
        auto s = clock_type::now();
        auto r = conn.request(client::method::post, "/v1/tasks", body);
        auto e = clock_type::now();
        if (r && r->status == 202) {
          accepted.fetch_add(1);
          mine.push_back(std::chrono::duration<double, std::milli>(e - s).count());
          auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(e - t0).count();
          auto prev = last_ack_ns.load();
          while (prev < ns && !last_ack_ns.compare_exchange_weak(prev, ns)) {
          }
          continue;
        }
        errors.fetch_add(1);
        std::lock_guard guard{mutex};
        if (out.first_error.empty())
          out.first_error = r ? "HTTP " + std::to_string(r->status) + ": " + r->body : r.error().message;
        if (!r) {
          conn.close();
          (void)conn.connect("127.0.0.1", d.port());
        }
      }
    });
  for (auto& t : threads) t.join();
  out.accepted = accepted.load();
  out.errors = errors.load();
  out.accept_seconds = static_cast<double>(last_ack_ns.load()) / 1e9;
  // Completion: poll the daemon's counters (a 5 ms poll interval bounds the error).
  client::http_connection probe(std::chrono::seconds(10));
  if (auto c = probe.connect("127.0.0.1", d.port()); !c) die("connect: " + c.error().message);
  auto deadline = clock_type::now() + std::chrono::seconds(600);
  while (true) {
    auto f = finished_count(probe);
    if (f && *f >= already_finished + out.accepted) break;
    if (clock_type::now() > deadline) die("tasks did not all finish within 600 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  out.e2e_seconds = seconds_since(t0);
  out.cpu_seconds = proc_cpu_seconds(d.pid()) - cpu0;
  out.client_cpu_seconds = self_cpu_seconds() - client_cpu0;
  if (server_cpu0 >= 0) out.server_cpu_seconds = server_cpu_seconds(g_server_pid) - server_cpu0;
  out.rss = proc_rss_bytes(d.pid());
  auto store1 = read_store_counters(d.port());
  out.store = {store1.commits - store0.commits, store1.rows - store0.rows, store1.seconds - store0.seconds};
  for (auto& v : lat) out.latencies_ms.insert(out.latencies_ms.end(), v.begin(), v.end());
  return out;
}

/// A fresh temporary directory for one daemon run (removed by the caller).
fs::path make_temp_dir() {
  std::string tmpl = (fs::temp_directory_path() / "troupe-daemon-bench-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) die("mkdtemp failed");
  return tmpl;
}

void write_config(const fs::path& path, const json& cfg) {
  std::ofstream out(path);
  out << cfg.dump(1);
  if (!out) die("cannot write " + path.string());
}

void throughput_run(const std::string& bin, const std::string& label, const std::string& pg_url, long long n,
                    int clients) {
  auto dir = make_temp_dir();
  auto store = "sqlite:" + (dir / "troupe.db").string();
  write_config(dir / "troupe.json", make_config(store, 4, 64));
  {
    daemon_process d(bin, (dir / "troupe.json").string(), pg_url);
    // Warm-up: connections, allocator arenas, SQLite page cache.
    auto warm = submit_load(d, std::min<long long>(n / 10, 5000), clients, 0);
    if (warm.accepted == 0) die("warm-up: no task accepted (" + warm.first_error + ")\n" + d.tail());
    auto r = submit_load(d, n, clients, warm.accepted);
    heading("Durable submit over HTTP: " + label);
    row("tasks submitted / accepted (202) / errors",
        strf("%lld / %lld / %lld", n, r.accepted, r.errors));
    if (!r.first_error.empty()) row("first error", r.first_error);
    row("accepted tasks/s (first submit -> last 202)", strf("%.0f", double(r.accepted) / r.accept_seconds));
    row("end-to-end tasks/s (first submit -> all finished)", strf("%.0f", double(r.accepted) / r.e2e_seconds));
    auto p50 = percentile(r.latencies_ms, 0.50), p99 = percentile(r.latencies_ms, 0.99);
    row("submit latency p50 / p99 / max", strf("%.2f / %.2f / %.2f ms", p50, p99, r.latencies_ms.empty() ? 0.0 : r.latencies_ms.back()));
    row("daemon CPU per task (utime+stime)", strf("%.1f us  (%.2f cores busy)", r.cpu_seconds * 1e6 / double(r.accepted),
                                                 r.cpu_seconds / r.e2e_seconds));
    row("bench clients' CPU per task", strf("%.1f us  (%.2f cores busy)", r.client_cpu_seconds * 1e6 / double(r.accepted),
                                           r.client_cpu_seconds / r.e2e_seconds));
    if (!pg_url.empty() && r.server_cpu_seconds >= 0)
      row("PostgreSQL server CPU per task", strf("%.1f us  (%.2f cores busy)", r.server_cpu_seconds * 1e6 / double(r.accepted),
                                                r.server_cpu_seconds / r.e2e_seconds));
    if (r.store.commits > 0) {
      row("store: group commits / rows per task",
          strf("%.0f / %.2f", r.store.commits, r.store.rows / double(r.accepted)));
      row("store: rows per commit / mean commit time",
          strf("%.1f / %.2f ms", r.store.rows / r.store.commits, r.store.seconds * 1e3 / r.store.commits));
      row("store: share of wall time spent committing", strf("%.0f %%", 100.0 * r.store.seconds / r.e2e_seconds));
    }
    row("daemon RSS at the end", strf("%.1f MiB", double(r.rss) / 1048576.0));
  }
  fs::remove_all(dir);
}

/// Daemon VmRSS after start with `agents` idle agents (waits until it stops moving).
std::int64_t idle_rss(const std::string& bin, int agents) {
  auto dir = make_temp_dir();
  write_config(dir / "troupe.json", make_config("sqlite:" + (dir / "troupe.db").string(), agents, 1));
  std::int64_t rss = 0;
  {
    daemon_process d(bin, (dir / "troupe.json").string(), "");
    // The team answers only after it spawned its agents: one task proves it.
    client::http_connection c(std::chrono::seconds(60));
    if (auto ok = c.connect("127.0.0.1", d.port()); !ok) die("connect: " + ok.error().message);
    auto r = c.request(client::method::post, "/v1/tasks", R"({"team":"t","input":"x"})");
    if (!r || r->status != 202) die("submit on the idle daemon failed\n" + d.tail());
    auto deadline = clock_type::now() + std::chrono::seconds(60);
    while (finished_count(c).value_or(0) < 1 && clock_type::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    // Then RSS settles: three equal readings 100 ms apart.
    int same = 0;
    rss = proc_rss_bytes(d.pid());
    while (same < 3 && clock_type::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      auto now = proc_rss_bytes(d.pid());
      same = now == rss ? same + 1 : 0;
      rss = now;
    }
  }
  fs::remove_all(dir);
  return rss;
}

}  // namespace

int main(int argc, char** argv) {
  std::string bin = TROUPE_BIN, pg_url;
  long long tasks = 100000;
  int clients = 64, idle_agents = 10000;
  bool sqlite = true, memory = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value after " + a);
      return argv[++i];
    };
    if (a == "--troupe") bin = next();
    else if (a == "--tasks") tasks = std::stoll(next());
    else if (a == "--clients") clients = std::stoi(next());
    else if (a == "--agents") idle_agents = std::stoi(next());
    else if (a == "--pg") pg_url = next();
    else if (a == "--pg-server-pid") g_server_pid = static_cast<pid_t>(std::stol(next()));
    else if (a == "--no-sqlite") sqlite = false;
    else if (a == "--no-memory") memory = false;
    else if (a == "--quick") tasks = 10000, idle_agents = 1000;
    else
      die("unknown argument '" + a +
          "' (use --troupe PATH --tasks N --clients C --agents N --pg URL --pg-server-pid PID --no-sqlite "
          "--no-memory --quick)");
  }
  if (access(bin.c_str(), X_OK) != 0) die("no executable troupe binary at '" + bin + "' (pass --troupe PATH)");
  signal(SIGPIPE, SIG_IGN);
  std::printf("daemon_bench: troupe run, 1-step team of 4 agents (max_concurrent 64) on a scripted provider, latency 0\n");
  std::printf("  %lld tasks per run over %d keep-alive connections, %u hardware threads\n", tasks, clients,
              std::thread::hardware_concurrency());
  if (sqlite) throughput_run(bin, "SQLite (fresh file)", "", tasks, clients);
  if (!pg_url.empty()) throughput_run(bin, "PostgreSQL", pg_url, tasks, clients);
  if (!memory) return 0;

  heading("Daemon memory with idle agents");
  auto base = idle_rss(bin, 1);
  auto many = idle_rss(bin, idle_agents);
  row("VmRSS with 1 agent", strf("%.1f MiB", double(base) / 1048576.0));
  row(strf("VmRSS with %d agents", idle_agents), strf("%.1f MiB", double(many) / 1048576.0));
  row("per idle agent ((RSS_N - RSS_1) / (N - 1))", strf("%.0f bytes", double(many - base) / double(idle_agents - 1)));
  return 0;
}
