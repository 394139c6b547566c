// The daemon's scheduler: CAF's work-stealing coordinator whose clock forwards an
// ending actor's "cancel my timeouts" only if the actor ever set one. Timers of
// every kind must still fire; the cancels of timer-less actors never reach the
// clock thread.
#include <caf/all.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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

/// Ends at its first ping.
caf::behavior quits_on_ping(caf::event_based_actor* a, int) {
  return {[a](ping_atom) { a->quit(); }};
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

  /// Waits (10 s at most) until every worker sleeps on its condition variable.
  void await_all_asleep() {
    auto* coordinator = dynamic_cast<lean_coordinator*>(&sys.scheduler());
    ASSERT_NE(coordinator, nullptr);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (coordinator->sleeping_workers() < 2 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    ASSERT_EQ(coordinator->sleeping_workers(), 2u);
  }

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
    auto quick = sys.spawn(quits_on_ping, 0);
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

using go_atom = caf::atom_constant<caf::atom("go")>;

/// Blocks its worker on a ping until `started` counts both of them (10 s at most);
/// counts in `met` if it saw its twin start in time.
caf::behavior waits_for_its_twin(caf::event_based_actor*, std::atomic<int>* started, std::atomic<int>* met) {
  return {[started, met](ping_atom) {
    started->fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (started->load() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    if (started->load() >= 2) met->fetch_add(1);
  }};
}

TEST_F(lean_fixture, a_job_queued_behind_a_busy_worker_is_taken_by_the_one_that_slept) {
  // Both pings are queued on the worker that runs `sender`; the first blocks that
  // worker until the second runs, which only the other worker can do, and it starts
  // asleep (both are, before `go`): it must wake by itself and steal. Without that,
  // both wait out their deadline.
  std::atomic<int> started{0};
  std::atomic<int> met{0};
  auto a = sys.spawn(waits_for_its_twin, &started, &met);
  auto b = sys.spawn(waits_for_its_twin, &started, &met);
  auto sender = sys.spawn(
      [](caf::event_based_actor* self, caf::actor x, caf::actor y) -> caf::behavior {
        return {[=](go_atom) {
          self->send(x, ping_atom::value);
          self->send(y, ping_atom::value);
        }};
      },
      a, b);
  caf::scoped_actor self{sys};
  ASSERT_NO_FATAL_FAILURE(await_all_asleep());
  self->send(sender, go_atom::value);
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (met.load() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_EQ(met.load(), 2);
  for (const auto& x : {a, b, sender}) caf::anon_send_exit(x, caf::exit_reason::user_shutdown);
}

/// A loop of posted functions that checks how the workers drive it: posted
/// functions run only in a poll while the loop is taken (it has no thread of its own).
class test_loop final : public base::io_driver {
 public:
  bool take() override {
    std::lock_guard lock(mu_);
    if (!taken_) ++takes_;  // taking a taken loop is nothing, as with a real one
    taken_ = true;
    return true;
  }
  bool poll() override {
    if (polling_.exchange(true)) return false;  // one caller at a time, as a real loop
    std::vector<std::function<void()>> ready;
    {
      std::lock_guard lock(mu_);
      if (!taken_) {  // as a real loop: its own thread runs it
        polling_.store(false);
        return false;
      }
      ++polls_;
      ready.swap(posted_);
    }
    for (auto& f : ready) f();
    polling_.store(false);
    return true;
  }
  void give_back() override {
    std::lock_guard lock(mu_);
    if (taken_) ++give_backs_;
    taken_ = false;
    cv_.notify_all();
  }
  void post(std::function<void()> f) {
    std::lock_guard lock(mu_);
    posted_.push_back(std::move(f));
  }
  /// Waits (10 s at most) until the loop was given back after `n` takes.
  bool await_given_back(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 10s, [&] { return !taken_ && takes_ >= n && give_backs_ >= n; });
  }
  int polls() {
    std::lock_guard lock(mu_);
    return polls_;
  }
  int takes() {
    std::lock_guard lock(mu_);
    return takes_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool taken_ = false;
  int takes_ = 0, give_backs_ = 0, polls_ = 0;
  std::vector<std::function<void()>> posted_;
  std::atomic<bool> polling_{false};
};

TEST_F(lean_fixture, the_idle_worker_drives_a_loop_it_took_and_gives_it_back_when_idle) {
  auto loop = std::make_shared<test_loop>();
  auto* coordinator = dynamic_cast<lean_coordinator*>(&sys.scheduler());
  ASSERT_NE(coordinator, nullptr);
  coordinator->drive(loop);
  caf::scoped_actor self{sys};
  auto me = caf::actor_cast<caf::actor>(self);
  // Work wakes a worker; running dry, it takes the loop and polls it: what was posted
  // to the loop reaches an actor through a worker's poll, not through any thread of
  // the loop's own.
  for (int round = 1; round <= 3; ++round) {
    loop->post([me, round] { caf::anon_send(me, fired_atom::value, std::to_string(round)); });
    std::string got;
    for (int tries = 0; tries < 10 && got.empty(); ++tries) {  // a busy box may outlast one window
      auto echo = sys.spawn(quits_on_ping, 0);
      self->send(echo, ping_atom::value);
      await_down(self, echo);
      self->receive([&](fired_atom, std::string& what) { got = what; }, caf::after(1s) >> [] {});
    }
    EXPECT_EQ(got, std::to_string(round));
    // Idle for the polling window: given back.
    ASSERT_TRUE(loop->await_given_back(round)) << "round " << round;
  }
  // The last window found nothing, so the next is short (CAF's default here is 500
  // polls): from all asleep, one job (the ping) wakes one worker, whose window finds
  // nothing else.
  auto echo = sys.spawn(quits_on_ping, 0);
  ASSERT_NO_FATAL_FAILURE(await_all_asleep());
  const int polls_before = loop->polls();
  const int takes_before = loop->takes();
  self->send(echo, ping_atom::value);
  await_down(self, echo);
  ASSERT_TRUE(loop->await_given_back(takes_before + 1));
  EXPECT_GT(loop->polls(), polls_before);
  // (A second short window may come from the other worker's 10 ms wait running out
  // while the first one works; a whole one would be hundreds of polls.)
  EXPECT_LE(loop->polls() - polls_before, 3 * static_cast<int>(lean_work_stealing::short_window));
  EXPECT_GT(loop->polls(), 0);
}

}  // namespace
}  // namespace troupe::host
