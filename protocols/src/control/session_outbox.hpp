#pragma once
// The outgoing side of one WebSocket session, without sockets: replies,
// snapshots, the stream.gap notice and the events of its subscriptions, read
// from the shared event_log and rendered into the next frame to write.
//
// Events are not copied per session: the outbox keeps a cursor into the log
// and renders straight from the shared entries (splicing in its own seq). Only
// a session that falls behind by more than its queue bound moves the events it
// wants into a private queue of at most that many, dropping the oldest and
// reporting them with stream.gap; so the bound and the gap semantics are those
// of a per-session queue, and a stalled client pins no more than that.
//
// Not thread-safe: the session guards it with its lock. behind() alone may be
// called without the lock (an estimate for housekeeping).
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "event_log.hpp"
#include "troupe/protocols/control/ws_protocol.hpp"

namespace troupe::protocols::control {

class session_outbox {
 public:
  /// `queue_cap`: events this session may have pending before the oldest are
  /// dropped. `batch_bytes`: a batched frame stops growing past this size.
  session_outbox(event_log& log, std::size_t queue_cap, std::size_t batch_bytes);

  /// Adds a subscription: it sees events appended from now on, after its
  /// snapshot (add_snapshot) went out. Returns its number (1, 2, ...).
  std::uint64_t subscribe(const subscription_filter& f);
  /// False when there is no such subscription.
  bool unsubscribe(std::uint64_t id);
  bool subscribed() const { return !subs_.empty(); }
  bool batched() const { return batched_; }
  /// Replies or snapshots are waiting (they never wait for a wake pass).
  bool urgent() const { return !replies_.empty() || !snapshots_.empty(); }

  void add_reply(std::string frame) { replies_.push_back(std::move(frame)); }
  std::size_t queued_replies() const { return replies_.size(); }
  /// The snapshot of the oldest subscription still waiting for one.
  void add_snapshot(nlohmann::json data);

  /// Renders the next frame into `out` (replies first, then snapshots, then the
  /// gap notice and events); false when there is nothing to send.
  bool next_frame(std::string& out, std::int64_t now_ms);
  /// True when next_frame() would produce a frame. Moves past log entries that
  /// no subscription here wants.
  bool ready();
  /// Applies the queue bound now: drops the oldest events beyond it and, when
  /// the events still pending are spread over too much of the log (a filter
  /// that wants few of many), copies them out so the log can move on.
  void spill();
  /// Log entries between this session's cursor and `head` (0 when not
  /// subscribed). Lock-free; for deciding whether spill() is worth a lock.
  std::uint64_t behind(std::uint64_t head) const;
  /// Events dropped since the last call (for the server's counter).
  std::uint64_t take_drops();
  /// Forgets everything (connection closed).
  void clear();

 private:
  struct sub {
    std::uint64_t id;
    std::uint64_t from;  ///< first log position this subscription may see
    std::uint8_t mask;   ///< topic bits
    bool any_source;     ///< no team/agent/task filter: the topic decides
    subscription_filter filter;
  };
  bool wants(const prepared_event& ev, std::uint64_t position) const;
  const prepared_event* next_event();
  void publish_position();
  /// Moves past one log entry, keeping the scan count right.
  void step(bool wanted);
  /// Forgets the scan count (the filters changed or the cursor jumped).
  void reset_scan();

  event_log& log_;
  const std::size_t cap_;
  const std::size_t batch_bytes_;
  std::deque<std::string> replies_;
  std::deque<nlohmann::json> snapshots_;
  int pending_snapshots_ = 0;
  std::vector<sub> subs_;
  std::uint64_t next_sub_ = 1;
  bool batched_ = false;
  event_log::cursor cursor_;
  // What spill() learned about the log ahead of the cursor: `scan_` is at
  // scan_pos_ and [cursor, scan_pos_) holds scan_wanted_ wanted entries. A
  // session behind its bound thus examines each log entry once for the bound,
  // not once per frame (which made a lagging session slower still).
  event_log::cursor scan_;
  std::uint64_t scan_pos_ = 0;
  std::uint64_t scan_wanted_ = 0;
  std::deque<std::shared_ptr<const prepared_event>> held_;  ///< spilled, oldest first
  std::shared_ptr<const prepared_event> current_;  ///< keeps the held event being rendered
  std::uint64_t gap_ = 0;    ///< dropped, not yet told to the client
  std::uint64_t drops_ = 0;  ///< dropped, not yet counted by the server
  std::uint64_t seq_ = 0;
  std::atomic<std::uint64_t> position_{0};
  std::atomic<bool> subscribed_{false};
};

}  // namespace troupe::protocols::control
