#include "session_outbox.hpp"

#include <algorithm>

namespace troupe::protocols::control {

namespace {
constexpr std::string_view batch_open = R"({"events":[)";
constexpr std::string_view batch_close = "]}";
}  // namespace

session_outbox::session_outbox(event_log& log, std::size_t queue_cap, std::size_t batch_bytes)
    : log_(log), cap_(std::max<std::size_t>(1, queue_cap)), batch_bytes_(batch_bytes) {}

std::uint64_t session_outbox::subscribe(const subscription_filter& f) {
  if (subs_.empty()) {
    cursor_ = log_.tail();
    reset_scan();
    publish_position();
    subscribed_.store(true, std::memory_order_relaxed);
  }
  // Entries appended before this point belong to the snapshot, not to this
  // subscription (another subscription of the session may still want them).
  const auto id = next_sub_++;
  const bool any_source = f.team.empty() && f.agent.empty() && f.task.empty();
  subs_.push_back(sub{id, log_.head(), f.topic_mask(), any_source, f});
  batched_ = batched_ || f.batch;
  ++pending_snapshots_;
  return id;
}

bool session_outbox::unsubscribe(std::uint64_t id) {
  auto it = std::find_if(subs_.begin(), subs_.end(), [id](const sub& s) { return s.id == id; });
  if (it == subs_.end()) return false;
  subs_.erase(it);
  reset_scan();  // entries counted as wanted may not be any more
  if (subs_.empty()) {  // nothing to read: let go of the log
    subscribed_.store(false, std::memory_order_relaxed);
    cursor_ = {};
    scan_ = {};
    held_.clear();
    publish_position();
  }
  return true;
}

void session_outbox::add_snapshot(nlohmann::json data) {
  snapshots_.push_back(std::move(data));
  if (pending_snapshots_ > 0) --pending_snapshots_;
}

bool session_outbox::wants(const prepared_event& ev, std::uint64_t position) const {
  static const std::uint8_t system_bit = topic_bit("system");
  if (subs_.size() == 1) {  // the common case, without a loop
    const auto& s = subs_.front();
    if ((s.mask & ev.topic) == 0 || position < s.from) return false;
    return s.any_source || ev.topic == system_bit || s.filter.matches(*ev.source);
  }
  for (const auto& s : subs_) {
    if ((s.mask & ev.topic) == 0 || position < s.from) continue;
    if (s.any_source || ev.topic == system_bit || s.filter.matches(*ev.source)) return true;
  }
  return false;
}

void session_outbox::publish_position() {
  // A scan the cursor has overtaken would pin the chunks from its position on.
  if (scan_pos_ <= cursor_.position() && scan_wanted_ == 0) {
    scan_ = {};
    scan_pos_ = cursor_.position();
  }
  position_.store(cursor_.position(), std::memory_order_relaxed);
}

std::uint64_t session_outbox::behind(std::uint64_t head) const {
  if (!subscribed_.load(std::memory_order_relaxed)) return 0;
  const auto pos = position_.load(std::memory_order_relaxed);
  return head > pos ? head - pos : 0;
}

void session_outbox::reset_scan() {
  scan_ = cursor_;
  scan_pos_ = cursor_.position();
  scan_wanted_ = 0;
}

void session_outbox::step(bool wanted) {
  if (wanted && cursor_.position() < scan_pos_) --scan_wanted_;
  cursor_.advance();
}

void session_outbox::spill() {
  if (subs_.empty()) return;
  const auto head = log_.head();
  const auto pos = cursor_.position();
  const auto lag = head > pos ? head - pos : 0;
  if (held_.size() + lag <= cap_) return;
  // How many of the entries behind the cursor this session wants: counted on
  // from where the last call stopped.
  if (scan_pos_ <= pos) reset_scan();
  while (scan_pos_ < head) {
    const auto* e = scan_.peek();
    if (e == nullptr) break;
    if (wants(**e, scan_pos_)) ++scan_wanted_;
    scan_.advance();
    ++scan_pos_;
  }
  // Drop the oldest beyond the bound: first the held ones, then in the log.
  std::uint64_t excess = held_.size() + scan_wanted_ > cap_ ? held_.size() + scan_wanted_ - cap_ : 0;
  gap_ += excess;
  drops_ += excess;
  const auto from_held = std::min<std::uint64_t>(excess, held_.size());
  held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(from_held));
  excess -= from_held;
  while (excess > 0) {
    const auto* e = cursor_.peek();
    if (e == nullptr) break;
    const bool wanted = wants(**e, cursor_.position());
    if (wanted) --excess;
    step(wanted);
  }
  // The few wanted among many: keep them here and let the log go.
  const auto rest = scan_pos_ > cursor_.position() ? scan_pos_ - cursor_.position() : 0;
  if (rest > 2 * cap_) {
    while (cursor_.position() < scan_pos_) {
      const auto* e = cursor_.peek();
      if (e == nullptr) break;
      if (wants(**e, cursor_.position())) held_.push_back(*e);
      cursor_.advance();
    }
    reset_scan();
  }
  publish_position();
}

