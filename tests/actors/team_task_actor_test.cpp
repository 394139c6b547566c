// Task actors under their team, deterministic on CAF's test coordinator: a task
// actor that throws is restarted from its record (completed steps are not run again,
// the step it was running is retried), other tasks and the agents are untouched;
// past the restart intensity the team fails and keeps its work; a cancel reaches a
// running task's actor and abandons its call.
#include <algorithm>
#include <set>

#include "team_fixture.hpp"

namespace troupe::actors::testing {
namespace {

using nlohmann::json;

json three_steps() {
  return json::array({{{"id", "s1"}, {"capability", "work"}, {"prompt", "{{input}} one"}},
                      {{"id", "s2"}, {"capability", "work"}, {"prompt", "{{input}} two {{step.s1}}"}},
                      {{"id", "s3"}, {"capability", "work"}, {"prompt", "{{input}} three {{step.s2}}"}}});
}
json echo() { return json::array({{{"text", "ok {{input}}"}}}); }

using release_atom = caf::atom_constant<caf::atom("release")>;

/// A store that commits at once, except the batches holding a task's terminal
/// snapshot (succeeded, failed or cancelled): those wait until the store is sent `release`.
struct held_commits {
  std::vector<std::pair<caf::response_promise, batch_ptr>> held;
};

caf::behavior holding_store(caf::event_based_actor* self, std::shared_ptr<held_commits> h) {
  return {[=](release_atom) {
            for (auto& [rp, batch] : h->held) {
              commit_reply ok;
              ok.ok = true;
              rp.deliver(std::move(ok));
            }
            h->held.clear();
          },
          [=](write_atom, const batch_ptr& batch) -> caf::result<commit_reply> {
    const bool terminal = std::any_of(batch->snapshots.begin(), batch->snapshots.end(),
                                      [](const base::task_row& r) {
                                        return r.state == "succeeded" || r.state == "failed" || r.state == "cancelled";
                                      });
    if (!terminal) {
      commit_reply ok;
      ok.ok = true;
      return ok;
    }
    auto rp = self->make_response_promise();
    h->held.emplace_back(rp, batch);
    return caf::delegated<commit_reply>();
  }};
}

/// A store whose commits of new tasks fail with the outcome unknown, while the rows in
/// fact land when `lands` says so; reads answer from what landed, after `unreadable`
/// failed reads.
struct doubtful_commits {
  bool lands = true;
  int unreadable = 0;
  int unanswered = 0;  ///< reads dropped without an answer, as by a store actor that died
  std::vector<std::string> attempted;  ///< ids of the new tasks whose commit "failed"
  std::set<std::string> stored;
  std::vector<std::string> read;       ///< ids read, in order
  int reads = 0;
};

caf::behavior doubtful_store(caf::event_based_actor*, std::shared_ptr<doubtful_commits> d) {
  return {[=](write_atom, const batch_ptr& batch) {
            commit_reply r;
            if (batch->new_tasks.empty()) {
              r.ok = true;
              return r;
            }
            for (const auto& t : batch->new_tasks) {
              d->attempted.push_back(t.id);
              if (d->lands) d->stored.insert(t.id);
            }
            r.error = base::make_error(base::errc::unavailable, "connection lost during COMMIT, outcome unknown", true);
            r.error.in_doubt = true;
            return r;
          },
          [=](load_atom, const std::string& id, const reply_fn& reply) {
            ++d->reads;
            d->read.push_back(id);
            if (d->unanswered > 0) {
              --d->unanswered;
              return;
            }
            if (d->unreadable > 0) {
              --d->unreadable;
              return reply(base::fail(base::errc::unavailable, "database unreachable"));
            }
            if (!d->stored.count(id)) return reply(base::fail(base::errc::not_found, "no task with id '" + id + "'"));
            reply(json{{"id", id}});
          }};
}

class team_task_actor : public team_fixture {
 public:
  /// LLM calls made for `task` (and one of its steps).
  std::size_t calls(const std::string& task, const std::string& step = {}) const {
    return count("llm.call", [&](const json& d) { return d["task"] == task && (step.empty() || d["step"] == step); });
  }
  bool step_finished(const std::string& task, const std::string& step) const {
    return count("task.update", [&](const json& d) {
             return d["task"] == task && d["what"] == "step_finished" && d["step"] == step;
           }) > 0;
  }
  json task(const std::string& id) {
    auto r = ask(caf::make_message(task_atom::value, id));
    EXPECT_TRUE(r);
    return r ? *r : json();
  }
  void crash(const std::string& id) { caf::anon_send(team, fault_atom::value, "task:" + id); }
  /// Starts a one-step team on a doubtful store and submits task "a", whose commit fails
  /// in doubt: the client hears the refusal, since nobody can know more yet.
  void submit_in_doubt(const std::shared_ptr<doubtful_commits>& d) {
    auto spec = spec_of(team_config(echo(), json::array({{{"id", "only"}, {"capability", "work"}, {"prompt", "{{input}}"}}}),
                                    1, {{"strategy", "one_for_one"}}));
    spec.store = sys.spawn(doubtful_store, d);
    spawn(std::move(spec));
    agents::task_spec ts;
    ts.team = "t";
    ts.input = "a";
    auto r = ask(caf::make_message(submit_atom::value, ts));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, base::errc::unavailable);
  }

