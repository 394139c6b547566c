// The daemon's scheduler: CAF's work-stealing coordinator whose clock forwards an
// ending actor's "cancel my timeouts" only if the actor ever set one. Timers of
// every kind must still fire; the cancels of timer-less actors never reach the
// clock thread.
#include <caf/all.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "troupe/host/lean_coordinator.hpp"

namespace troupe::host {
namespace {

using namespace std::chrono_literals;
using ping_atom = caf::atom_constant<caf::atom("ping")>;
using fired_atom = caf::atom_constant<caf::atom("fired")>;

/// Never answers a ping. (Every spawned function here takes an argument: with none,
/// CAF 0.17 dereferences a null argument tuple, which UBSan reports.)
caf::behavior silent_actor(caf::event_based_actor*, int) {
  return {[](ping_atom) -> caf::skip_t { return caf::skip(); }};
}

struct lean_config : caf::actor_system_config {
  lean_config() {
    set("scheduler.max-threads", 2);
    load<lean_coordinator>();
  }
};

struct lean_fixture : ::testing::Test {
  lean_config cfg;
  caf::actor_system sys{cfg};
  timeout_tracking_clock& clock = dynamic_cast<timeout_tracking_clock&>(sys.clock());

  /// Waits (10 s at most) for the down message of `who`.
  void await_down(caf::scoped_actor& self, const caf::actor& who) {
    self->monitor(who);
    bool down = false;
    self->receive([&](caf::down_msg& dm) { down = dm.source == who; }, caf::after(10s) >> [] {});
    ASSERT_TRUE(down);
  }
};

TEST_F(lean_fixture, receive_timeouts_delayed_messages_and_request_timeouts_still_fire) {
  caf::scoped_actor self{sys};
  auto me = caf::actor_cast<caf::actor>(self);
  // A receive timeout.
  sys.spawn(
      [](caf::event_based_actor* a, caf::actor to) -> caf::behavior {
        return {caf::after(1ms) >> [a, to] {
          a->send(to, fired_atom::value, std::string("after"));
          a->quit();
        }};
      },
      me);
  // A delayed message.
  sys.spawn(
      [](caf::event_based_actor* a, caf::actor to) -> caf::behavior {
        a->delayed_send(a, 1ms, ping_atom::value);
        return {[a, to](ping_atom) {
          a->send(to, fired_atom::value, std::string("delayed"));
          a->quit();
        }};
      },
      me);
  std::string got1, got2;
  self->receive([&](fired_atom, std::string& what) { got1 = what; }, caf::after(10s) >> [] {});
  self->receive([&](fired_atom, std::string& what) { got2 = what; }, caf::after(10s) >> [] {});
  EXPECT_TRUE((got1 == "after" && got2 == "delayed") || (got1 == "delayed" && got2 == "after")) << got1 << " " << got2;
  // A request timeout against an actor that never answers.
  auto silent = sys.spawn(silent_actor, 0);
  bool timed_out = false;
  self->request(silent, 5ms, ping_atom::value)
      .receive([](caf::message&) {}, [&](caf::error& err) { timed_out = err == caf::sec::request_timeout; });
  EXPECT_TRUE(timed_out);
  caf::anon_send_exit(silent, caf::exit_reason::user_shutdown);
}

TEST_F(lean_fixture, only_an_actor_that_set_a_timeout_cancels_it_at_the_clock_when_it_ends) {
  caf::scoped_actor self{sys};
  const auto before = clock.forwarded_cancels();
  for (int i = 0; i < 20; ++i) {
    auto quick = sys.spawn([](caf::event_based_actor* a, int) -> caf::behavior { return {[a](ping_atom) { a->quit(); }}; },
                           0);
    self->send(quick, ping_atom::value);
    await_down(self, quick);
  }
  // One with a receive timeout far away: its end must cancel it at the clock. An
  // actor cancels its timeouts after its down message went out, so the count is
  // awaited; had the quick ones forwarded theirs, they would be counted by then.
  auto waiting = sys.spawn(
      [](caf::event_based_actor* a, int) -> caf::behavior {
        return {[a](ping_atom) { a->quit(); }, caf::after(std::chrono::seconds(3600)) >> [] {}};
      },
      0);
  self->send(waiting, ping_atom::value);
  await_down(self, waiting);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (clock.forwarded_cancels() == before && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  EXPECT_EQ(clock.forwarded_cancels(), before + 1);
}

}  // namespace
}  // namespace troupe::host
