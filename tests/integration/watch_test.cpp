// The control plane against the real daemon binary: `troupe watch` in a real
// terminal (tmux, screen read back with capture-pane), the latency histograms
// of /metrics, 500 WebSocket subscribers, tokens and access_token, and clean
// closes on shutdown.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "daemon_process.hpp"
#include "integration_env.hpp"
#include "troupe/protocols/client/ws_client.hpp"

namespace troupe::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using protocols::client::method;
using protocols::client::ws_client;

// Two teams: `ops` (one worker taking one task at a time; a prompt with HOLD
// keeps it busy for ten minutes, so later tasks queue) and `desk` (a draft,
// then a human decision; BREAK makes the draft fail for good). Prices are high
// so a handful of calls shows a visible cost.
constexpr const char* config_text = R"({
  "providers": {
    "offline": { "kind": "scripted", "latency_ms": 2, "replies": [
      { "match": "HOLD", "text": "held", "latency_ms": 600000 },
      { "match": "BREAK", "fault": "fatal", "error": "the model refused" },
      { "text": "done: {{input}}" } ] }
  },
  "models": { "m": { "provider": "offline", "name": "m-small", "usd_per_mtok_in": 1000, "usd_per_mtok_out": 1000 } },
  "agents": [
    { "name": "worker", "model": "m", "system": "You work.", "max_concurrent": 1 },
    { "name": "writer", "model": "m", "system": "You write.", "max_concurrent": 4 }
  ],
  "teams": [
    { "name": "ops", "agents": ["worker"],
      "workflow": [ { "id": "work", "agent": "worker", "prompt": "Do: {{input}}" } ] },
    { "name": "desk", "agents": ["writer"],
      "workflow": [ { "id": "draft", "agent": "writer", "prompt": "Draft: {{input}}" },
                    { "id": "approve", "decision": { "by": "human", "options": ["publish", "reject"],
                                                     "default": "reject" } } ] }
  ]%TOKENS%
})";

struct daemon_under_test {
  scratch_dir dir{"troupe-watch"};
  daemon_process proc;
  std::uint16_t port = 0;