  /// Gives `spec` a store that holds terminal commits until release(); it ends with the test.
  std::shared_ptr<held_commits> hold_terminal_commits(team_spec& spec) {
    auto commits = std::make_shared<held_commits>();
    holding_ = sys.spawn(holding_store, commits);
    spec.store = holding_;
    return commits;
  }
  void release() { caf::anon_send(holding_, release_atom::value); }
  // Held promises would keep the store alive past the test.
  void TearDown() override {
    if (!holding_) return;
    caf::anon_send_exit(holding_, caf::exit_reason::kill);
    sched.run();
  }

 private:
  caf::actor holding_;
};

TEST_F(team_task_actor, a_task_announces_its_end_only_after_its_last_steps_output_is_committed) {
  auto spec = spec_of(team_config(echo(), json::array({{{"id", "only"}, {"capability", "work"}, {"prompt", "{{input}}"}}}),
                                  1, {{"strategy", "one_for_one"}}));
  auto commits = hold_terminal_commits(spec);
  spawn(std::move(spec));
  auto a = submit("a");
  ASSERT_TRUE(run_until([&] { return !commits->held.empty(); }));
  // One write carries the step's output, its call's cost and the terminal state...
  const auto& batch = *commits->held.front().second;
  ASSERT_EQ(batch.snapshots.size(), 1u);
  EXPECT_EQ(batch.snapshots[0].id, a);
  EXPECT_EQ(json::parse(batch.snapshots[0].snapshot)["steps"][0]["output"], "ok a");
  EXPECT_EQ(batch.costs.size(), 1u);
  EXPECT_TRUE(batch.journal.empty());
  // ...and until it is committed nobody hears that the task ended, not even by asking.
  ASSERT_FALSE(run_until([&] { return finished.count(a) > 0; }, 2000));
  auto pending = task(a);
  EXPECT_EQ(pending["state"], "running");
  EXPECT_EQ(pending["result"], "");
  release();
  ASSERT_TRUE(run_until([&] { return finished.count(a) > 0; }));
  EXPECT_EQ(finished[a]["state"], "succeeded");
  EXPECT_EQ(task(a)["result"], "ok a");
}

TEST_F(team_task_actor, a_submit_refused_with_its_commit_in_doubt_runs_if_the_task_was_stored_after_all) {
  auto d = std::make_shared<doubtful_commits>();
  d->unreadable = 2;  // the store is still down for the first reads
  submit_in_doubt(d);
  ASSERT_EQ(d->stored.size(), 1u);
  const auto id = *d->stored.begin();
  // Once a read can tell, the stored task runs like any other; it was read until then.
  ASSERT_TRUE(run_until([&] { return finished.count(id) > 0; }, 10000, 50)) << d->reads << " reads";
  EXPECT_EQ(finished[id]["state"], "succeeded");
  EXPECT_EQ(task(id)["result"], "ok a");
  EXPECT_EQ(d->read, std::vector<std::string>(3, id));
  const auto stale_reads = d->reads;
  run_until([] { return false; }, 3000, 100);
  EXPECT_EQ(d->reads, stale_reads) << "a settled doubt is not read again";
}

TEST_F(team_task_actor, a_read_of_a_submit_in_doubt_that_gets_no_answer_is_sent_again) {
  auto d = std::make_shared<doubtful_commits>();
  d->unanswered = 1;
  submit_in_doubt(d);
  ASSERT_EQ(d->stored.size(), 1u);
  const auto id = *d->stored.begin();
  ASSERT_TRUE(run_until([&] { return d->reads == 1; }, 5000, 50));
  // Nothing more is asked while the read may still be answered...
  run_until([] { return false; }, 5000, 100);
  EXPECT_EQ(d->reads, 1);
  // ...and once it is given up, the next read finds the task, which runs.
  ASSERT_TRUE(run_until([&] { return finished.count(id) > 0; }, 30000, 100)) << d->reads << " reads";
  EXPECT_EQ(finished[id]["state"], "succeeded");
  EXPECT_EQ(d->reads, 2);
}

TEST_F(team_task_actor, a_submit_refused_with_its_commit_in_doubt_is_dropped_if_the_task_was_not_stored) {
  auto d = std::make_shared<doubtful_commits>();
  d->lands = false;
  submit_in_doubt(d);
  ASSERT_TRUE(run_until([&] { return d->reads == 1; }, 5000, 50));
  run_until([] { return false; }, 3000, 100);
  ASSERT_EQ(d->attempted.size(), 1u);
  EXPECT_EQ(d->read, d->attempted) << "the refused task itself was looked for, once";
  EXPECT_TRUE(finished.empty());
  EXPECT_EQ(count("llm.call", [](const json&) { return true; }), 0u);
}

TEST_F(team_task_actor, a_crashed_task_actor_resumes_its_task_without_rerunning_completed_steps) {
  spawn(spec_of(team_config(echo(), three_steps(), 2, {{"strategy", "one_for_one"}})));
  auto a = submit("a");
  auto b = submit("b");
  ASSERT_TRUE(run_until([&] { return step_finished(a, "s1") && calls(a) == 1; }, 60000, 10));
  crash(a);  // s1 is done, s2 is in flight
  ASSERT_TRUE(run_until([&] { return finished.count(a) && finished.count(b); }));
  EXPECT_EQ(finished[a]["state"], "succeeded");
  EXPECT_EQ(finished[b]["state"], "succeeded");
  EXPECT_EQ(calls(a, "s1"), 1u) << "a completed step is not run again";
  EXPECT_EQ(calls(a, "s3"), 1u);
  auto ta = task(a);
  EXPECT_EQ(ta["steps"][0]["attempts"], 1);
  EXPECT_EQ(ta["steps"][1]["attempts"], 2) << "the step it was running is retried";
  EXPECT_EQ(ta["result"], "ok a");
  // The other task and the agents saw nothing of it.
  EXPECT_EQ(calls(b), 3u);
  auto tb = task(b);
  for (const auto& s : tb["steps"]) EXPECT_EQ(s["attempts"], 1);
  for (const auto& agent : {"a1", "a2"}) {
    auto seq = agent_states(agent);
    EXPECT_EQ(std::count(seq.begin(), seq.end(), "restarting"), 0) << agent;
  }
  auto st = status();
  EXPECT_EQ(st["task_restarts"], 1);
  EXPECT_EQ(st["state"], "running");
  EXPECT_EQ(count("task.update", [&](const json& d) { return d["task"] == a && d["what"] == "task_restarting"; }), 1u);
}

TEST_F(team_task_actor, a_step_out_of_attempts_fails_its_task_when_the_task_actor_crashes) {
  spawn(spec_of(team_config(echo(), three_steps(), 1, {{"strategy", "one_for_one"}})));
  auto a = submit("a", "", 1);  // one attempt per step
  ASSERT_TRUE(run_until([&] { return calls(a) == 0 && count("task.update", [&](const json& d) {
                                        return d["task"] == a && d["what"] == "step_started";
                                      }) == 1; }, 60000, 10));
  crash(a);
  ASSERT_TRUE(run_until([&] { return finished.count(a) > 0; }));
  EXPECT_EQ(finished[a]["state"], "failed");
  EXPECT_NE(finished[a]["error"]["message"].get<std::string>().find("task actor crashed"), std::string::npos);
}

TEST_F(team_task_actor, past_the_intensity_the_team_fails_keeps_its_tasks_and_an_operator_restart_resumes_them) {
  spawn(spec_of(team_config(echo(), three_steps(), 1, {{"max_restarts", 1}, {"within_ms", 60000}})));
  auto a = submit("a", "", 5);
  ASSERT_TRUE(run_until([&] { return step_finished(a, "s1"); }, 60000, 10));
  crash(a);  // restarted
  ASSERT_TRUE(run_until([&] { return status()["task_restarts"] == 1; }, 1000, 10));
  crash(a);  // past max_restarts 1 within the window: the team fails
  ASSERT_TRUE(run_until([&] { return status()["state"] == "failed"; }, 1000, 10));
  auto x = submit("x");
  run_until([] { return false; }, 5000);
  EXPECT_EQ(finished.count(a), 0u) << "a failed team runs nothing";
  EXPECT_EQ(finished.count(x), 0u);
  auto st = status();
  EXPECT_EQ(st["queued"], 1) << "the queue is kept";
  EXPECT_EQ(task(a)["state"], "running") << "the crashed task is kept with its record";
  ASSERT_TRUE(ask(caf::make_message(restart_atom::value)));
  ASSERT_TRUE(run_until([&] { return finished.count(a) && finished.count(x); }));
  EXPECT_EQ(finished[a]["state"], "succeeded");
  EXPECT_EQ(finished[x]["state"], "succeeded");
  EXPECT_EQ(calls(a, "s1"), 1u) << "its completed step was not run again";
  EXPECT_EQ(status()["state"], "running");
}

TEST_F(team_task_actor, a_cancel_reaches_the_running_tasks_actor_and_frees_the_agent_at_once) {
  spawn(spec_of(team_config(echo(), three_steps(), 1, {{"strategy", "one_for_one"}}, 60000)));
  auto a = submit("a");
  ASSERT_TRUE(run_until([&] {
    return count("task.update", [&](const json& d) { return d["task"] == a && d["what"] == "step_started"; }) == 1;
  }, 1000, 10));
  auto r = ask(caf::make_message(cancel_atom::value, a));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["state"], "cancelled");
  ASSERT_TRUE(run_until([&] { return finished.count(a) > 0; }, 1000, 10));
  EXPECT_EQ(finished[a]["state"], "cancelled");
  // The abandoned call is reported (and accounted) at once, not at its provider timeout:
  // the agent is free for the next task well before the 60 s latency of the first call.
  EXPECT_EQ(count("llm.call", [&](const json& d) { return d["task"] == a && d["outcome"] == "cancelled"; }), 1u);
  auto seq = agent_states("a1");
  EXPECT_EQ(seq.back(), "idle");
  EXPECT_EQ(ask(caf::make_message(cancel_atom::value, a)).error().code, base::errc::conflict);
}