const prepared_event* session_outbox::next_event() {
  if (!held_.empty()) {
    current_ = std::move(held_.front());
    held_.pop_front();
    return current_.get();
  }
  while (const auto* e = cursor_.peek()) {
    const bool wanted = wants(**e, cursor_.position());
    step(wanted);
    if (wanted) return e->get();  // valid until the next peek
  }
  return nullptr;
}

bool session_outbox::ready() {
  if (!replies_.empty() || !snapshots_.empty()) return true;
  if (pending_snapshots_ > 0 || subs_.empty()) return false;
  if (gap_ > 0 || !held_.empty()) return true;
  bool found = false;
  while (const auto* e = cursor_.peek()) {
    if (wants(**e, cursor_.position())) {
      found = true;
      break;
    }
    cursor_.advance();
  }
  publish_position();
  return found;
}

bool session_outbox::next_frame(std::string& out, std::int64_t now_ms) {
  out.clear();
  if (!replies_.empty()) {
    out.assign(replies_.front());  // copy: `out` keeps its grown capacity
    replies_.pop_front();
    return true;
  }
  if (!snapshots_.empty()) {
    if (batched_) out.append(batch_open);
    out.append(render_snapshot(++seq_, snapshots_.front(), now_ms));
    if (batched_) out.append(batch_close);
    snapshots_.pop_front();
    return true;
  }
  // Live events wait until every snapshot asked for went out.
  if (pending_snapshots_ > 0) return false;
  spill();
  if (!batched_) {
    if (gap_ > 0) {
      out = render_gap(++seq_, gap_, now_ms);
      gap_ = 0;
      return true;
    }
    const auto* ev = next_event();
    if (ev != nullptr) append_event(out, *ev, ++seq_);
    current_.reset();
    publish_position();
    return ev != nullptr;
  }
  out.append(batch_open);
  std::size_t n = 0;
  if (gap_ > 0) {
    out.append(render_gap(++seq_, gap_, now_ms));
    gap_ = 0;
    ++n;
  }
  while (out.size() < batch_bytes_) {
    const auto* ev = next_event();
    if (ev == nullptr) break;
    if (n++ > 0) out.push_back(',');
    append_event(out, *ev, ++seq_);
  }
  current_.reset();
  publish_position();
  if (n == 0) {
    out.clear();
    return false;
  }
  out.append(batch_close);
  return true;
}

std::uint64_t session_outbox::take_drops() {
  const auto n = drops_;
  drops_ = 0;
  return n;
}

void session_outbox::clear() {
  replies_.clear();
  snapshots_.clear();
  subs_.clear();
  held_.clear();
  current_.reset();
  cursor_ = {};
  scan_ = {};
  scan_pos_ = scan_wanted_ = 0;
  subscribed_.store(false, std::memory_order_relaxed);
  publish_position();
}

}  // namespace troupe::protocols::control
