// troupe submit / decide / cancel and the shared plumbing of the client
// subcommands (option parsing, URL and token defaults). `watch` and the live
// view are in client_commands_watch.cpp.
#include "troupe/host/client_commands.hpp"

#include <unistd.h>

#include <cctype>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>

#include "client_commands_internal.hpp"
#include "troupe/protocols/client/http_client.hpp"
#include "troupe/protocols/client/ws_client.hpp"

namespace troupe::host {

using nlohmann::json;
namespace client = protocols::client;

namespace detail {

parsed_args parse_args(const std::vector<std::string>& args, const std::set<std::string>& with_value,
                       const std::set<std::string>& flags) {
  parsed_args p;
  bool options_done = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (options_done || a.size() < 2 || a[0] != '-' || a == "-") {
      p.positional.push_back(a);
      continue;
    }
    if (a == "--") {
      options_done = true;
      continue;
    }
    std::string name = a, value;
    bool inline_value = false;
    if (auto eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      inline_value = true;
    }
    if (flags.count(name)) {
      if (inline_value) {
        p.error = "option " + name + " takes no value";
        return p;
      }
      p.flags.insert(name);
    } else if (with_value.count(name)) {
      if (!inline_value) {
        if (i + 1 >= args.size()) {
          p.error = "option " + name + " needs a value";
          return p;
        }
        value = args[++i];
      }
      p.values[name] = value;
    } else {
      p.error = "unknown option " + name;
      return p;
    }
  }
  return p;
}

connection_settings settings_from(const parsed_args& p, client_io& io) {
  connection_settings s;
  if (auto it = p.values.find("--url"); it != p.values.end())
    s.url = it->second;
  else if (auto env = io.getenv("TROUPE_URL"); env && !env->empty())
    s.url = *env;
  if (auto it = p.values.find("--token"); it != p.values.end())
    s.token = it->second;
  else if (auto env = io.getenv("TROUPE_TOKEN"); env)
    s.token = *env;
  return s;
}

int usage_error(client_io& io, const std::string& message, const char* usage) {
  io.err << "troupe: " << message << "\n" << usage;
  return 2;
}

int fail(client_io& io, const base::error& e) {
  io.err << "troupe: " << base::to_string(e.code) << ": " << e.message << "\n";
  return 1;
}

}  // namespace detail

using namespace detail;

namespace {

constexpr const char* submit_usage =
    "usage: troupe submit (--team TEAM | --agent AGENT) [--priority low|normal|high|urgent|0-9]\n"
    "                     [--idempotency-key KEY] [--deadline-ms N] [--wait] [--json]\n"
    "                     [--url URL] [--token TOKEN] INPUT...   (INPUT '-' reads stdin)\n";
constexpr const char* decide_usage =
    "usage: troupe decide DECISION_ID OPTION [--comment TEXT] [--json] [--url URL] [--token TOKEN]\n";
constexpr const char* cancel_usage = "usage: troupe cancel TASK_ID [--json] [--url URL] [--token TOKEN]\n";

bool terminal_state(const std::string& s) { return s == "succeeded" || s == "failed" || s == "cancelled"; }

// Milliseconds from a number (epoch ms) or an RFC 3339 string; nullopt otherwise.
std::optional<double> to_ms(const json& v) {
  if (v.is_number()) return v.get<double>();
  if (!v.is_string()) return std::nullopt;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0;
  double sec = 0;
  if (std::sscanf(v.get<std::string>().c_str(), "%d-%d-%dT%d:%d:%lf", &y, &mo, &d, &h, &mi, &sec) != 6)
    return std::nullopt;
  // Days from civil (proleptic Gregorian), enough for differences.
  y -= mo <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const int yoe = y - era * 400;
  const int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const double days = era * 146097.0 + doe - 719468.0;
  return ((days * 24 + h) * 60 + mi) * 60000.0 + sec * 1000.0;
}

std::string pad(const std::string& s, std::size_t n) { return s.size() >= n ? s + " " : s + std::string(n - s.size(), ' '); }

std::string str(const json& obj, const char* key) {
  if (!obj.is_object()) return {};
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  return it->is_string() ? it->get<std::string>() : it->dump();
}

// Follows one task over the WebSocket until it ends; prints progress.
class task_follower {
 public:
  task_follower(client::ws_client& ws, std::string id, client_io& io, bool json_mode)
      : ws_(ws), id_(std::move(id)), io_(io), json_(json_mode) {}

