// The event fan-out without sockets: the shared event log and one session's
// outbox (order, seq, batching, filters, the queue bound and stream.gap).
#include <gtest/gtest.h>

#include "event_log.hpp"
#include "session_outbox.hpp"

namespace troupe::protocols::control {
namespace {

using nlohmann::json;

std::shared_ptr<const prepared_event> make(int n, const std::string& task = "t1",
                                           const std::string& topic = "tasks") {
  auto ev = std::make_shared<event>();
  ev->name = topic == "tasks" ? "task.update" : "agent.status";
  ev->topic = topic;
  ev->task = task;
  ev->ts_ms = 1;
  ev->data = json{{"n", n}, {"task", task}};
  return prepare_event(std::move(ev));
}

subscription_filter filter(bool batch = false, const std::string& task = {}) {
  subscription_filter f;
  f.topics = {"tasks"};
  f.task = task;
  f.batch = batch;
  return f;
}

// Reads every frame the outbox has now, flattening batches into events.
std::vector<json> drain(session_outbox& out) {
  std::vector<json> events;
  std::string frame;
  while (out.next_frame(frame, 1)) {
    auto doc = json::parse(frame);
    if (doc.contains("events"))
      for (auto& e : doc["events"]) events.push_back(e);
    else
      events.push_back(doc);
  }
  return events;
}

// Subscribes and takes the snapshot frame, so what follows is live events.
void subscribe_past_snapshot(session_outbox& out, const subscription_filter& f) {
  out.subscribe(f);
  out.add_snapshot(json::object());
  std::string frame;
  ASSERT_TRUE(out.next_frame(frame, 1));
}

TEST(event_log, cursors_read_every_entry_in_order_across_chunks) {
  event_log log;
  auto c = log.tail();
  const int total = static_cast<int>(event_log::chunk_size) * 3 + 5;
  for (int n = 0; n < total; ++n) EXPECT_EQ(log.append(make(n)), static_cast<std::uint64_t>(n));
  EXPECT_EQ(log.head(), static_cast<std::uint64_t>(total));
  for (int n = 0; n < total; ++n) {
    auto* e = c.peek();
    ASSERT_NE(e, nullptr) << n;
    EXPECT_EQ((*e)->source->data["n"], n);
    EXPECT_EQ(c.position(), static_cast<std::uint64_t>(n));
    c.advance();
  }
  EXPECT_EQ(c.peek(), nullptr);
  auto late = log.tail();  // a new cursor starts at the head
  EXPECT_EQ(late.position(), static_cast<std::uint64_t>(total));
  EXPECT_EQ(late.peek(), nullptr);
  log.append(make(total));
  ASSERT_NE(late.peek(), nullptr);
  EXPECT_EQ((*late.peek())->source->data["n"], total);
}

TEST(event_log, entries_are_freed_once_every_cursor_moved_past_their_chunk) {
  event_log log;
  auto c = log.tail();
  auto first = make(0);
  std::weak_ptr<const prepared_event> watch = first;
  log.append(std::move(first));
  for (int n = 1; n < static_cast<int>(event_log::chunk_size) * 2; ++n) log.append(make(n));
  EXPECT_FALSE(watch.expired());  // the cursor still stands on the first chunk
  while (c.peek() != nullptr) c.advance();
  EXPECT_TRUE(watch.expired());
}

TEST(session_outbox, reply_then_snapshot_then_events_with_consecutive_seq) {
  event_log log;
  session_outbox out(log, 100, 64 * 1024);
  log.append(make(-1));  // before the subscription: not delivered
  const auto id = out.subscribe(filter());
  EXPECT_EQ(id, 1u);
  out.add_reply(R"({"id":1,"ok":true,"result":{"subscription":1}})");
  for (int n = 0; n < 3; ++n) log.append(make(n));
  std::string frame;
  ASSERT_TRUE(out.next_frame(frame, 1));
  EXPECT_EQ(json::parse(frame)["id"], 1);
  EXPECT_FALSE(out.next_frame(frame, 1));  // events wait for the snapshot
  EXPECT_FALSE(out.ready());
  out.add_snapshot(json{{"subscription", 1}});
  EXPECT_TRUE(out.ready());
  auto events = drain(out);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0]["event"], "snapshot");
  for (std::size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i]["seq"], i + 1);
  EXPECT_EQ(events[1]["data"]["n"], 0);
  EXPECT_EQ(events[3]["data"]["n"], 2);
}

TEST(session_outbox, batched_frames_carry_many_events_and_respect_the_size_limit) {
  event_log log;
  session_outbox out(log, 10000, 2048);
  out.subscribe(filter(true));
  out.add_snapshot(json::object());
  for (int n = 0; n < 100; ++n) log.append(make(n));
  std::string frame;
  ASSERT_TRUE(out.next_frame(frame, 1));
  auto snap = json::parse(frame);
  ASSERT_EQ(snap["events"].size(), 1u);
  EXPECT_EQ(snap["events"][0]["event"], "snapshot");
  std::uint64_t seq = 1;
  int n = 0, frames = 0;
  while (out.next_frame(frame, 1)) {
    ++frames;
    EXPECT_LT(frame.size(), 2048u + 512u);  // stops growing past the limit
    auto doc = json::parse(frame);
    ASSERT_GT(doc["events"].size(), 1u);
    for (auto& e : doc["events"]) {
      EXPECT_EQ(e["seq"], ++seq);
      EXPECT_EQ(e["data"]["n"], n++);
    }
  }
  EXPECT_EQ(n, 100);
  EXPECT_GT(frames, 1);
  EXPECT_LT(frames, 50);
}

