// The supervisor helper inside a real actor on CAF's test coordinator: which
// children restart under each strategy, escalation, the sliding window on the
// actor clock, and transient children. Nothing runs until the test says so.
#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <gtest/gtest.h>

#include "troupe/actors/supervision/supervisor.hpp"

namespace troupe::actors::supervision {
namespace {

using crash_atom = caf::atom_constant<caf::atom("crash")>;
using finish_atom = caf::atom_constant<caf::atom("finish")>;
using again_atom = caf::atom_constant<caf::atom("again")>;
using release_atom = caf::atom_constant<caf::atom("release")>;

struct testing_config : caf::actor_system_config {
  testing_config() { set("scheduler.policy", caf::atom("testing")); }
};

/// What the test observes; touched only on the test thread (the coordinator runs there).
struct probe {
  std::vector<std::string> events;
  std::map<std::string, caf::actor> handles;
  int alive = 0;
  int started = 0;
};

caf::behavior worker(caf::event_based_actor* self, std::shared_ptr<probe> p) {
  ++p->alive;
  ++p->started;
  self->attach_functor([p] { --p->alive; });
  return {
      [](crash_atom) { throw std::runtime_error("worker crash"); },
      [self](finish_atom) { self->quit(); },
  };
}

struct sup_state {
  supervisor sup;
};

caf::behavior test_supervisor(caf::stateful_actor<sup_state>* self, std::shared_ptr<probe> p, restart_policy policy,
                              restart_mode mode, std::vector<std::string> keys) {
  child_hooks hooks;
  hooks.start = [self, p](const std::string& key) {
    auto h = self->spawn(worker, p);
    p->handles[key] = h;
    return h;
  };
  hooks.stopped = [p](const std::string& key, const stop_info& info) {
    p->events.push_back("stopped " + key + (info.crashed ? " crashed" : " sibling") +
                        (info.restarting ? " restarting" : " given_up"));
  };
  hooks.restarted = [p](const std::string& key) { p->events.push_back("restarted " + key); };
  hooks.escalated = [p](const std::string& key, const std::string&) { p->events.push_back("escalated " + key); };
  self->state.sup = supervisor{policy, mode, intensity_scope::group, std::move(hooks)};
  for (auto& k : keys) self->state.sup.add(self, k);
  self->set_down_handler([self](caf::down_msg& dm) { self->state.sup.on_down(self, dm); });
  self->set_exit_handler([self](caf::exit_msg& em) {
    if (em.reason == caf::exit_reason::normal || self->state.sup.knows(em.source)) return;
    self->quit(em.reason);
  });
  return {
      [self](crash_atom, const std::string& key) { self->send(self->state.sup.handle(key), crash_atom::value); },
      [self](finish_atom, const std::string& key) { self->send(self->state.sup.handle(key), finish_atom::value); },
      [self](release_atom, const std::string& key) {
        if (auto h = self->state.sup.release(self, key)) self->send(h, finish_atom::value);
      },
      [self](again_atom) { self->state.sup.restart_stopped(self); },
  };
}

struct supervisor_fixture : ::testing::Test {
  testing_config cfg;
  caf::actor_system sys{cfg};
  caf::scheduler::test_coordinator& sched = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  std::shared_ptr<probe> p = std::make_shared<probe>();
  caf::actor sup;

