#include <gtest/gtest.h>

#include "troupe/agents/work_queue.hpp"

namespace troupe::agents {
namespace {

std::vector<int> drain(work_queue<int>& q, std::int64_t now, std::int64_t aging) {
  std::vector<int> out;
  while (!q.empty()) out.push_back(q.pop(q.best(now, aging).level).value);
  return out;
}

TEST(work_queue, higher_priority_first_fifo_within_priority) {
  work_queue<int> q;
  std::uint64_t seq = 0;
  q.push(2, 0, ++seq, 1);
  q.push(5, 0, ++seq, 2);
  q.push(2, 0, ++seq, 3);
  q.push(9, 0, ++seq, 4);
  q.push(5, 0, ++seq, 5);
  EXPECT_EQ(drain(q, 0, 10000), (std::vector<int>{4, 2, 5, 1, 3}));
}

TEST(work_queue, aging_lifts_old_low_priority_work) {
  work_queue<int> q;
  q.push(2, 0, 1, 1);         // low, enqueued at t=0
  q.push(5, 60000, 2, 2);     // normal, enqueued at t=60s
  // At t=60s the low item has waited 60 s = 6 aging steps: 2 + 6 = 8 > 5.
  EXPECT_EQ(drain(q, 60000, 10000), (std::vector<int>{1, 2}));
  q.push(2, 0, 3, 3);
  q.push(5, 0, 4, 4);
  EXPECT_EQ(drain(q, 0, 10000), (std::vector<int>{4, 3}));
}

TEST(work_queue, aged_work_ties_urgent_and_wins_by_age) {
  work_queue<int> q;
  q.push(0, 0, 1, 1);
  q.push(9, 200000, 2, 2);
  // Capped at 9, the old item ties the urgent one and goes first by its earlier seq.
  EXPECT_EQ(drain(q, 200000, 10000), (std::vector<int>{1, 2}));
}

TEST(work_queue, continuing_work_keeps_its_place_in_line) {
  work_queue<int> q;
  q.push(5, 0, 10, 10);
  q.push(5, 0, 11, 11);
  q.push(5, 0, 3, 3);  // a later step of task #3 goes ahead of newer tasks
  EXPECT_EQ(drain(q, 0, 10000), (std::vector<int>{3, 10, 11}));
}

TEST(work_queue, remove_if_and_depths) {
  work_queue<int> q;
  for (int i = 0; i < 10; ++i) q.push(i % 3, 0, static_cast<std::uint64_t>(i), i);
  EXPECT_EQ(q.remove_if([](int v) { return v % 2 == 0; }), 5u);
  EXPECT_EQ(q.size(), 5u);
  auto d = q.depths();
  EXPECT_EQ(d[0] + d[1] + d[2], 5u);
}

}  // namespace
}  // namespace troupe::agents
