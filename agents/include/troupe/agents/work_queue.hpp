#pragma once
/// The dispatcher's priority queue: ten FIFO levels (priority 0-9) with aging.
///
/// Aging rule: an item's effective priority is its priority plus one level per
/// `aging_ms` it has waited, capped at 9. Among items of equal effective priority
/// the one enqueued first wins, so a low-priority item that has waited long enough
/// ties with urgent work and then goes first by age: nothing starves forever.
/// Within a level the front item is the oldest, so comparing the ten fronts finds
/// the best item in O(10).
#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <optional>

namespace troupe::agents {

/// Ordering key of a queue's best item: higher effective priority first, then lower seq.
struct queue_key {
  int effective = -1;
  std::uint64_t seq = 0;
  int level = -1;
  bool better_than(const queue_key& o) const noexcept {
    if (level < 0) return false;
    if (o.level < 0) return true;
    return effective != o.effective ? effective > o.effective : seq < o.seq;
  }
};

template <class T>
class work_queue {
 public:
  struct item {
    T value;
    std::int64_t enqueued_ms;
    std::uint64_t seq;
  };

  /// Adds an item; a level stays ordered by seq, so an item that continues older
  /// work (a later step of an earlier task) takes its place ahead of newer ones.
  void push(int priority, std::int64_t enqueued_ms, std::uint64_t seq, T value) {
    auto& q = levels_[clamp(priority)];
    if (q.empty() || q.back().seq <= seq) {
      q.push_back(item{std::move(value), enqueued_ms, seq});
    } else {
      auto pos = std::upper_bound(q.begin(), q.end(), seq,
                                  [](std::uint64_t s, const item& it) { return s < it.seq; });
      q.insert(pos, item{std::move(value), enqueued_ms, seq});
    }
    ++size_;
  }

  queue_key best(std::int64_t now_ms, std::int64_t aging_ms) const noexcept {
    queue_key key;
    for (int level = 9; level >= 0; --level) {
      const auto& q = levels_[static_cast<std::size_t>(level)];
      if (q.empty()) continue;
      const auto& front = q.front();
      auto waited = now_ms - front.enqueued_ms;
      int eff = level + static_cast<int>(aging_ms > 0 && waited > 0 ? waited / aging_ms : 0);
      if (eff > 9) eff = 9;
      queue_key k{eff, front.seq, level};
      if (k.better_than(key)) key = k;
    }
    return key;
  }

  item pop(int level) {
    auto& q = levels_[static_cast<std::size_t>(level)];
    item it = std::move(q.front());
    q.pop_front();
    --size_;
    return it;
  }

  /// Removes every item for which pred(value) is true; returns how many.
  template <class Pred>
  std::size_t remove_if(Pred pred) {
    std::size_t removed = 0;
    for (auto& q : levels_) {
      for (auto it = q.begin(); it != q.end();) {
        if (pred(it->value)) {
          it = q.erase(it);
          ++removed;
        } else {
          ++it;
        }
      }
    }
    size_ -= removed;
    return removed;
  }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  /// Items per priority level, for status and metrics.
  std::array<std::size_t, 10> depths() const {
    std::array<std::size_t, 10> out{};
    for (std::size_t i = 0; i < 10; ++i) out[i] = levels_[i].size();
    return out;
  }

 private:
  static std::size_t clamp(int p) noexcept { return static_cast<std::size_t>(p < 0 ? 0 : p > 9 ? 9 : p); }
  std::array<std::deque<item>, 10> levels_;
  std::size_t size_ = 0;
};

}  // namespace troupe::agents