  // Starts `troupe run` on the config above; `extra` goes into the top object.
  bool start(const std::string& extra = {}, const std::string& listen = "127.0.0.1:0") {
    std::string text = config_text;
    text.replace(text.find("%TOKENS%"), 8, extra);
    if (!write_text(dir.file("troupe.json"), text)) return false;
    std::string why;
    if (!proc.start(troupe_exe(),
                    {"run", dir.file("troupe.json"), "--listen", listen, "--store", "sqlite:" + dir.file("t.db")},
                    dir.file("daemon.log"), why)) {
      ADD_FAILURE() << why;
      return false;
    }
    auto p = proc.wait_until_ready(120s);
    if (!p) {
      ADD_FAILURE() << proc.output();
      return false;
    }
    port = *p;
    return true;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

json submit(api_client& api, const std::string& team, const std::string& input, int priority = 5) {
  auto r = api.call(method::post, "/v1/tasks", json{{"team", team}, {"input", input}, {"priority", priority}}.dump());
  EXPECT_TRUE(r && r->status == 202) << (r ? r->body : r.error().message);
  return r ? json::parse(r->body, nullptr, false) : json();
}

// ---------------------------------------------------------------------------
// tmux: a private server (own socket, no user config) holding one session.
std::string find_tmux() {
  for (const char* p : {"/usr/bin/tmux", "/bin/tmux", "/usr/local/bin/tmux"})
    if (::access(p, X_OK) == 0) return p;
  return {};
}

class tmux_session {
 public:
  tmux_session(std::string exe, const scratch_dir& dir)
      : exe_(std::move(exe)), socket_("troupe-watch-" + std::to_string(::getpid())), conf_(dir.file("tmux.conf")) {
    // No status line: the pane gets the whole window. The server outlives its
    // last session, so a new session after kill-session does not race a
    // server on its way out ("server exited unexpectedly").
    write_text(conf_, "set-option -g status off\nset-option -s exit-empty off\n");
  }
  ~tmux_session() { tmux({"kill-server"}); }
  tmux_session(const tmux_session&) = delete;
  tmux_session& operator=(const tmux_session&) = delete;

  command_result tmux(std::vector<std::string> args) {
    args.insert(args.begin(), {"-L", socket_, "-f", conf_});
    return run_command(exe_, args, 20s);
  }
  bool start(const std::string& shell_command, int cols, int rows) {
    auto r = tmux({"new-session", "-d", "-s", "w", "-x", std::to_string(cols), "-y", std::to_string(rows),
                   shell_command});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.exit_code == 0;
  }
  std::string screen() { return tmux({"capture-pane", "-p", "-t", "w"}).output; }
  std::string format(const std::string& f) {
    auto out = tmux({"display-message", "-p", "-t", "w", f}).output;
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
  }
  void keys(const std::string& k) { tmux({"send-keys", "-t", "w", k}); }
  // Waits until the screen satisfies `pred`; returns the last screen read.
  template <class Pred>
  std::string wait_screen(Pred pred, std::chrono::milliseconds timeout) {
    std::string s;
    wait_until([&] { return pred(s = screen()); }, timeout);
    return s;
  }

 private:
  std::string exe_, socket_, conf_;
};

bool has(const std::string& screen, const std::string& needle) { return screen.find(needle) != std::string::npos; }

// The row of the TASKS list for `id` (rows start with two spaces and the id).
std::string task_row(const std::string& screen, const std::string& id) {
  const auto at = screen.find("\n  " + id);
  if (at == std::string::npos) return {};
  const auto end = screen.find('\n', at + 1);
  return screen.substr(at + 1, end == std::string::npos ? end : end - at - 1);
}

// The line of the screen containing `needle` (empty if none).
std::string line_with(const std::string& screen, const std::string& needle) {
  const auto at = screen.find(needle);
  if (at == std::string::npos) return {};
  const auto begin = screen.rfind('\n', at);
  const auto end = screen.find('\n', at);
  return screen.substr(begin == std::string::npos ? 0 : begin + 1, end == std::string::npos ? end : end - begin - 1);
}

// Runs `troupe watch` in the pane through the shell, which then prints the
// exit status and the terminal modes, so the test sees what the user would.
std::string watch_command(const std::string& url) {
  // The pane then stays alive (sleep), so tmux reports its live cursor state.
  return "trap '' INT; " + troupe_exe() + " watch --url " + url +
         "; echo \"watch exit=$?\"; stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' '"
         "; echo; exec sleep 600";
}

void expect_restored(tmux_session& t, const std::string& why) {
  const auto screen =
      t.wait_screen([](const std::string& s) { return has(s, "watch exit=") && has(s, "icanon"); }, 20s);
  ASSERT_TRUE(has(screen, "watch exit=")) << why << ": watch did not exit\n" << screen;
  EXPECT_TRUE(has(screen, "watch exit=0")) << why << "\n" << screen;
  // Line mode and echo are back, the alternate screen is gone, the cursor is visible.
  EXPECT_TRUE(has(screen, "icanon echo")) << why << "\n" << screen;
  EXPECT_FALSE(has(screen, "-icanon") || has(screen, "-echo")) << why << "\n" << screen;
  EXPECT_FALSE(has(screen, "AGENTS")) << why << ": the view was left on the screen\n" << screen;
  EXPECT_EQ(t.format("#{alternate_on}"), "0") << why;
  EXPECT_EQ(t.format("#{cursor_flag}"), "1") << why;
}

}  // namespace

TEST(watch, live_view_in_a_terminal_then_q_and_ctrl_c_restore_it) {
  const auto tmux_exe = find_tmux();
  if (tmux_exe.empty()) GTEST_SKIP() << "tmux is not installed (tools/setup.sh installs it); skipping the terminal test";
  daemon_under_test d;
  ASSERT_TRUE(d.start());
  api_client api{d.port};
  tmux_session t{tmux_exe, d.dir};
  ASSERT_TRUE(t.start(watch_command(d.url()), 160, 50));
  auto screen = t.wait_screen([](const std::string& s) { return has(s, "AGENTS (2)"); }, 30s);
  ASSERT_TRUE(has(screen, "AGENTS (2)")) << screen;

  // Work: one task holds the worker, three queue behind it at different
  // priorities, one draft waits for a human, one draft fails.
  const auto held = submit(api, "ops", "HOLD the line").value("id", "");
  ASSERT_TRUE(wait_until([&] { return has(t.screen(), held); }, 30s)) << t.screen();
  submit(api, "ops", "urgent work", 9);
  submit(api, "ops", "later work", 2);
  submit(api, "ops", "more work", 7);
  const auto pending = submit(api, "desk", "a story").value("id", "");
  const auto broken = submit(api, "desk", "BREAK this story").value("id", "");

  screen = t.wait_screen(
      [&](const std::string& s) {
        // The errors come last in a frame: waiting for the whole reason also waits out a
        // capture taken while the frame was still being drawn.
        return has(s, "queue ops (3):  p9=1  p7=1  p2=1") && has(s, "DECISIONS PENDING (1)") &&
               has(line_with(s, "task " + broken + " failed"), "the model refused") && has(task_row(s, held), "work");
      },
      60s);
  // Agents with their state and current task.
  EXPECT_TRUE(has(line_with(screen, "worker"), "busy")) << screen;
  EXPECT_TRUE(has(line_with(screen, "worker"), held)) << screen;
  EXPECT_TRUE(has(line_with(screen, "writer"), "idle")) << screen;
  // Team queue by priority.
  EXPECT_TRUE(has(screen, "queue ops (3):  p9=1  p7=1  p2=1")) << screen;
  // The running task with its step.
  EXPECT_TRUE(has(task_row(screen, held), "running")) << screen;
  EXPECT_TRUE(has(task_row(screen, held), "work")) << screen;
  // The pending decision with its options.
  EXPECT_TRUE(has(screen, "DECISIONS PENDING (1)")) << screen;
  EXPECT_TRUE(has(line_with(screen, "publish|reject"), pending)) << screen;
  // Cost so far: the calls made (HOLD is still out) at a visible price.
  std::smatch m;
  const std::regex cost_re(R"(cost \$([0-9.]+) .* calls ([0-9]+))");
  ASSERT_TRUE(std::regex_search(screen, m, cost_re)) << screen;
  EXPECT_GT(std::stod(m[1].str()), 0.0) << screen;
  EXPECT_GE(std::stoi(m[2].str()), 2) << screen;
  // Recent errors: the failed draft with its reason.
  EXPECT_TRUE(has(line_with(screen, "task " + broken + " failed"), "the model refused")) << screen;

  // q quits and restores the terminal.
  t.keys("q");
  expect_restored(t, "after q");

  // Ctrl-C does the same.
  t.tmux({"kill-session", "-t", "w"});
  ASSERT_TRUE(t.start(watch_command(d.url()), 160, 50));
  screen = t.wait_screen([](const std::string& s) { return has(s, "AGENTS (2)"); }, 30s);
  ASSERT_TRUE(has(screen, "AGENTS (2)")) << screen;
  t.keys("C-c");
  expect_restored(t, "after Ctrl-C");
  if (HasFailure()) d.dir.keep();
}

namespace {

// Prometheus text -> {"name{labels}": value}.
std::map<std::string, double> scrape(api_client& api) {
  std::map<std::string, double> out;
  auto r = api.call(method::get, "/metrics");
  EXPECT_TRUE(r && r->status == 200);
  if (!r) return out;
  std::istringstream lines(r->body);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    if (space == std::string::npos) continue;
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

double value(const std::map<std::string, double>& m, const std::string& series) {
  auto it = m.find(series);
  return it == m.end() ? -1 : it->second;
}

// Waits until every task has ended; true when all succeeded.
bool all_succeed(api_client& api, const std::vector<std::string>& ids) {
  for (const auto& id : ids) {
    std::string state;
    if (!wait_until(
            [&] {
              auto t = api.task(id);
              state = t ? t->value("state", "") : "";
              return state == "succeeded" || state == "failed" || state == "cancelled";
            },
            60s) ||
        state != "succeeded") {
      ADD_FAILURE() << id << " ended as '" << state << "'";
      return false;
    }
  }
  return true;
}

}  // namespace

TEST(metrics, latency_histograms_are_scraped_and_grow_with_the_work) {
  daemon_under_test d;
  ASSERT_TRUE(d.start());
  api_client api{d.port};
  const std::string llm = R"(troupe_llm_call_duration_seconds_count{team="ops",provider="offline",model="m"})";
  const std::string step = R"(troupe_step_duration_seconds_count{team="ops"})";
  const std::string task = R"(troupe_task_duration_seconds_count{team="ops"})";
  const std::string commit = "troupe_store_commit_duration_seconds_count";
  const std::string rows = "troupe_store_batch_rows_count";

  std::vector<std::string> ids{submit(api, "ops", "warm up").value("id", "")};
  ASSERT_TRUE(all_succeed(api, ids));
  const auto before = scrape(api);
  for (const auto& s : {llm, step, task, commit, rows}) EXPECT_GE(value(before, s), 1) << s;
  // Every histogram has its buckets, +Inf equal to the count, and a sum.
  EXPECT_EQ(value(before, R"(troupe_task_duration_seconds_bucket{team="ops",le="+Inf"})"), value(before, task));
  EXPECT_GE(value(before, R"(troupe_task_duration_seconds_sum{team="ops"})"), 0);
  EXPECT_GE(value(before, R"(troupe_store_batch_rows_bucket{le="1"})"), 0);
  EXPECT_GE(value(before, R"(troupe_llm_call_duration_seconds_bucket{team="ops",provider="offline",model="m",le="0.001"})"), 0);
  EXPECT_LE(value(before, R"(troupe_step_duration_seconds_bucket{team="ops",le="0.001"})"),
            value(before, R"(troupe_step_duration_seconds_bucket{team="ops",le="120"})"));

  constexpr int n = 20;
  ids.clear();
  for (int i = 0; i < n; ++i) ids.push_back(submit(api, "ops", "job " + std::to_string(i)).value("id", ""));
  ASSERT_TRUE(all_succeed(api, ids));
  const auto after = scrape(api);
  EXPECT_GE(value(after, llm) - value(before, llm), n);
  EXPECT_GE(value(after, step) - value(before, step), n);
  EXPECT_GE(value(after, task) - value(before, task), n);
  EXPECT_GT(value(after, commit), value(before, commit));
  EXPECT_GT(value(after, rows), value(before, rows));
  EXPECT_GT(value(after, R"(troupe_task_duration_seconds_sum{team="ops"})"),
            value(before, R"(troupe_task_duration_seconds_sum{team="ops"})"));
  if (HasFailure()) d.dir.keep();
}

TEST(control_plane, five_hundred_subscribers_of_the_real_daemon_see_the_same_events) {
  daemon_under_test d;
  ASSERT_TRUE(d.start());
  constexpr int clients = 500;
  constexpr int tasks = 5;
  std::vector<std::unique_ptr<ws_client>> subs;
  for (int i = 0; i < clients; ++i) {
    auto c = std::make_unique<ws_client>();
    ASSERT_TRUE(c->connect("ws://127.0.0.1:" + std::to_string(d.port) + "/v1/ws")) << i;
    // Half ask for batched frames, half for one event per frame: both see the same stream.
    auto r = c->request("subscribe", json{{"topics", {"tasks"}}, {"filter", {{"team", "ops"}}}, {"batch", i % 2 == 0}});
    ASSERT_TRUE(r) << r.error().message;
    subs.push_back(std::move(c));
  }
  api_client api{d.port};
  std::vector<std::string> ids;
  for (int i = 0; i < tasks; ++i) ids.push_back(submit(api, "ops", "fan " + std::to_string(i)).value("id", ""));
  ASSERT_TRUE(all_succeed(api, ids));

  // Each subscriber: snapshot first, then task.update events until every task
  // finished; seqs consecutive; the (task, what, state) sequence identical for all.
  std::vector<std::string> reference;
  for (int i = 0; i < clients; ++i) {
    std::vector<std::string> seen;
    std::uint64_t seq = 0;
    int finished = 0;
    while (finished < tasks) {
      auto f = subs[static_cast<std::size_t>(i)]->read(20s);
      ASSERT_TRUE(f) << "subscriber " << i << ": " << f.error().message;
      const json events = f->contains("events") ? (*f)["events"] : json::array({*f});
      for (const auto& ev : events) {
        ASSERT_EQ(ev.value("seq", 0ULL), ++seq) << "subscriber " << i << ": " << ev;
        if (seq == 1) {
          ASSERT_EQ(ev.value("event", ""), "snapshot");
          continue;
        }
        ASSERT_EQ(ev.value("event", ""), "task.update") << ev;
        const auto& data = ev["data"];
        seen.push_back(data.value("task", "") + " " + data.value("what", "") + " " + data.value("state", ""));
        if (data.value("what", "") == "finished") ++finished;
      }
    }
    if (i == 0) reference = seen;
    else ASSERT_EQ(seen, reference) << "subscriber " << i;
  }
  EXPECT_GE(reference.size(), static_cast<std::size_t>(tasks * 2));
  if (HasFailure()) d.dir.keep();
}

TEST(control_plane, tokens_access_token_and_a_non_loopback_listen) {
  // Without tokens the daemon refuses to listen beyond loopback.
  {
    daemon_under_test d;
    write_text(d.dir.file("open.json"), [] {
      std::string t = config_text;
      return t.replace(t.find("%TOKENS%"), 8, "");
    }());
    auto r = run_command(troupe_exe(), {"run", d.dir.file("open.json"), "--listen", "0.0.0.0:0", "--store",
                                        "sqlite:" + d.dir.file("t.db")},
                         60s);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("not a loopback address"), std::string::npos) << r.output;
  }
  // With tokens it may, and clients authenticate by header or, for browsers,
  // by ?access_token=.
  ::setenv("TROUPE_TEST_VIEWER_TOKEN", "viewer-secret-1", 1);
  ::setenv("TROUPE_TEST_OPERATOR_TOKEN", "operator-secret-2", 1);
  daemon_under_test d;
  ASSERT_TRUE(d.start(R"(, "control": { "tokens": [
      { "name": "dash", "token_env": "TROUPE_TEST_VIEWER_TOKEN", "role": "viewer" },
      { "name": "ops", "token_env": "TROUPE_TEST_OPERATOR_TOKEN", "role": "operator" } ] })",
                      "0.0.0.0:0"));
  const std::string ws = "ws://127.0.0.1:" + std::to_string(d.port) + "/v1/ws";
  {
    ws_client anonymous;
    auto r = anonymous.connect(ws);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, base::errc::unauthorized) << r.error().message;
    ws_client wrong;
    r = wrong.connect(ws + "?access_token=nope");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, base::errc::unauthorized);
  }
  ws_client browser;
  ASSERT_TRUE(browser.connect(ws + "?access_token=viewer-secret-1"));
  auto hello = browser.request("hello");
  ASSERT_TRUE(hello) << hello.error().message;
  EXPECT_EQ((*hello)["principal"], "dash");
  EXPECT_EQ((*hello)["role"], "viewer");
  auto denied = browser.request("submit", json{{"team", "ops"}, {"input", "x"}});
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, base::errc::forbidden) << denied.error().message;
  ws_client op;
  ASSERT_TRUE(op.connect(ws, "operator-secret-2"));
  auto ok = op.request("submit", json{{"team", "ops"}, {"input", "by token"}});
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ((*ok)["team"], "ops");
  if (HasFailure()) d.dir.keep();
}