TEST_F(team_task_actor, a_cancel_is_answered_and_announced_only_once_the_cancelled_state_is_committed) {
  auto spec = spec_of(team_config(echo(), three_steps(), 1, {{"strategy", "one_for_one"}}, 60000));
  auto commits = hold_terminal_commits(spec);
  spawn(std::move(spec));
  auto a = submit("a");
  ASSERT_TRUE(run_until([&] {
    return count("task.update", [&](const json& d) { return d["task"] == a && d["what"] == "step_started"; }) == 1;
  }, 1000, 10));
  // The operator's cancel: held until its terminal snapshot commits. A crash before
  // that would bring the task back, so nobody may hear "cancelled" yet.
  std::optional<base::result<json>> answer;
  reply_fn reply = [&answer](base::result<json> r) { answer = std::move(r); };
  caf::anon_send(team, caf::make_message(cancel_atom::value, a) + caf::make_message(reply));
  ASSERT_TRUE(run_until([&] { return !commits->held.empty(); }, 1000, 10));
  const auto& batch = *commits->held.front().second;
  ASSERT_EQ(batch.snapshots.size(), 1u);
  EXPECT_EQ(batch.snapshots[0].state, "cancelled");
  ASSERT_FALSE(run_until([&] { return answer.has_value() || finished.count(a) > 0; }, 2000, 10));
  release();
  ASSERT_TRUE(run_until([&] { return answer.has_value() && finished.count(a) > 0; }, 1000, 10));
  ASSERT_TRUE(*answer) << answer->error().message;
  EXPECT_EQ((**answer)["state"], "cancelled");
  EXPECT_EQ(finished[a]["state"], "cancelled");
}