  int run() {
    auto sub = ws_.request("subscribe", json{{"topics", {"tasks", "decisions"}}, {"filter", {{"task", id_}}}});
    if (!sub) return fail(io_, sub.error());
    for (;;) {
      if (io_.stop && io_.stop->load()) {
        io_.err << "troupe: interrupted; task " << id_ << " keeps running\n";
        return 130;
      }
      auto frame = ws_.read(std::chrono::milliseconds(500));
      if (!frame) {
        if (frame.error().code == base::errc::timeout) continue;
        return fail(io_, frame.error());
      }
      if (json_) io_.out << frame->dump() << "\n" << std::flush;
      if (auto done = on_frame(*frame)) return *done;
    }
  }

 private:
  std::optional<int> on_frame(const json& f) {
    const auto event = str(f, "event");
    const auto& data = f.contains("data") ? f["data"] : json::object();
    if (event == "snapshot") {
      if (data.contains("tasks") && data["tasks"].is_array() && !data["tasks"].empty()) {
        const auto& task = data["tasks"][0];
        print_steps(task);
        if (terminal_state(str(task, "state"))) return finish(task);
      }
    } else if (event == "task.update" && str(data, "task") == id_) {
      const auto step = str(data, "step");
      const auto step_state = str(data, "step_state");
      if (!step.empty() && !step_state.empty() && step_state != "pending" && printed_[step] != step_state) {
        if (step_state == "running") {
          step_line(step, "running", "");
          printed_[step] = step_state;
        } else if (data.contains("duration_ms") || data.contains("tokens")) {
          std::ostringstream os;
          os << "(";
          if (data.value("duration_ms", json()).is_number())
            os << std::fixed << std::setprecision(2) << data["duration_ms"].get<double>() / 1000.0 << " s, ";
          os << (data.value("tokens", json()).is_number() ? data["tokens"].get<long long>() : 0LL) << " tokens)";
          std::string extra = os.str();
          if (step_state == "failed" && data.contains("error"))
            extra += " " + (data["error"].is_object() ? str(data["error"], "message") : str(data, "error"));
          step_line(step, step_word(step_state), extra);
          printed_[step] = step_state;
        } else {
          refresh();  // the event carries no timings: fetch them with the task
          if (printed_[step] != step_state) {
            step_line(step, step_word(step_state), "");
            printed_[step] = step_state;
          }
        }
      }
      if (terminal_state(str(data, "state"))) {
        auto task = ws_.request("task", json{{"task", id_}});
        if (!task) return fail(io_, task.error());
        print_steps(*task);
        return finish(*task);
      }
    } else if (event == "decision.pending" && str(data, "task") == id_) {
      std::string options;
      if (data.contains("options") && data["options"].is_array())
        for (const auto& o : data["options"]) options += (options.empty() ? "" : "|") + (o.is_string() ? o.get<std::string>() : o.dump());
      step_line(str(data, "step"), "waiting",
                "decision " + str(data, "id") + " (" + options + ") by " + str(data, "by") + ": troupe decide " +
                    str(data, "id") + " OPTION");
    } else if (event == "decision.resolved" && str(data, "task") == id_) {
      step_line(str(data, "step"), "decided", str(data, "chosen"));
    }
    return std::nullopt;
  }

  static std::string step_word(const std::string& state) {
    if (state == "succeeded") return "done";
    return state;
  }

  void refresh() {
    auto task = ws_.request("task", json{{"task", id_}});
    if (task) print_steps(*task);
  }

  void print_steps(const json& task) {
    if (!task.contains("steps") || !task["steps"].is_array()) return;
    for (const auto& s : task["steps"]) {
      const auto id = str(s, "id");
      const auto state = str(s, "state");
      if (id.empty() || state.empty() || state == "pending" || printed_[id] == state) continue;
      std::string extra;
      if (state == "succeeded" || state == "failed") {
        auto started = to_ms(s.value("started", json()));
        auto finished = to_ms(s.value("finished", json()));
        const auto tokens = s.value("tokens_in", json(0)).is_number() && s.value("tokens_out", json(0)).is_number()
                                ? s.value("tokens_in", 0LL) + s.value("tokens_out", 0LL)
                                : 0LL;
        std::ostringstream os;
        os << "(";
        if (started && finished) os << std::fixed << std::setprecision(2) << (*finished - *started) / 1000.0 << " s, ";
        os << tokens << " tokens)";
        extra = os.str();
        if (state == "failed" && s.contains("error")) extra += " " + str(s["error"], "message");
      }
      step_line(id, step_word(state), extra);
      printed_[id] = state;
    }
  }

