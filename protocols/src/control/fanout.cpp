// Event fan-out: the core methods that drive sessions (see event_log.hpp and
// session_outbox.hpp for the data side).
#include "ws_session.hpp"

namespace troupe::protocols::control::detail {

void core::add_subscriber() {
  std::lock_guard lock(listen_mu);
  if (subscribed.fetch_add(1) > 0 || stopping || listen_token) return;
  std::weak_ptr<core> weak = weak_from_this();
  listen_token = port.listen([weak](const std::shared_ptr<const event>& ev) {
    if (auto c = weak.lock(); c && ev) c->publish(ev);
  });
}

void core::remove_subscriber() {
  std::shared_ptr<void> token;
  {
    std::lock_guard lock(listen_mu);
    if (subscribed.fetch_sub(1) == 1) token = std::move(listen_token);
  }
  // Released here, outside the lock: retiring a listener waits for a publish
  // that is calling it.
}

void core::stop_listening() {
  std::shared_ptr<void> token;  // declared first: released after the lock, as above
  std::lock_guard lock(listen_mu);
  token = std::move(listen_token);
}

// A runtime thread: serialise once, append, wake parked sessions.
void core::publish(const std::shared_ptr<const event>& ev) {
  if (stopping || subscribed.load() == 0) return;  // nobody listens: do not serialise
  const auto position = log.append(prepare_event(ev));
  if (parked_count.load() > 0) request_wake();
  // Once per chunk, bound how far behind any session may fall.
  if (event_log::starts_chunk(position) && !bound_posted.exchange(true)) {
    std::weak_ptr<core> weak = weak_from_this();
    post(ioc->get_executor(), [weak] {
      if (auto c = weak.lock()) c->bound_pass();
    });
  }
}

// Strand of `s`: it had nothing to write. The seq_cst pair (parked_count here,
// the log head in publish) makes sure an event appended meanwhile is not
// missed: either publish sees the session parked, or the session sees the event.
void core::park(const std::shared_ptr<ws_session>& s) {
  {
    std::lock_guard lock(park_mu);
    if (s->parked_) return;
    s->parked_ = true;
    parked.push_back(s);
    parked_count.fetch_add(1);
  }
  if (s->behind(log.head()) > 0) request_wake();
}

void core::request_wake() {
  if (wake_posted.exchange(true)) return;
  std::weak_ptr<core> weak = weak_from_this();
  post(wake_strand, [weak] {
    auto c = weak.lock();
    if (!c) return;
    const auto due = c->last_wake + wake_interval;
    if (std::chrono::steady_clock::now() >= due) return c->wake_pass();
    c->wake_timer.expires_at(due);
    c->wake_timer.async_wait([weak](const boost::system::error_code& ec) {
      if (ec) return;
      if (auto c2 = weak.lock()) c2->wake_pass();
    });
  });
}

// wake_strand: wakes the parked sessions that have something to write.
void core::wake_pass() {
  last_wake = std::chrono::steady_clock::now();
  wake_posted.store(false);  // events appended from now on ask for another pass
  std::vector<std::shared_ptr<ws_session>> ready;
  {
    std::lock_guard lock(park_mu);
    std::erase_if(parked, [&](const std::weak_ptr<ws_session>& w) {
      auto s = w.lock();
      if (s && !s->wake_check()) return false;
      if (s) {
        s->parked_ = false;
        ready.push_back(std::move(s));
      }
      parked_count.fetch_sub(1);
      return true;
    });
  }
  for (auto& s : ready) post(s->executor(), [s] { s->do_write(); });
}

void core::bound_pass() {
  bound_posted.store(false);
  const auto head = log.head();
  for (const auto& w : *ws_snapshot())
    if (auto s = w.lock()) s->bound_lag(head);
}

}  // namespace troupe::protocols::control::detail