TEST_F(team_task_actor, a_queued_tasks_cancel_is_answered_and_announced_only_once_committed) {
  auto spec = spec_of(team_config(echo(), three_steps(), 1, {{"strategy", "one_for_one"}}));
  auto commits = hold_terminal_commits(spec);
  spawn(std::move(spec));
  ASSERT_TRUE(ask(caf::make_message(pause_atom::value, std::string(), false)));
  auto a = submit("a");  // queued: the team holds it, no task actor
  std::optional<base::result<json>> answer;
  reply_fn reply = [&answer](base::result<json> r) { answer = std::move(r); };
  caf::anon_send(team, caf::make_message(cancel_atom::value, a) + caf::make_message(reply));
  ASSERT_TRUE(run_until([&] { return !commits->held.empty(); }, 1000, 10));
  EXPECT_EQ(commits->held.front().second->snapshots.at(0).state, "cancelled");
  ASSERT_FALSE(run_until([&] { return answer.has_value() || finished.count(a) > 0; }, 2000, 10));
  release();
  ASSERT_TRUE(run_until([&] { return answer.has_value() && finished.count(a) > 0; }, 1000, 10));
  ASSERT_TRUE(*answer) << answer->error().message;
  EXPECT_EQ((**answer)["state"], "cancelled");
  EXPECT_EQ(status()["queued"], 0);
}

