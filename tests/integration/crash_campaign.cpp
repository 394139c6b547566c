#include "crash_campaign.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <future>
#include <iterator>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "daemon_process.hpp"

namespace troupe::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using clock_type = std::chrono::steady_clock;

// Three steps on three agents. Each reply embeds the previous step's output
// (through the prompt) and the attempt number, so a task's result proves which
// attempt of every step it was built from. Replies are matched in order, so the
// step whose prompt contains the others' markers comes first.
constexpr const char* pipeline_config_template = R"({
  "store": "sqlite:unused.db",
  "control": { "listen": "127.0.0.1:0" },
  "runtime": { "snapshot_every": SNAPSHOT_EVERY },
  "providers": { "sim": { "kind": "scripted", "latency_ms": [1, 5], "replies": [
      { "match": "S3 ", "text": "C<{{prompt}}>@{{attempt}}" },
      FAULTS{ "match": "S2 ", "text": "B<{{prompt}}>@{{attempt}}" },
      { "match": "S1 ", "text": "A({{input}})@{{attempt}}" } ] } },
  "models": { "m": { "provider": "sim", "name": "m", "usd_per_mtok_in": 1.0, "usd_per_mtok_out": 2.0 } },
  "agents": [ { "name": "a1", "model": "m", "system": "one", "max_concurrent": 4 },
              { "name": "a2", "model": "m", "system": "two", "max_concurrent": 4 },
              { "name": "a3", "model": "m", "system": "three", "max_concurrent": 4 } ],
  "teams": [ { "name": "pipe", "agents": ["a1", "a2", "a3"], "max_queued": 100000,
     "max_attempts": 10, "backoff_ms": 5, "backoff_max_ms": 50,
     "workflow": [ { "id": "s1", "agent": "a1", "prompt": "S1 {{input}}" },
                   { "id": "s2", "agent": "a2", "prompt": "S2 {{step.s1}}" },
                   { "id": "s3", "agent": "a3", "prompt": "S3 {{step.s2}}" } ] } ]
})";

struct acked_task {
  std::string id, input, key;
};

// Shared state of the submitters of one round.
struct submit_state {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<acked_task> acked;
  std::vector<acked_task> in_doubt;   // id empty: the daemon never answered
  std::vector<std::string> refusals;  // status and body of refused submits
  std::vector<std::string> refused_inputs;
  std::string team;
  int reserved = 0;  // acked + in flight: never above the target
  int next_index = 0;
  bool stop = false;
};

void submitter(std::uint16_t port, int target, submit_state& st) {
  api_client api{port};
  for (;;) {
    int index = 0;
    {
      std::lock_guard lock{st.mu};
      if (st.stop || st.reserved >= target) return;
      ++st.reserved;
      index = st.next_index++;
    }
    acked_task t{{}, "job-" + std::to_string(index), "key-" + std::to_string(index)};
    auto r = api.submit(st.team, t.input, t.key);
    std::lock_guard lock{st.mu};
    if (r.outcome == submit_outcome::acknowledged) {
      t.id = r.id;
      st.acked.push_back(std::move(t));
    } else {
      --st.reserved;
      if (r.outcome == submit_outcome::in_doubt)
        st.in_doubt.push_back(std::move(t));
      else {
        st.refusals.push_back(std::to_string(r.status) + " " + r.body.dump());
        st.refused_inputs.push_back(t.input);
      }
      st.cv.notify_all();
      return;  // the daemon is gone (or refusing): this round's submitting is over
    }
    st.cv.notify_all();
  }
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// Parses "recovered_tasks=N ... recovery_s=X" from the daemon's start line.
void note_recovery(const std::string& out, campaign_stats& stats) {
  auto pos = out.find("recovered_tasks=");
  if (pos != std::string::npos)
    stats.max_recovered = std::max(stats.max_recovered, std::atoi(out.c_str() + pos + 16));
  pos = out.find("recovery_s=");
  if (pos != std::string::npos)
    stats.max_recovery_s = std::max(stats.max_recovery_s, std::atof(out.c_str() + pos + 11));
}

bool terminal(const std::string& state) {
  return state == "succeeded" || state == "failed" || state == "cancelled";
}

}  // namespace

std::string pipeline_config(int snapshot_every, bool faults) {
  std::string cfg = pipeline_config_template;
  cfg.replace(cfg.find("SNAPSHOT_EVERY"), 14, std::to_string(snapshot_every));
  // The fault reply answers like the plain one except on every 3rd matching call.
  const std::string fault =
      R"({ "match": "S2 ", "fault": "error", "every": 3, "error": "simulated overload",)"
      R"( "text": "B<{{prompt}}>@{{attempt}}" },)"
      "\n      ";
  cfg.replace(cfg.find("FAULTS"), 6, faults ? fault : "");
  return cfg;
}