  void step_line(const std::string& step, const std::string& word, const std::string& extra) {
    if (json_) return;
    std::string line = "  " + pad(step, 12) + pad(word, 8) + extra;
    while (!line.empty() && line.back() == ' ') line.pop_back();
    io_.out << line << "\n" << std::flush;
  }

  int finish(const json& task) {
    const auto state = str(task, "state");
    if (state == "succeeded") {
      if (!json_) {
        const auto& r = task.contains("result") ? task["result"] : json();
        io_.out << (r.is_string() ? r.get<std::string>() : r.dump()) << "\n";
      } else {
        io_.out << task.dump() << "\n";
      }
      return 0;
    }
    std::string why = state;
    if (task.contains("error") && task["error"].is_object())
      why += ": " + str(task["error"], "code") + ": " + str(task["error"], "message");
    io_.err << "troupe: task " << id_ << " " << why << "\n";
    if (json_) io_.out << task.dump() << "\n";
    return 1;
  }

  client::ws_client& ws_;
  std::string id_;
  client_io& io_;
  bool json_;
  std::map<std::string, std::string> printed_;
};

int run_submit(const std::vector<std::string>& args, client_io& io) {
  auto p = parse_args(args, {"--url", "--token", "--team", "--agent", "--priority", "--idempotency-key", "--deadline-ms", "--max-attempts"},
                      {"--wait", "--json", "--help"});
  if (!p.error.empty()) return usage_error(io, p.error, submit_usage);
  if (p.flags.count("--help")) return io.out << submit_usage, 0;
  const bool team = p.values.count("--team") > 0, agent = p.values.count("--agent") > 0;
  if (team == agent) return usage_error(io, "give exactly one of --team or --agent", submit_usage);
  if (p.positional.empty()) return usage_error(io, "missing INPUT", submit_usage);
  std::string input;
  if (p.positional.size() == 1 && p.positional[0] == "-") {
    std::ostringstream all;
    all << std::cin.rdbuf();
    input = all.str();
  } else {
    for (const auto& w : p.positional) input += (input.empty() ? "" : " ") + w;
  }
  json body = {{"input", input}};
  if (team) body["team"] = p.values["--team"];
  if (agent) body["agent"] = p.values["--agent"];
  if (auto it = p.values.find("--priority"); it != p.values.end()) {
    auto prio = parse_priority(it->second);
    if (!prio) return usage_error(io, "--priority must be low, normal, high, urgent or 0-9, got '" + it->second + "'", submit_usage);
    body["priority"] = *prio;
  }
  if (auto it = p.values.find("--idempotency-key"); it != p.values.end()) body["idempotency_key"] = it->second;
  for (const char* key : {"--deadline-ms", "--max-attempts"}) {
    if (auto it = p.values.find(key); it != p.values.end()) {
      char* end = nullptr;
      const long long n = std::strtoll(it->second.c_str(), &end, 10);
      if (it->second.empty() || *end != '\0' || n <= 0)
        return usage_error(io, std::string(key) + " must be a positive integer, got '" + it->second + "'", submit_usage);
      body[std::string(key) == "--deadline-ms" ? "deadline_ms" : "max_attempts"] = n;
    }
  }
  const auto conn = settings_from(p, io);
  const bool json_mode = p.flags.count("--json") > 0;

  client::ws_client ws;
  if (auto ok = ws.connect(conn.url, conn.token); !ok) return fail(io, ok.error());
  auto task = ws.request("submit", body);
  if (!task) return fail(io, task.error());
  const auto id = str(*task, "id");
  if (json_mode)
    io.out << task->dump() << "\n" << std::flush;
  else
    io.out << id << "\n" << std::flush;
  if (!p.flags.count("--wait")) {
    ws.close();
    return 0;
  }
  task_follower follow(ws, id, io, json_mode);
  const int code = follow.run();
  ws.close();
  return code;
}

int run_decide(const std::vector<std::string>& args, client_io& io) {
  auto p = parse_args(args, {"--url", "--token", "--comment"}, {"--json", "--help"});
  if (!p.error.empty()) return usage_error(io, p.error, decide_usage);
  if (p.flags.count("--help")) return io.out << decide_usage, 0;
  if (p.positional.size() != 2) return usage_error(io, "expected DECISION_ID and OPTION", decide_usage);
  const auto conn = settings_from(p, io);
  json body = {{"option", p.positional[1]}, {"comment", p.values.count("--comment") ? p.values["--comment"] : ""}};
  auto reply = client::http_call(conn.url, client::method::post, "/v1/decisions/" + url_escape(p.positional[0]),
                                 body.dump(), conn.token);
  if (!reply) return fail(io, reply.error());
  if (reply->status >= 300) return fail(io, error_from_reply(*reply));
  if (p.flags.count("--json"))
    io.out << reply->body << "\n";
  else
    io.out << "decision " << p.positional[0] << ": " << p.positional[1] << "\n";
  return 0;
}

int run_cancel(const std::vector<std::string>& args, client_io& io) {
  auto p = parse_args(args, {"--url", "--token"}, {"--json", "--help"});
  if (!p.error.empty()) return usage_error(io, p.error, cancel_usage);
  if (p.flags.count("--help")) return io.out << cancel_usage, 0;
  if (p.positional.size() != 1) return usage_error(io, "expected TASK_ID", cancel_usage);
  const auto conn = settings_from(p, io);
  auto reply = client::http_call(conn.url, client::method::post, "/v1/tasks/" + url_escape(p.positional[0]) + "/cancel",
                                 "", conn.token);
  if (!reply) return fail(io, reply.error());
  if (reply->status >= 300) return fail(io, error_from_reply(*reply));
  if (p.flags.count("--json")) {
    io.out << reply->body << "\n";
  } else {
    std::string state;
    try {
      state = str(json::parse(reply->body), "state");
    } catch (const json::exception&) {
    }
    io.out << "task " << p.positional[0] << " " << (state.empty() ? "cancel requested" : state) << "\n";
  }
  return 0;
}

std::atomic<bool> interrupted{false};  // lock-free: safe to set from a signal handler
extern "C" void on_interrupt(int) { interrupted.store(true); }

}  // namespace

