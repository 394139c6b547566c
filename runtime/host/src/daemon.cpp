// `troupe run` and `troupe migrate`.
#include "troupe/host/daemon.hpp"

#include <csignal>
#include <cstdio>
#include <future>
#include <iostream>
#include <thread>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "troupe/host/logging.hpp"
#include "troupe/host/runtime.hpp"
#include "troupe/persistence/open_store.hpp"
#include "troupe/protocols/control/control_server.hpp"

namespace troupe::host {
namespace {

void print_problems(const std::vector<config::problem>& problems, const std::string& path) {
  for (const auto& p : problems)
    std::cerr << path << ": " << (p.path.empty() ? "(document)" : p.path) << ": " << p.message << '\n';
  std::cerr << problems.size() << " problem" << (problems.size() == 1 ? "" : "s") << " in " << path << '\n';
}

std::string workflow_line(const config::team& t) {
  std::string out;
  for (const auto& s : t.workflow) {
    if (!out.empty()) out += " -> ";
    out += s.id;
    if (s.decide) out += "(" + s.decide->by + ")";
  }
  return out;
}

}  // namespace

int run_daemon(const run_options& opts) {
  // Signals are taken synchronously by this thread; block them before any other thread exists.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (auto ok = setup_logging(opts.log_format, opts.log_level); !ok) {
    std::cerr << "troupe run: " << ok.error().message << '\n';
    return 2;
  }
  auto loaded = config::load_config_file(opts.config_path);
  if (!loaded.cfg) {
    print_problems(loaded.problems, opts.config_path);
    return 1;
  }
  auto cfg = std::move(*loaded.cfg);
  if (!opts.listen_override.empty()) cfg.ctl.listen = opts.listen_override;
  if (!opts.store_override.empty()) cfg.store = opts.store_override;

  runtime rt{cfg};
  // A reload reads the same file with the same command-line overrides.
  rt.set_config_source([opts] {
    auto next = config::load_config_file(opts.config_path);
    if (next.cfg && !opts.listen_override.empty()) next.cfg->ctl.listen = opts.listen_override;
    if (next.cfg && !opts.store_override.empty()) next.cfg->store = opts.store_override;
    return next;
  });
  auto report = rt.start();
  if (!report) {
    spdlog::error("cannot start: {}", report.error().message);
    return 1;
  }
  protocols::control::server_options so;
  so.listen = cfg.ctl.listen;
  so.settings = cfg.ctl;
  so.io_threads = cfg.ctl.io_threads;
  protocols::control::control_server server{so, rt};
  if (auto ok = server.start(); !ok) {
    spdlog::error("cannot listen on {}: {}", cfg.ctl.listen, ok.error().message);
    rt.stop(0);
    return 1;
  }
  auto main_thread = pthread_self();
  rt.on_shutdown_request([main_thread] { pthread_kill(main_thread, SIGTERM); });

  auto endpoint = server.endpoint();
  spdlog::info("troupe listening on http://{} (HTTP, WebSocket at /v1/ws)", endpoint);
  spdlog::info("store {} schema=v{} recovered_tasks={} pending_decisions={} recovery_s={:.3f}", report->store,
               report->schema_version, report->recovered_tasks, report->pending_decisions, report->recovery_seconds);
  for (const auto& t : cfg.teams) {
    std::string agents;
    for (const auto& a : t.agents) agents += (agents.empty() ? "" : ",") + a;
    spdlog::info("team {} up agents={} workflow=\"{}\"", t.name, agents, workflow_line(t));
  }
  if (!cfg.teams.empty()) {
    const auto& t = cfg.teams.front();
    spdlog::info("submit a task: troupe submit --url http://{} --team {} --wait \"your input\"", endpoint, t.name);
    spdlog::info("           or: curl -s http://{}/v1/tasks -d '{{\"team\":\"{}\",\"input\":\"your input\"}}'", endpoint, t.name);
  }
  spdlog::info("ready pid={}", ::getpid());

  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      // The runtime logs and audits the outcome; waiting here keeps one reload at a time.
      spdlog::info("SIGHUP received: reloading {}", opts.config_path);
      auto done = std::make_shared<std::promise<void>>();
      auto fut = done->get_future();
      rt.reload(protocols::principal{"SIGHUP", config::role::admin},
                [done](const base::result<nlohmann::json>&) { done->set_value(); });
      if (fut.wait_for(std::chrono::seconds(60)) != std::future_status::ready)
        spdlog::warn("reload still waiting for its teams after 60 s");
      continue;
    }
    spdlog::info("signal {} received: draining (a second signal exits at once)", sig == SIGINT ? "SIGINT" : "SIGTERM");
    break;
  }
  // A second SIGTERM/SIGINT while draining exits at once.
  std::thread watchdog([signals]() mutable {
    sigdelset(&signals, SIGHUP);
    int sig = 0;
    if (sigwait(&signals, &sig) == 0) {
      std::fputs("troupe: second signal, exiting at once\n", stderr);
      std::_Exit(1);
    }
  });
  watchdog.detach();
  rt.stop(10000);
  server.stop();
  spdlog::info("stopped cleanly");
  return 0;
}

int run_migrate(const std::string& store_url) {
  auto store = persistence::open_store(store_url);
  if (!store) {
    std::cerr << "troupe migrate: " << store.error().message << '\n';
    return 1;
  }
  auto before = (*store)->schema_version();
  auto after = (*store)->migrate();
  if (!after) {
    std::cerr << "troupe migrate: " << after.error().message << '\n';
    return 1;
  }
  std::cout << (*store)->describe() << ": schema v" << (before ? *before : 0) << " -> v" << *after << '\n';
  return 0;
}

}  // namespace troupe::host