TEST(control_plane, sigterm_closes_every_session_with_going_away_and_exits_0) {
  daemon_under_test d;
  ASSERT_TRUE(d.start());
  std::vector<std::unique_ptr<ws_client>> subs;
  for (int i = 0; i < 20; ++i) {
    auto c = std::make_unique<ws_client>();
    ASSERT_TRUE(c->connect(d.url()));
    ASSERT_TRUE(c->request("subscribe", json{{"topics", {"tasks", "agents", "system"}}, {"batch", i % 2 == 0}}));
    subs.push_back(std::move(c));
  }
  // A client that goes away mid-stream (no close handshake) disturbs nobody.
  subs.back()->abort();
  subs.pop_back();
  d.proc.signal(SIGTERM);
  for (auto& c : subs) {
    for (;;) {  // read what is left of the stream until the close
      auto f = c->read(20s);
      if (f) continue;
      ASSERT_NE(f.error().code, base::errc::timeout) << "no close within 20 s";
      break;
    }
    ASSERT_TRUE(c->closed());
    EXPECT_EQ(c->closed()->code, 1001) << c->closed()->reason;
  }
  auto code = d.proc.wait_exit(30s);
  ASSERT_TRUE(code) << "no exit after SIGTERM";
  EXPECT_EQ(*code, 0) << d.proc.output();
  if (HasFailure()) d.dir.keep();
}

}  // namespace troupe::test