std::string pipeline_result(const std::string& input) {
  return "C<S3 B<S2 A(" + input + ")@1>@1>@1";
}

int default_campaign_tasks() {
  // 500 tasks take about 15 s even in a Debug+ASan build, so sanitizers need no discount.
  return 500;
}

std::uint64_t campaign_seed() {
  if (const char* s = std::getenv("TROUPE_CRASH_SEED"); s && *s)
    return std::strtoull(s, nullptr, 10);
  return static_cast<std::uint64_t>(clock_type::now().time_since_epoch().count());
}

void run_crash_campaign(const campaign_options& opts, scratch_dir& dir, campaign_stats& stats) {
  const auto t0 = clock_type::now();
  // A write to a socket of the killed daemon must fail with EPIPE, not end the test.
  std::signal(SIGPIPE, SIG_IGN);
  const bool newsroom = opts.workflow == campaign_workflow::newsroom;
  const std::string team = newsroom ? "newsroom" : "pipe";
  std::string cfg = pipeline_config(opts.snapshot_every, opts.faults);
  if (newsroom) {
    std::ifstream in(std::string(TROUPE_SOURCE_DIR) + "/examples/newsroom.json");
    cfg.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    ASSERT_FALSE(cfg.empty()) << "cannot read examples/newsroom.json";
  }
  const auto cfg_path = dir.file("pipeline.json");
  ASSERT_TRUE(write_text(cfg_path, cfg));
  const auto log_path = dir.file("daemon.log");
  const std::vector<std::string> args{"run",         cfg_path,  "--listen",
                                      "127.0.0.1:0", "--store", opts.store_url};

  std::mt19937_64 rng{opts.seed};
  std::vector<acked_task> acked;
  std::vector<acked_task> in_doubt;
  std::vector<std::string> refused_inputs;
  int next_index = 0;
  // The crash (SIGKILL) or the graceful stop (SIGTERM: drain, exit 0).
  auto stop_daemon = [&](daemon_process& d, int round) {
    if (opts.stop_signal == SIGKILL) {
      d.kill_hard();
      return;
    }
    const auto at = clock_type::now();
    d.signal(opts.stop_signal);
    auto code = d.wait_exit(30s);
    stats.max_drain_s = std::max(stats.max_drain_s, seconds_since(at));
    EXPECT_TRUE(code && *code == 0) << "round " << round << ": exit " << (code ? *code : -1)
                                    << " after signal " << opts.stop_signal;
  };
  std::map<std::string, json> finals;  // task JSON of every checked task at the end
  // Submitting is spread over the first kills; the last few kills hit recovery and
  // running work only.
  const int submit_rounds = std::max(1, opts.kills - 3);
  // A round stops at a random point of its quota (2/3 of it on average), so the quota is
  // 1.5 shares: submitting then usually ends before the last kills.
  const int quota = (3 * opts.tasks + 2 * submit_rounds - 1) / (2 * submit_rounds);

  for (int round = 0;; ++round) {
    daemon_process d;
    std::string why;
    const auto spawned = clock_type::now();
    ASSERT_TRUE(d.start(troupe_exe(), args, log_path, why)) << why;
    auto port = d.wait_until_ready(120s);
    ASSERT_TRUE(port) << "round " << round << ": daemon not ready within 120 s; output:\n"
                      << d.output();
    if (round > 0) stats.max_ready_s = std::max(stats.max_ready_s, seconds_since(spawned));
    note_recovery(d.output(), stats);

    const bool final_round = stats.kills >= opts.kills;
    const bool submitting = static_cast<int>(acked.size()) < opts.tasks;
    if (!final_round) {
      if (submitting) {
        // Kill when the acknowledged count reaches a random point of this round's quota:
        // submits, commits and steps are all in flight then.
        submit_state st;
        st.team = team;
        st.next_index = next_index;
        const int have = static_cast<int>(acked.size());
        const int target = std::min(opts.tasks, have + quota);
        std::uniform_int_distribution<int> at(std::min(target, have + std::max(1, quota / 3)),
                                              target);
        const int kill_at = at(rng);
        st.reserved = have;
        std::vector<std::thread> threads;
        for (int i = 0; i < 2; ++i) threads.emplace_back(submitter, *port, target, std::ref(st));
        {
          std::unique_lock lock{st.mu};
          const bool reached = st.cv.wait_for(lock, 120s, [&] {
            return have + static_cast<int>(st.acked.size()) >= kill_at || !st.refusals.empty() ||
                   !st.in_doubt.empty();
          });
          st.stop = true;
          EXPECT_TRUE(reached) << "round " << round << ": submits stalled";
        }
        stop_daemon(d, round);
        for (auto& t : threads) t.join();
        if (opts.stop_signal == SIGKILL) {
          EXPECT_TRUE(st.refusals.empty())
              << "round " << round << ": refused submit: " << st.refusals.front();
        }
        for (const auto& r : st.refusals)
          EXPECT_EQ(r.rfind("503 ", 0), 0u)
              << "round " << round << ": a draining daemon answered " << r;
        refused_inputs.insert(refused_inputs.end(), st.refused_inputs.begin(),
                              st.refused_inputs.end());
        acked.insert(acked.end(), st.acked.begin(), st.acked.end());
        in_doubt.insert(in_doubt.end(), st.in_doubt.begin(), st.in_doubt.end());
        next_index = st.next_index;
      } else {
        // Everything is submitted: kill a random moment after the restart, while the
        // recovered tasks run. A wait on a future that never fires bounds it.
        std::uniform_int_distribution<int> delay(5, 250);
        const auto ms = delay(rng);
        std::promise<void> never;
        never.get_future().wait_for(std::chrono::milliseconds(ms));
        stop_daemon(d, round);
      }
      ++stats.kills;
      std::printf("[crash] kill %d at round %d: acknowledged=%zu in_doubt=%zu\n", stats.kills,
                  round, acked.size(), in_doubt.size());
      std::fflush(stdout);
      if (::testing::Test::HasFatalFailure()) return;
      continue;
    }

    // Final round: every acknowledged task, and every in-doubt one that was committed,
    // must finish now without another crash.
    if (static_cast<int>(acked.size()) < opts.tasks) {
      // Kills came early: submit the rest now, without a crash.
      submit_state st;
      st.team = team;
      st.next_index = next_index;
      st.reserved = static_cast<int>(acked.size());
      std::vector<std::thread> threads;
      for (int i = 0; i < 2; ++i) threads.emplace_back(submitter, *port, opts.tasks, std::ref(st));
      for (auto& t : threads) t.join();
      ASSERT_TRUE(st.refusals.empty() && st.in_doubt.empty()) << "submits failed without a crash";
      acked.insert(acked.end(), st.acked.begin(), st.acked.end());
      next_index = st.next_index;
    }
    api_client api{*port};
    std::string store_why;
    auto mid = read_store(opts.store_url, store_why);
    ASSERT_TRUE(mid) << store_why;
    std::map<std::string, std::string> id_by_input;
    for (const auto& [id, row] : mid->tasks) id_by_input[row.input] = id;
    std::vector<acked_task> to_check = acked;
    for (auto& t : in_doubt) {
      if (auto it = id_by_input.find(t.input); it != id_by_input.end()) {
        t.id = it->second;
        to_check.push_back(t);
        ++stats.in_doubt_stored;
      }
    }
    const auto deadline = clock_type::now() + 150s;
    for (const auto& t : to_check) {
      for (;;) {
        auto doc = api.task(t.id);
        ASSERT_TRUE(doc) << "task " << t.id << " (" << t.input << ") is unknown to the daemon";
        if (terminal(doc->value("state", ""))) {
          finals[t.id] = std::move(*doc);
          break;
        }
        ASSERT_LT(clock_type::now(), deadline)
            << "task " << t.id << " still " << doc->value("state", "");
        std::this_thread::sleep_for(10ms);  // polling interval of a condition with a deadline
      }
    }
    // Idempotency across crashes: re-submitting a committed in-doubt submit returns that task.
    for (const auto& t : in_doubt) {
      if (t.id.empty()) continue;
      auto r = api.submit(team, t.input, t.key);
      EXPECT_EQ(r.outcome, submit_outcome::acknowledged) << r.status << " " << r.body.dump();
      EXPECT_EQ(r.id, t.id) << "re-submit of " << t.key << " made a second task";
    }
    d.signal(SIGTERM);
    auto code = d.wait_exit(10s);
    ASSERT_TRUE(code) << "daemon did not exit within 10 s of SIGTERM";
    EXPECT_EQ(*code, 0) << d.output().substr(d.output().size() > 4000 ? d.output().size() - 4000
                                                                      : 0);
    break;
  }

  // The audit: HTTP view and durable ledger agree with the contract.
  stats.acknowledged = static_cast<int>(acked.size());
  stats.in_doubt = static_cast<int>(in_doubt.size());
  EXPECT_EQ(stats.acknowledged, opts.tasks);
  std::string why;
  auto view = read_store(opts.store_url, why);
  ASSERT_TRUE(view) << why;
  std::set<std::string> acked_ids;
  for (const auto& t : acked) {
    EXPECT_TRUE(acked_ids.insert(t.id).second) << "two acknowledgements carry id " << t.id;
    auto it = view->tasks.find(t.id);
    ASSERT_NE(it, view->tasks.end())
        << "acknowledged task " << t.id << " (" << t.input << ") was lost";
    EXPECT_EQ(it->second.input, t.input);
    EXPECT_EQ(it->second.state, "succeeded") << t.id;
  }
  stats.refused = static_cast<int>(refused_inputs.size());
  stats.failed_calls = view->cost_rows;
  for (const auto& [key, n] : view->ok_calls) stats.failed_calls -= n;
  if (opts.faults) {
    EXPECT_GT(stats.failed_calls, 0) << "the fault injection never fired";
  }
  std::set<std::string> doubt_inputs;
  for (const auto& t : in_doubt) doubt_inputs.insert(t.input);
  std::set<std::string> refused_set(refused_inputs.begin(), refused_inputs.end());
  for (const auto& [id, row] : view->tasks) {
    EXPECT_EQ(row.state, "succeeded")
        << "stored task " << id << " (" << row.input << ") is half-done";
    if (!acked_ids.count(id)) {
      EXPECT_TRUE(doubt_inputs.count(row.input)) << "stored task " << id << " was never submitted";
      EXPECT_FALSE(refused_set.count(row.input))
          << "task " << id << " was stored although its submit was refused";
    }
  }
  int extra_calls = 0;
  for (const auto& t : acked) {
    const std::string& id = t.id;
    const json doc = finals.count(id) ? finals[id] : json();
    ASSERT_TRUE(doc.is_object()) << id;
    ASSERT_EQ(doc.value("state", ""), "succeeded") << doc.dump();
    const auto& steps = doc.at("steps");
    const std::string input = doc.value("input", "");
    if (newsroom) {
      // research, write, review (revise), write, review (approve), publish: each call once.
      const std::map<std::string, int> calls_per_step{
          {"research", 1}, {"write", 2}, {"review", 2}, {"publish", 1}};
      const std::string article = "Revised article on " + input + ", now citing its sources.";
      EXPECT_EQ(doc.value("result", ""), "Published: " + article) << id;
      for (const auto& s : steps) {
        const auto step = s.value("id", "");
        EXPECT_EQ(s.value("state", ""), "succeeded") << id << " " << step;
        if (step == "write") {
          EXPECT_EQ(s.value("output", ""), article) << id;
        }
        auto calls = view->ok_calls[{id, step}];
        EXPECT_EQ(calls, calls_per_step.at(step)) << "step " << step << " of " << id << " has "
                                                  << calls << " completed calls in the cost ledger";
        extra_calls += std::max(0, calls - calls_per_step.at(step));
      }
      continue;
    }
    ASSERT_EQ(steps.size(), 3u) << doc.dump();
    std::string expect;
    const char* names[] = {"s1", "s2", "s3"};
    for (int i = 0; i < 3; ++i) {
      const auto& s = steps[static_cast<std::size_t>(i)];
      const int attempts = s.value("attempts", 0);
      const std::string at = "@" + std::to_string(attempts);
      expect = i == 0 ? "A(" + input + ")" + at
                      : std::string(i == 1 ? "B<S2 " : "C<S3 ") + expect + ">" + at;
      EXPECT_EQ(s.value("state", ""), "succeeded") << id;
      EXPECT_EQ(s.value("output", ""), expect) << id << " step " << names[i];
      // At most the one call in flight at a kill may have been re-run.
      EXPECT_GE(attempts, 1) << id;
      if (!opts.faults) {
        EXPECT_LE(attempts, 1 + stats.kills) << id;
      }
      if (attempts > 1) ++stats.reruns;
      // The cost ledger is committed with the step's result: exactly one completed call
      // per step proves that no committed step was run again.
      auto calls = view->ok_calls[{id, names[i]}];
      EXPECT_EQ(calls, 1) << "step " << names[i] << " of " << id << " has " << calls
                          << " completed calls in the cost ledger";
      extra_calls += std::max(0, calls - 1);
    }
    EXPECT_EQ(doc.value("result", ""), expect) << id;
  }
  EXPECT_EQ(extra_calls, 0);
  stats.total_s = seconds_since(t0);
}

}  // namespace troupe::test
