// The event bus: delivery, and the guarantee that dropping a listener's token
// waits for its calls in progress (so the listener's captures may then die).
#include <condition_variable>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "troupe/agents/event.hpp"

namespace troupe::agents {
namespace {

TEST(event_bus, delivers_to_every_listener_until_its_token_is_dropped) {
  event_bus bus;
  int a = 0, b = 0;
  auto ta = bus.subscribe([&](const event_ptr&) { ++a; });
  auto tb = bus.subscribe([&](const event_ptr&) { ++b; });
  EXPECT_TRUE(bus.active());
  bus.publish(make_event("x", "system", "", "", ""));
  ta.reset();
  bus.publish(make_event("x", "system", "", "", ""));
  tb.reset();
  EXPECT_FALSE(bus.active());
  bus.publish(make_event("x", "system", "", "", ""));
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 2);
  EXPECT_EQ(bus.published(), 3u);
}

TEST(event_bus, dropping_a_token_waits_for_a_call_in_progress) {
  event_bus bus;
  std::mutex m;
  std::condition_variable cv;
  bool entered = false, release = false, finished = false, reset_returned = false;
  auto token = bus.subscribe([&](const event_ptr&) {
    std::unique_lock lock{m};
    entered = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
    finished = true;
  });
  std::thread publisher([&] { bus.publish(make_event("x", "system", "", "", "")); });
  {
    std::unique_lock lock{m};
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return entered; }));
  }
  bool finished_when_reset_returned = false;
  std::thread dropper([&] {
    token.reset();
    std::lock_guard guard{m};
    finished_when_reset_returned = finished;
    reset_returned = true;
    cv.notify_all();
  });
  {
    // The drop must not return while the listener is still inside its call; give
    // it a bounded chance to (wrongly) return before releasing the listener.
    std::unique_lock lock{m};
    EXPECT_FALSE(cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return reset_returned; }));
    release = true;
    cv.notify_all();
  }
  publisher.join();
  dropper.join();
  EXPECT_TRUE(finished_when_reset_returned);
}

TEST(event_bus, a_listener_may_drop_its_own_token_from_inside_its_call) {
  event_bus bus;
  int calls = 0;
  std::shared_ptr<void> token;
  token = bus.subscribe([&](const event_ptr&) {
    ++calls;
    token.reset();
  });
  bus.publish(make_event("x", "system", "", "", ""));
  bus.publish(make_event("x", "system", "", "", ""));
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(bus.active());
}

}  // namespace
}  // namespace troupe::agents
