// troupe watch: the live terminal view (or, with --json, the raw event stream)
// built from a subscription snapshot and then live events.
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "client_commands_internal.hpp"
#include "troupe/host/client_commands.hpp"
#include "troupe/protocols/client/ws_client.hpp"

namespace troupe::host {

using nlohmann::json;
using namespace detail;

namespace {

constexpr const char* watch_usage = "usage: troupe watch [--json] [--url URL] [--token TOKEN]\n";

std::string str(const json& obj, const char* key) {
  if (!obj.is_object()) return {};
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  return it->is_string() ? it->get<std::string>() : it->dump();
}

bool terminal_state(const std::string& s) { return s == "succeeded" || s == "failed" || s == "cancelled"; }

std::string cell(const std::string& s, std::size_t n) {
  if (s.size() > n) return s.substr(0, n > 1 ? n - 1 : n) + (n > 1 ? "~" : "");
  return s + std::string(n - s.size(), ' ');
}

const char* state_color(const std::string& s) {
  if (s == "failed" || s == "restarting") return "\x1b[31m";
  if (s == "busy" || s == "running") return "\x1b[33m";
  if (s == "waiting_decision" || s == "paused" || s == "queued") return "\x1b[36m";
  if (s == "idle" || s == "succeeded") return "\x1b[32m";
  return "";
}

// A line of text plus an optional colour for one field; width-limited.
struct line_builder {
  explicit line_builder(bool c) : color(c) {}
  bool color;
  std::string text;
  std::size_t visible = 0;
  void add(const std::string& s, std::size_t width, const char* c = "") {
    auto v = cell(s, width);
    if (color && *c) text += std::string(c) + v + "\x1b[0m";
    else text += v;
    visible += v.size();
  }
};

// Puts the terminal in raw mode (no echo, no line buffering; Ctrl-C still
// signals) and on the alternate screen; restores both on destruction.
class terminal_guard {
 public:
  explicit terminal_guard(bool active, std::ostream& out) : active_(active), out_(out) {
    if (!active_) return;
    if (::tcgetattr(STDIN_FILENO, &saved_) == 0) {
      termios raw = saved_;
      raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
      raw.c_cc[VMIN] = 0;
      raw.c_cc[VTIME] = 0;
      have_saved_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
    out_ << "\x1b[?1049h\x1b[?25l" << std::flush;
  }
  ~terminal_guard() {
    if (!active_) return;
    out_ << "\x1b[?25h\x1b[?1049l" << std::flush;
    if (have_saved_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  terminal_guard(const terminal_guard&) = delete;
  terminal_guard& operator=(const terminal_guard&) = delete;

  // True when 'q' was pressed.
  bool quit_pressed() {
    if (!active_) return false;
    pollfd p{STDIN_FILENO, POLLIN, 0};
    while (::poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) {
      char c = 0;
      if (::read(STDIN_FILENO, &c, 1) != 1) return false;
      if (c == 'q' || c == 'Q') return true;
    }
    return false;
  }

 private:
  bool active_;
  std::ostream& out_;
  termios saved_{};
  bool have_saved_ = false;
};

std::pair<int, int> terminal_size() {
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) return {ws.ws_col, ws.ws_row};
  return {100, 40};
}

}  // namespace

void watch_model::note_error(std::string line) {
  errors_.push_back(std::move(line));
  while (errors_.size() > 5) errors_.pop_front();
}

void watch_model::apply_task(const json& task) {
  const auto id = str(task, "id").empty() ? str(task, "task") : str(task, "id");
  if (id.empty()) return;
  const auto state = str(task, "state");
  if (terminal_state(state)) {
    if (tasks_.erase(id) > 0 || !state.empty()) ++finished_[state];
    return;
  }
  auto& t = tasks_[id];
  if (!t.is_object()) t = json::object();
  for (const auto& [k, v] : task.items()) t[k] = v;
  // The running step of a full task document.
  if (task.contains("steps") && task["steps"].is_array())
    for (const auto& s : task["steps"])
      if (str(s, "state") == "running") t["step"] = str(s, "id");
}

void watch_model::apply(const json& frame) {
  if (frame.is_object() && frame.contains("events") && frame["events"].is_array()) {
    for (const auto& ev : frame["events"]) apply(ev);  // a batched frame (troupe.v1 "batch")
    return;
  }
  const auto event = str(frame, "event");
  const json data = frame.contains("data") ? frame["data"] : json::object();
  if (event == "snapshot") {
    if (data.contains("agents") && data["agents"].is_array())
      for (const auto& a : data["agents"]) {
        auto name = str(a, "agent").empty() ? str(a, "name") : str(a, "agent");
        if (!name.empty()) agents_[name] = a;
      }
    if (data.contains("tasks") && data["tasks"].is_array())
      for (const auto& t : data["tasks"]) apply_task(t);
    if (data.contains("decisions") && data["decisions"].is_array())
      for (const auto& d : data["decisions"])
        if (str(d, "state") != "resolved" && !str(d, "id").empty()) decisions_[str(d, "id")] = d;
  } else if (event == "agent.status") {
    const auto name = str(data, "agent");
    if (name.empty()) return;
    auto& a = agents_[name];
    if (!a.is_object()) a = json::object();
    for (const auto& [k, v] : data.items()) a[k] = v;
    if (!data.contains("task")) a.erase("task");
    if (str(data, "state") == "failed") note_error("agent " + name + " failed");
  } else if (event == "task.update") {
    json t = data;
    if (!t.contains("id")) t["id"] = str(data, "task");
    apply_task(t);
    if (str(data, "state") == "failed" || data.contains("error")) {
      const auto& e = data.contains("error") ? data["error"] : json();
      note_error("task " + str(data, "task") + " failed: " + (e.is_object() ? str(e, "code") + " " + str(e, "message") : e.dump()));
    }
  } else if (event == "decision.pending") {
    if (!str(data, "id").empty()) decisions_[str(data, "id")] = data;
  } else if (event == "decision.resolved") {
    decisions_.erase(str(data, "id"));
  } else if (event == "llm.call") {
    cost_usd_ += data.value("cost_usd", json(0.0)).is_number() ? data.value("cost_usd", 0.0) : 0.0;
    tokens_in_ += data.value("tokens_in", json(0)).is_number() ? data.value("tokens_in", 0LL) : 0;
    tokens_out_ += data.value("tokens_out", json(0)).is_number() ? data.value("tokens_out", 0LL) : 0;
    ++calls_;
    const auto outcome = str(data, "outcome");
    if (!outcome.empty() && outcome != "ok" && outcome != "success")
      note_error("llm " + str(data, "provider") + "/" + str(data, "model") + " " + outcome + " (agent " + str(data, "agent") + ")");
  } else if (event == "system.metrics") {
    system_ = data;
  } else if (event == "stream.gap") {
    const auto n = data.value("dropped", json(0)).is_number() ? data.value("dropped", 0ULL) : 0ULL;
    dropped_ += n;
    note_error("missed " + std::to_string(n) + " events (the view fell behind)");
  }
}

std::vector<std::string> watch_model::render(int width, int height, bool color) const {
  std::vector<std::string> lines;
  const auto w = static_cast<std::size_t>(std::max(20, width));
  auto push = [&](std::string s) {
    if (!color && s.size() > w) s.resize(w);
    lines.push_back(std::move(s));
  };
  auto bold = [&](const std::string& s) { return color ? "\x1b[1m" + s + "\x1b[0m" : s; };
  std::ostringstream top;
  top << std::fixed << std::setprecision(4) << "cost $" << cost_usd_ << "  tokens " << tokens_in_ << " in / "
      << tokens_out_ << " out  calls " << calls_;
  if (dropped_ > 0) top << "  missed events " << dropped_;
  push(bold(header.empty() ? "troupe watch" : header) + "   " + top.str() + "   [q] quit");
  push("");

  push(bold("AGENTS (" + std::to_string(agents_.size()) + ")"));
  {
    line_builder h(false);
    h.add("  agent", 18);
    h.add("team", 14);
    h.add("state", 12);
    h.add("task", 24);
    h.add("queue", 7);
    h.add("restarts", 9);
    push(h.text);
  }
  for (const auto& [name, a] : agents_) {
    line_builder l(color);
    l.add("  " + name, 18);
    l.add(str(a, "team"), 14);
    const auto st = str(a, "state");
    l.add(st, 12, state_color(st));
    l.add(str(a, "task"), 24);
    l.add(str(a, "queue"), 7);
    l.add(str(a, "restarts"), 9);
    push(l.text);
  }
  push("");

  // Queued tasks per team and priority, highest priority first.
  std::map<std::string, std::map<int, int, std::greater<>>> queued;
  std::size_t running = 0;
  for (const auto& [id, t] : tasks_) {
    const auto st = str(t, "state");
    if (st != "queued") {
      ++running;
      continue;
    }
    const auto& p = t.is_object() ? t.value("priority", json(5)) : json(5);
    ++queued[str(t, "team").empty() ? "agent:" + str(t, "agent") : str(t, "team")][p.is_number_integer() ? p.get<int>() : 5];
  }
  std::string summary = "TASKS (active " + std::to_string(running);
  for (const auto& [state, n] : finished_) summary += ", " + state + " " + std::to_string(n);
  push(bold(summary + ")"));
  for (const auto& [team, by_priority] : queued) {
    int total = 0;
    std::string q;
    for (const auto& [priority, n] : by_priority) {
      total += n;
      q += "  p" + std::to_string(priority) + "=" + std::to_string(n);
    }
    push("  queue " + team + " (" + std::to_string(total) + "):" + q);
  }
  for (const auto& [id, t] : tasks_) {
    const auto st = str(t, "state");
    if (st == "queued") continue;
    line_builder l(color);
    l.add("  " + id, 26);
    l.add(str(t, "team").empty() ? str(t, "agent") : str(t, "team"), 14);
    l.add(st, 18, state_color(st));
    l.add(str(t, "step"), 14);
    l.add(str(t, "step_state"), 10);
    push(l.text);
  }
  push("");

  push(bold("DECISIONS PENDING (" + std::to_string(decisions_.size()) + ")"));
  for (const auto& [id, d] : decisions_) {
    std::string options;
    if (d.contains("options") && d["options"].is_array())
      for (const auto& o : d["options"]) options += (options.empty() ? "" : "|") + (o.is_string() ? o.get<std::string>() : o.dump());
    push("  " + cell(id, 24) + cell(str(d, "task"), 24) + cell(str(d, "step"), 12) + cell(options, 24) + str(d, "by"));
  }
  push("");
  push(bold("RECENT ERRORS"));
  for (const auto& e : errors_) push(color ? "  \x1b[31m" + e + "\x1b[0m" : "  " + e);
  if (height > 0 && lines.size() > static_cast<std::size_t>(height)) lines.resize(static_cast<std::size_t>(height));
  return lines;
}

int run_watch(const std::vector<std::string>& args, client_io& io) {
  auto p = parse_args(args, {"--url", "--token"}, {"--json", "--help"});
  if (!p.error.empty()) return usage_error(io, p.error, watch_usage);
  if (p.flags.count("--help")) return io.out << watch_usage, 0;
  if (!p.positional.empty()) return usage_error(io, "unexpected argument '" + p.positional[0] + "'", watch_usage);
  const auto conn = settings_from(p, io);
  const bool json_mode = p.flags.count("--json") > 0;

  protocols::client::ws_client ws;
  if (auto ok = ws.connect(conn.url, conn.token); !ok) return fail(io, ok.error());
  auto hello = ws.request("hello");
  if (!hello) return fail(io, hello.error());
  // Batched frames: under a burst of events the view takes one frame per
  // burst instead of one per event, and never falls behind for long.
  auto sub = ws.request("subscribe",
                        json{{"topics", {"agents", "tasks", "decisions", "llm", "system"}}, {"batch", true}});
  if (!sub) return fail(io, sub.error());

  auto stopped = [&] { return io.stop != nullptr && io.stop->load(); };
  if (json_mode) {
    while (!stopped()) {
      auto frame = ws.read(std::chrono::milliseconds(200));
      if (!frame) {
        if (frame.error().code == base::errc::timeout) continue;
        return fail(io, frame.error());
      }
      // One event per line, batched frames flattened, so scripts see events.
      if (frame->contains("events") && (*frame)["events"].is_array()) {
        for (const auto& ev : (*frame)["events"]) io.out << ev.dump() << "\n";
        io.out << std::flush;
      } else {
        io.out << frame->dump() << "\n" << std::flush;
      }
    }
    ws.close();
    return 0;
  }

  watch_model model;
  model.header = "troupe watch " + conn.url + " as " + str(*hello, "principal") + " (" + str(*hello, "role") + ")";
  terminal_guard term(io.terminal, io.out);
  auto last_draw = std::chrono::steady_clock::time_point{};
  bool dirty = true;
  int code = 0;
  while (!stopped()) {
    if (term.quit_pressed()) break;
    auto frame = ws.read(std::chrono::milliseconds(100));
    if (frame) {
      model.apply(*frame);
      dirty = true;
    } else if (frame.error().code != base::errc::timeout) {
      code = fail(io, frame.error());
      break;
    }
    const auto now = std::chrono::steady_clock::now();
    if (dirty && now - last_draw > std::chrono::milliseconds(100)) {
      auto [cols, rows] = io.terminal ? terminal_size() : std::pair<int, int>{100, 0};
      std::string screen = io.terminal ? "\x1b[H" : "";
      for (const auto& line : model.render(cols, rows, io.terminal))
        screen += line + (io.terminal ? "\x1b[K\r\n" : "\n");
      if (io.terminal) screen += "\x1b[J";
      else screen += "--\n";
      io.out << screen << std::flush;
      last_draw = now;
      dirty = false;
    }
  }
  ws.close();
  return code;
}

}  // namespace troupe::host