TEST(session_outbox, filters_skip_other_tasks_and_unsubscribe_lets_go_of_the_log) {
  event_log log;
  session_outbox out(log, 100, 64 * 1024);
  const auto id = out.subscribe(filter(false, "t2"));
  out.add_snapshot(json::object());
  for (int n = 0; n < 10; ++n) log.append(make(n, n % 2 ? "t2" : "t1"));
  auto events = drain(out);
  ASSERT_EQ(events.size(), 6u);  // snapshot + 5 of t2
  for (std::size_t i = 1; i < events.size(); ++i) EXPECT_EQ(events[i]["data"]["task"], "t2");
  log.append(make(99, "t1"));
  EXPECT_FALSE(out.ready());  // nothing wanted; the cursor moved past it
  EXPECT_EQ(out.behind(log.head()), 0u);
  EXPECT_TRUE(out.unsubscribe(id));
  EXPECT_FALSE(out.unsubscribe(id));
  for (int n = 0; n < 10; ++n) log.append(make(n, "t2"));
  EXPECT_EQ(out.behind(log.head()), 0u);
  EXPECT_TRUE(drain(out).empty());
}

TEST(session_outbox, a_slow_session_drops_the_oldest_beyond_its_bound_and_reports_a_gap) {
  event_log log;
  session_outbox out(log, 8, 64 * 1024);
  out.subscribe(filter());
  out.add_snapshot(json::object());
  for (int n = 0; n < 20; ++n) log.append(make(n));
  auto events = drain(out);
  ASSERT_EQ(events.size(), 1u + 1u + 8u);  // snapshot, gap, the newest 8
  EXPECT_EQ(events[1]["event"], "stream.gap");
  EXPECT_EQ(events[1]["data"]["dropped"], 12);
  EXPECT_EQ(events[2]["data"]["n"], 12);
  EXPECT_EQ(events.back()["data"]["n"], 19);
  for (std::size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i]["seq"], i + 1);
  EXPECT_EQ(out.take_drops(), 12u);
  EXPECT_EQ(out.take_drops(), 0u);
}

TEST(session_outbox, the_bound_counts_wanted_events_not_the_whole_log) {
  event_log log;
  session_outbox out(log, 4, 64 * 1024);
  subscribe_past_snapshot(out, filter(false, "mine"));
  // A stalled session: many events of other tasks, two of its own.
  for (int n = 0; n < 50; ++n) log.append(make(n, n == 10 || n == 40 ? "mine" : "other"));
  out.spill();  // what the server's housekeeping does for a stalled client
  EXPECT_EQ(out.take_drops(), 0u);
  EXPECT_EQ(out.behind(log.head()), 0u);  // its two events were copied out; the log is free
  auto events = drain(out);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["data"]["n"], 10);
  EXPECT_EQ(events[1]["data"]["n"], 40);
}

TEST(session_outbox, repeated_bound_checks_count_each_wanted_event_once) {
  event_log log;
  session_outbox out(log, 8, 64 * 1024);
  subscribe_past_snapshot(out, filter(false, "mine"));
  // A stalled session checked after every burst (as the housekeeping pass
  // does): 5 bursts of 6 events, 4 of them its own, so 20 wanted for a bound of 8.
  int n = 0;
  for (int burst = 0; burst < 5; ++burst) {
    for (int k = 0; k < 6; ++k, ++n) log.append(make(n, k < 4 ? "mine" : "other"));
    out.spill();
  }
  EXPECT_EQ(out.take_drops(), 12u);
  auto events = drain(out);
  ASSERT_EQ(events.size(), 1u + 8u);  // the gap, then the newest 8 of its own
  EXPECT_EQ(events[0]["event"], "stream.gap");
  EXPECT_EQ(events[0]["data"]["dropped"], 12);
  EXPECT_EQ(events[1]["data"]["n"], 18);  // burst 3 (n 18..23): its first 4 are wanted
  EXPECT_EQ(events.back()["data"]["n"], 27);
  for (const auto& e : std::vector<json>(events.begin() + 1, events.end())) EXPECT_EQ(e["data"]["task"], "mine");
}

TEST(session_outbox, a_session_that_caught_up_after_lagging_lets_the_log_go) {
  event_log log;
  session_outbox out(log, 8, 64 * 1024);
  out.subscribe(filter());
  out.add_snapshot(json::object());
  for (int n = 0; n < 20; ++n) log.append(make(n));
  out.spill();  // counts ahead of the cursor
  ASSERT_EQ(drain(out).size(), 1u + 1u + 8u);
  // An event read after the lag; once the session moved chunks past it,
  // nothing may still hold it (a stale count position would pin its chunk).
  auto ev = make(100);
  std::weak_ptr<const prepared_event> weak = ev;
  log.append(std::move(ev));
  EXPECT_EQ(drain(out).size(), 1u);
  for (int n = 0; n < static_cast<int>(event_log::chunk_size) * 2; ++n) {
    log.append(make(n));
    drain(out);
  }
  EXPECT_TRUE(weak.expired());
}

}  // namespace
}  // namespace troupe::protocols::control