  void start(strategy s, int max_restarts, std::int64_t within_ms, restart_mode mode = restart_mode::permanent) {
    sup = sys.spawn(test_supervisor, p, restart_policy{s, max_restarts, within_ms}, mode,
                    std::vector<std::string>{"a", "b", "c"});
    sched.run();
    ASSERT_EQ(p->alive, 3);
  }
  void crash(const std::string& key) {
    caf::anon_send(sup, crash_atom::value, key);
    sched.run();
  }
  void TearDown() override {
    caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
    sched.run();
    EXPECT_EQ(p->alive, 0) << "children outlived their supervisor";
  }
};

using events = std::vector<std::string>;

TEST_F(supervisor_fixture, one_for_one_restarts_only_the_crashed_child) {
  start(strategy::one_for_one, 5, 1000);
  auto before = p->handles;
  crash("b");
  EXPECT_EQ(p->events, events({"stopped b crashed restarting", "restarted b"}));
  EXPECT_EQ(p->alive, 3);
  EXPECT_EQ(p->started, 4);
  EXPECT_EQ(p->handles["a"], before["a"]);
  EXPECT_NE(p->handles["b"], before["b"]);
  EXPECT_EQ(p->handles["c"], before["c"]);
}

TEST_F(supervisor_fixture, one_for_all_stops_the_siblings_and_restarts_everyone_in_start_order) {
  start(strategy::one_for_all, 5, 1000);
  auto before = p->handles;
  crash("b");
  EXPECT_EQ(p->events, events({"stopped b crashed restarting", "stopped a sibling restarting",
                               "stopped c sibling restarting", "restarted a", "restarted b", "restarted c"}));
  EXPECT_EQ(p->alive, 3) << "the old siblings were not stopped";
  EXPECT_EQ(p->started, 6);
  for (const auto& k : {"a", "b", "c"}) EXPECT_NE(p->handles[k], before[k]) << k;
}

TEST_F(supervisor_fixture, rest_for_one_restarts_the_crashed_child_and_those_after_it) {
  start(strategy::rest_for_one, 5, 1000);
  auto before = p->handles;
  crash("b");
  EXPECT_EQ(p->events, events({"stopped b crashed restarting", "stopped c sibling restarting", "restarted b",
                               "restarted c"}));
  EXPECT_EQ(p->alive, 3);
  EXPECT_EQ(p->handles["a"], before["a"]);
  EXPECT_NE(p->handles["b"], before["b"]);
  EXPECT_NE(p->handles["c"], before["c"]);
}

TEST_F(supervisor_fixture, exceeding_the_intensity_stops_every_child_and_escalates) {
  start(strategy::one_for_one, 1, 60000);
  crash("a");
  p->events.clear();
  crash("a");
  EXPECT_EQ(p->events, events({"stopped a crashed given_up", "stopped b sibling given_up",
                               "stopped c sibling given_up", "escalated a"}));
  EXPECT_EQ(p->alive, 0);
  // An operator restart brings every child back with a fresh budget.
  p->events.clear();
  caf::anon_send(sup, again_atom::value);
  sched.run();
  EXPECT_EQ(p->alive, 3);
  EXPECT_EQ(p->events, events({"restarted a", "restarted b", "restarted c"}));
  p->events.clear();
  crash("c");
  EXPECT_EQ(p->events, events({"stopped c crashed restarting", "restarted c"}));
}

TEST_F(supervisor_fixture, crashes_further_apart_than_the_window_never_escalate) {
  start(strategy::one_for_one, 1, 1000);
  for (int i = 0; i < 5; ++i) {
    crash("a");
    sched.advance_time(std::chrono::milliseconds(1000));  // the actor clock: virtual time
  }
  EXPECT_EQ(std::count(p->events.begin(), p->events.end(), "restarted a"), 5);
  EXPECT_EQ(std::count(p->events.begin(), p->events.end(), "escalated a"), 0);
  // Two crashes inside one window do escalate.
  crash("a");
  sched.advance_time(std::chrono::milliseconds(999));
  crash("a");
  EXPECT_EQ(p->events.back(), "escalated a");
}

TEST_F(supervisor_fixture, a_transient_child_that_finishes_is_not_restarted) {
  start(strategy::one_for_all, 5, 1000, restart_mode::transient);
  caf::anon_send(sup, finish_atom::value, std::string("b"));
  sched.run();
  EXPECT_TRUE(p->events.empty());
  EXPECT_EQ(p->alive, 2);
  // A crash of a transient child is still restarted (and its siblings, by the strategy).
  crash("a");
  EXPECT_EQ(p->events, events({"stopped a crashed restarting", "stopped c sibling restarting", "restarted a",
                               "restarted c"}));
}

TEST_F(supervisor_fixture, a_released_child_ends_without_any_hook_or_restart) {
  start(strategy::one_for_one, 5, 1000);
  caf::anon_send(sup, release_atom::value, std::string("a"));
  sched.run();
  EXPECT_TRUE(p->events.empty());
  EXPECT_EQ(p->alive, 2);
  EXPECT_EQ(p->started, 3);
}

}  // namespace
}  // namespace troupe::actors::supervision
