#pragma once
// The shared event log of the control server: every event that some session
// may want is serialised once and appended here; each WebSocket session reads
// it through its own cursor. Publishing costs one short lock and no work per
// subscriber; reading takes no lock at all, so fan-out to a thousand sessions
// is a walk over shared, immutable entries instead of a thousand queue pushes.
//
// Entries live in chunks of `chunk_size`. A chunk is filled once and never
// changed, except that its `count` grows; readers see an entry once `count`
// (acquire) covers it. Each chunk owns the next one, so a cursor keeps alive
// exactly the entries from its position to the head: old chunks go away by
// themselves once every cursor moved past them. Sessions bound how far they
// may lag (session_outbox::spill), so a stalled client cannot pin the log.
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "troupe/protocols/control/ws_protocol.hpp"

namespace troupe::protocols::control {

class event_log {
 public:
  static constexpr std::uint32_t chunk_size = 256;

  struct chunk {
    explicit chunk(std::uint64_t b) : base(b) {}
    ~chunk();  // unlinks the chain iteratively (no deep recursion)
    chunk(const chunk&) = delete;
    chunk& operator=(const chunk&) = delete;

    const std::uint64_t base;  ///< log position of items[0]
    std::array<std::shared_ptr<const prepared_event>, chunk_size> items;
    std::atomic<std::uint32_t> count{0};
    std::atomic<chunk*> next{nullptr};  ///< set (release) once next_owner is
    std::shared_ptr<chunk> next_owner;
  };

  /// A reading position. Owned by one reader (not thread-safe itself).
  class cursor {
   public:
    cursor() = default;
    /// Log position of the next entry this cursor reads.
    std::uint64_t position() const { return at_ ? at_->base + index_ : 0; }
    /// The next entry, or nullptr when the cursor is at the head. Does not
    /// move; the entry stays valid until the next call on this cursor.
    const std::shared_ptr<const prepared_event>* peek();
    /// Moves past the entry peek() returned.
    void advance() { ++index_; }

   private:
    friend class event_log;
    std::shared_ptr<chunk> at_;
    std::uint32_t index_ = 0;
  };

  event_log();

  /// Any thread: appends one event and returns its position (entries are
  /// numbered 0, 1, ... in append order).
  std::uint64_t append(std::shared_ptr<const prepared_event> ev);
  /// Any thread: entries appended so far (the head position).
  std::uint64_t head() const { return head_.load(); }
  /// Any thread: a cursor at the current head.
  cursor tail() const;
  /// True when this append started a new chunk (a good moment for housekeeping).
  static bool starts_chunk(std::uint64_t position) { return position % chunk_size == 0; }

 private:
  mutable std::mutex mu_;  // writers, and readers taking a tail cursor
  std::shared_ptr<chunk> tail_;
  std::atomic<std::uint64_t> head_{0};
};

}  // namespace troupe::protocols::control