TEST_F(team_task_actor, a_step_queued_for_an_evicted_task_does_not_run_the_task_that_took_its_slot) {
  auto spec = spec_of(team_config(echo(), three_steps(), 2, {{"strategy", "one_for_one"}}));
  spec.keep_terminal = 1;  // the second finished task evicts the first
  spawn(std::move(spec));
  ASSERT_TRUE(ask(caf::make_message(pause_atom::value, std::string(), false)));
  auto a = submit("a", "a1");  // its first step waits in a1's queue
  auto b = submit("b", "a1");
  ASSERT_TRUE(ask(caf::make_message(cancel_atom::value, a)));
  ASSERT_TRUE(ask(caf::make_message(cancel_atom::value, b)));  // a is evicted; its step stays queued
  auto c = submit("c", "a2");  // takes a's place in the table
  ASSERT_TRUE(ask(caf::make_message(resume_atom::value, std::string())));
  ASSERT_TRUE(run_until([&] { return finished.count(c) > 0; }, 10000, 10));
  EXPECT_EQ(finished[c]["state"], "succeeded");
  // a1 takes a's stale step first: it must find nothing, not c.
  EXPECT_EQ(count("llm.call", [&](const json& d) { return d["task"] == c && d["agent"] == "a1"; }), 0u);
  EXPECT_EQ(calls(c), 1u);  // submitted to an agent: one step, pinned to it
  EXPECT_EQ(calls(a) + calls(b), 0u);
  EXPECT_EQ(ask(caf::make_message(task_atom::value, a)).error().code, base::errc::not_found);
}

}  // namespace
}  // namespace troupe::actors::testing