namespace detail {

std::string url_escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

base::error error_from_reply(const client::http_reply& reply) {
  try {
    auto doc = json::parse(reply.body);
    const auto& e = doc.at("error");
    auto code = base::errc_from_string(e.value("code", std::string("internal")));
    return base::make_error(code.value_or(base::errc::internal), e.value("message", reply.body));
  } catch (const json::exception&) {
    return base::make_error(base::errc::internal, "HTTP " + std::to_string(reply.status) + ": " + reply.body);
  }
}

}  // namespace detail

std::optional<int> parse_priority(const std::string& text) {
  if (text == "low") return 2;
  if (text == "normal") return 5;
  if (text == "high") return 7;
  if (text == "urgent") return 9;
  if (text.size() == 1 && text[0] >= '0' && text[0] <= '9') return text[0] - '0';
  return std::nullopt;
}

bool is_client_command(const std::string& name) {
  return name == "submit" || name == "watch" || name == "decide" || name == "cancel";
}

int run_client_command(const std::string& name, const std::vector<std::string>& args, client_io& io) {
  if (name == "submit") return run_submit(args, io);
  if (name == "decide") return run_decide(args, io);
  if (name == "cancel") return run_cancel(args, io);
  if (name == "watch") return run_watch(args, io);
  io.err << "troupe: unknown client command '" << name << "' (submit, watch, decide, cancel)\n";
  return 2;
}

int run_client_command(const std::string& name, const std::vector<std::string>& args) {
  client_io io{std::cout, std::cerr, [](const std::string& key) -> std::optional<std::string> {
                 const char* v = std::getenv(key.c_str());
                 if (v == nullptr) return std::nullopt;
                 return std::string(v);
               }};
  interrupted.store(false);
  io.stop = &interrupted;
  io.terminal = ::isatty(STDIN_FILENO) != 0 && ::isatty(STDOUT_FILENO) != 0;
  // Ctrl-C ends `watch` and `submit --wait` cleanly (terminal restored).
  struct sigaction sa {};
  struct sigaction old_int {}, old_term {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  const int code = run_client_command(name, args, io);
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return code;
}

}  // namespace troupe::host
