#include "troupe/actors/store_actor.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <spdlog/spdlog.h>

#include "troupe/actors/messages.hpp"
#include "troupe/agents/recovery.hpp"
#include "troupe/agents/task_json.hpp"
#include "troupe/base/clock.hpp"

namespace troupe::actors {
namespace {

using prune_atom = caf::atom_constant<caf::atom("prune")>;
using commit_atom = caf::atom_constant<caf::atom("commit")>;
using end_flush_atom = caf::atom_constant<caf::atom("endflush")>;

struct waiter {
  caf::response_promise rp;
  std::size_t first_new_task = 0;  ///< offset of its new_tasks in the merged batch
  std::size_t new_tasks = 0;
};

/// One group commit handed to a committer (overlapped mode).
struct job {
  std::shared_ptr<base::write_batch> batch;
  std::vector<waiter> waiters;
  bool alone = false;  ///< holds entities or decisions: runs with no other job in flight
  std::uint64_t last_piece = 0;  ///< number of the last piece merged into it
  std::optional<base::result<base::commit_outcome>> result;  ///< set when the committer answered
  std::uint64_t us = 0;
};

/// A batch whose commit failed with its outcome unknown (base::error::in_doubt).
struct doubt {
  std::shared_ptr<base::write_batch> batch;  ///< its new tasks already refused and removed
  std::vector<waiter> waiters;
  std::uint64_t last_piece = 0;
};

struct store_state {
  std::shared_ptr<base::snapshot_store> store;
  std::shared_ptr<store_stats> stats;
  store_options opts;
  base::write_batch pending;        ///< merged pieces not yet committed
  std::vector<waiter> waiters;      ///< their promises, in arrival order
  bool flush_queued = false;
  bool urgent = false;     ///< pending holds a write someone waits on (not can_wait)
  bool end_armed = false;  ///< a window for can_wait writes is open (until end_deadline)
  std::chrono::steady_clock::time_point end_deadline;
  std::chrono::steady_clock::time_point last_commit_end;  ///< for the linger window
  bool retrying = false;
  std::int64_t retry_delay_ms = 0;
  // Overlapped mode (opts.extra_writers): commits run on committer actors, each
  // with its own connection, while this actor keeps merging the next batch.
  std::vector<caf::actor> idle_committers;
  std::deque<std::shared_ptr<job>> in_flight;  ///< in dispatch order; answered in that order
  bool overlapped = false;
  // Read-your-writes for the audit log in overlapped mode: pieces are numbered
  // as they arrive; a read waits until every piece before it is settled.
  std::uint64_t received = 0;
  std::uint64_t settled = 0;
  std::vector<std::pair<std::uint64_t, std::function<void()>>> deferred_reads;
  /// Every commit is stamped with the next id (a random start per run), so that one
  /// whose outcome was lost can be looked up (snapshot_store::committed).
  std::uint64_t last_commit_id = 0;
  /// In-doubt batches, oldest first: each is looked up before anything else is
  /// committed. Retrying one blindly would write its cost and audit rows twice.
  std::deque<doubt> doubts;
  static inline const char* name = "troupe.store";
};

template <class T>
void append(std::vector<T>& to, std::vector<T>& from) {
  if (to.empty()) {
    to = std::move(from);
  } else {
    // Geometric growth: reserving just what this piece needs would move every row
    // merged so far again with each piece (a group commit merges dozens).
    if (to.capacity() < to.size() + from.size()) to.reserve(std::max(to.size() + from.size(), 2 * to.capacity()));
    for (auto& x : from) to.push_back(std::move(x));
  }
}

void merge(base::write_batch& into, base::write_batch& piece) {
  append(into.new_tasks, piece.new_tasks);
  append(into.snapshots, piece.snapshots);
  append(into.journal, piece.journal);
  append(into.costs, piece.costs);
  append(into.audit, piece.audit);
  append(into.entities, piece.entities);
  append(into.decisions, piece.decisions);
}

/// Keeps only the last row of each key, in batch order. Every finished step
/// carries its team's and agent's entity rows (whole-row upserts, last wins),
/// so a merged batch repeats the same few keys many times.
template <class Row, class KeyFn>
void keep_last_of_each(std::vector<Row>& rows, KeyFn key) {
  if (rows.size() < 2) return;
  std::unordered_set<std::string> seen;
  std::vector<bool> keep(rows.size(), false);
  for (std::size_t i = rows.size(); i-- > 0;) keep[i] = seen.insert(key(rows[i])).second;
  std::size_t out = 0;
  for (std::size_t i = 0; i < rows.size(); ++i)
    if (keep[i]) {
      if (out != i) rows[out] = std::move(rows[i]);
      ++out;
    }
  rows.resize(out);
}

void compact(base::write_batch& b) {
  keep_last_of_each(b.entities, [](const base::entity_row& e) { return e.team + '\x1f' + e.agent; });
  keep_last_of_each(b.decisions, [](const base::decision_row& d) { return d.id; });
}

/// A task's end alone (write_batch::can_wait): the one write that need not wake the store.
bool is_end_write(const caf::mailbox_element& m) {
  const auto& c = m.content();
  if (c.size() != 2 || !c.match_element<caf::atom_value>(0) || c.get_as<caf::atom_value>(0) != write_atom::value ||
      !c.match_element<batch_ptr>(1))
    return false;
  const auto& batch = c.get_as<batch_ptr>(1);
  return batch != nullptr && batch->can_wait;
}

/// The store actor (detached: its own thread). Task ends wait for company for up to
/// store_options::end_us; the thread waits that window out asleep inside the handler
/// of an end (nap_until), so that the ends arriving meanwhile queue up without waking
/// it one by one. Every other message (a write someone waits on, a read, the window's
/// timer, a system message) cuts the nap short as it is enqueued.
class store_self : public caf::stateful_actor<store_state> {
 public:
  using caf::stateful_actor<store_state>::stateful_actor;

  void enqueue(caf::mailbox_element_ptr ptr, caf::execution_unit* eu) override {
    const bool wakes = ptr == nullptr || !is_end_write(*ptr);
    caf::stateful_actor<store_state>::enqueue(std::move(ptr), eu);
    // Pairs with the fence in nap_until: either the nap sees this message in the
    // mailbox, or this sees the nap and cuts it short.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (wakes && napping_.load(std::memory_order_relaxed)) {
      {
        std::lock_guard<std::mutex> guard(nap_mutex_);
        woken_ = true;
      }
      nap_cv_.notify_one();
    }
  }

  /// Sleeps until `deadline` unless a message other than an end comes first (or any
  /// message is already waiting).
  void nap_until(std::chrono::steady_clock::time_point deadline) {
    {
      std::lock_guard<std::mutex> guard(nap_mutex_);
      woken_ = false;  // a late wake-up meant for an earlier nap
    }
    napping_.store(true, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (mailbox().empty() && std::chrono::steady_clock::now() < deadline) {
      std::unique_lock<std::mutex> lock(nap_mutex_);
      state.stats->end_naps.fetch_add(1, std::memory_order_relaxed);
      nap_cv_.wait_until(lock, deadline, [this] { return woken_; });
    }
    napping_.store(false, std::memory_order_relaxed);
  }

 private:
  std::atomic<bool> napping_{false};
  std::mutex nap_mutex_;
  std::condition_variable nap_cv_;
  bool woken_ = false;
};

using self_ptr = store_self*;

void record_success(self_ptr self, std::size_t rows, std::uint64_t us) {
  auto& st = self->state;
  st.stats->commits.fetch_add(1, std::memory_order_relaxed);
  st.stats->rows.fetch_add(rows, std::memory_order_relaxed);
  st.stats->last_batch_rows.store(rows, std::memory_order_relaxed);
  st.stats->last_commit_us.store(us, std::memory_order_relaxed);
  st.stats->commit_seconds.observe(static_cast<double>(us) / 1e6);
  st.stats->batch_rows.observe(static_cast<double>(rows));
  st.stats->total_commit_us.fetch_add(us, std::memory_order_relaxed);
  if (!st.stats->healthy.exchange(true)) spdlog::info("store recovered store={}", st.store->describe());
  st.retry_delay_ms = 0;
}

void answer(std::vector<waiter>& waiters, const base::commit_outcome& outcome) {
  for (auto& w : waiters) {
    commit_reply reply;
    reply.ok = true;
    for (const auto& c : outcome.conflicts)
      if (c.index >= w.first_new_task && c.index < w.first_new_task + w.new_tasks)
        reply.conflicts.push_back({c.index - w.first_new_task, c.existing_id});
    w.rp.deliver(std::move(reply));
  }
  waiters.clear();
}

void stamp(store_state& st, base::write_batch& batch) {
  if (++st.last_commit_id == 0) ++st.last_commit_id;  // 0 means "no mark"
  batch.commit_id = st.last_commit_id;
}

/// Backs off before the next attempt (the flush timer clears `retrying`).
void retry_later(self_ptr self) {
  auto& st = self->state;
  st.retry_delay_ms = st.retry_delay_ms == 0 ? st.opts.retry_ms : std::min(st.retry_delay_ms * 2, st.opts.retry_max_ms);
  if (!st.retrying) {
    st.retrying = true;
    self->delayed_send(self, std::chrono::milliseconds(st.retry_delay_ms), flush_atom::value, true);
  }
}

/// A failed commit: refuses the submits in it at once (never acknowledged
/// without a commit), drops their rows, and keeps the other waiters for the
/// retry, which the backoff timer starts.
std::vector<waiter> refuse_new_tasks(self_ptr self, std::vector<waiter>& waiters, base::write_batch& batch,
                                     const base::error& err) {
  auto& st = self->state;
  st.stats->failures.fetch_add(1, std::memory_order_relaxed);
  if (st.stats->healthy.exchange(false))
    spdlog::error("store commit failed, retrying with backoff store={} error=\"{}\"", st.store->describe(),
                  err.message);
  std::vector<waiter> kept;
  for (auto& w : waiters) {
    if (w.new_tasks > 0) {
      commit_reply reply;
      reply.ok = false;
      reply.error = base::make_error(base::errc::unavailable, "the store cannot commit right now: " + err.message, true);
      reply.error.in_doubt = err.in_doubt;  // the submitter finds out later whether its task landed
      w.rp.deliver(std::move(reply));
    } else {
      w.first_new_task = 0;
      kept.push_back(std::move(w));
    }
  }
  batch.new_tasks.clear();
  retry_later(self);
  return kept;
}

/// Looks up every in-doubt batch, oldest first: one that landed is answered as
/// committed; the rows of one that did not go back in front of what is pending.
/// False while the store cannot tell (the retry timer is armed again).
bool settle_doubts(self_ptr self) {
  auto& st = self->state;
  base::write_batch redo;
  std::vector<waiter> redo_waiters;
  bool known = true;
  while (!st.doubts.empty()) {
    auto& d = st.doubts.front();
    auto landed = st.store->committed(d.batch->commit_id);
    if (!landed) {
      spdlog::warn("cannot tell yet whether a commit landed store={} error=\"{}\"", st.store->describe(),
                   landed.error().message);
      known = false;
      break;
    }
    if (*landed) {
      spdlog::warn("a commit whose outcome was lost had landed; its rows are not written again rows={}",
                   d.batch->size());
      record_success(self, d.batch->size(), 0);
      answer(d.waiters, base::commit_outcome{});
      st.settled = std::max(st.settled, d.last_piece);
    } else {
      merge(redo, *d.batch);
      for (auto& w : d.waiters) redo_waiters.push_back(std::move(w));
    }
    st.doubts.pop_front();
  }
  if (!redo.empty() || !redo_waiters.empty()) {
    // In front of what arrived since, so upserts keep their order. Their new tasks
    // were refused and removed: the offsets of the pending waiters still hold.
    merge(redo, st.pending);
    st.pending = std::move(redo);
    for (auto& w : st.waiters) redo_waiters.push_back(std::move(w));
    st.waiters = std::move(redo_waiters);
  }
  if (!known) retry_later(self);
  return known;
}

/// Keeps a batch whose commit failed in doubt for settle_doubts.
void park(self_ptr self, std::shared_ptr<base::write_batch> batch, std::vector<waiter> waiters,
          std::uint64_t last_piece) {
  self->state.doubts.push_back({std::move(batch), std::move(waiters), last_piece});
}

/// Synchronous mode (one connection): commit everything pending on this thread.
void commit_here(self_ptr self) {
  auto& st = self->state;
  if (st.waiters.empty() && st.pending.empty()) return;
  compact(st.pending);
  stamp(st, st.pending);
  auto started = std::chrono::steady_clock::now();
  auto outcome = st.store->commit(st.pending);
  st.last_commit_end = std::chrono::steady_clock::now();
  auto us = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(st.last_commit_end - started).count());
  if (outcome) {
    record_success(self, st.pending.size(), us);
    st.stats->backlog_rows.store(0, std::memory_order_relaxed);
    answer(st.waiters, *outcome);
    st.pending = base::write_batch{};
    st.urgent = false;
    return;
  }
  st.waiters = refuse_new_tasks(self, st.waiters, st.pending, outcome.error());
  if (outcome.error().in_doubt) {
    park(self, std::make_shared<base::write_batch>(std::move(st.pending)), std::move(st.waiters), st.received);
    st.pending = base::write_batch{};
    st.waiters.clear();
    st.urgent = false;
  }
  st.stats->backlog_rows.store(st.pending.size(), std::memory_order_relaxed);
}

void dispatch(self_ptr self);

/// Answers finished jobs in dispatch order, so a reply never overtakes the
/// answer to an earlier write (the runtime's last empty write at stop relies on it).
void settle(self_ptr self) {
  auto& st = self->state;
  while (!st.in_flight.empty() && st.in_flight.front()->result) {
    auto j = std::move(st.in_flight.front());
    st.in_flight.pop_front();
    auto& r = *j->result;
    if (r) {
      record_success(self, j->batch->size(), j->us);
      answer(j->waiters, *r);
      st.settled = std::max(st.settled, j->last_piece);
      continue;
    }
    // The failed rows go back in front of what arrived since, so upserts keep
    // their order (the last row of a key wins).
    auto kept = refuse_new_tasks(self, j->waiters, *j->batch, r.error());
    if (r.error().in_doubt) {
      park(self, j->batch, std::move(kept), j->last_piece);
      continue;
    }
    merge(*j->batch, st.pending);
    st.pending = std::move(*j->batch);
    for (auto& w : st.waiters) kept.push_back(std::move(w));
    st.waiters = std::move(kept);
  }
  st.stats->backlog_rows.store(st.pending.size(), std::memory_order_relaxed);
  auto ready = std::partition(st.deferred_reads.begin(), st.deferred_reads.end(),
                              [&](const auto& r) { return r.first > st.settled; });
  std::vector<std::function<void()>> run;
  for (auto it = ready; it != st.deferred_reads.end(); ++it) run.push_back(std::move(it->second));
  st.deferred_reads.erase(ready, st.deferred_reads.end());
  for (auto& f : run) f();
}

/// Overlapped mode: hands everything pending to an idle committer. Upserts of
/// entities and decisions must not be reordered by two commits racing, so a
/// batch holding any runs alone; tasks, journal, costs and audit rows are safe
/// in any commit order (snapshots never move a task back, journal rows are
/// keyed by seq, new tasks depend on nothing in flight).
void dispatch(self_ptr self) {
  auto& st = self->state;
  if (st.retrying || st.idle_committers.empty() || (st.waiters.empty() && st.pending.empty())) return;
  const bool alone = !st.pending.entities.empty() || !st.pending.decisions.empty();
  for (const auto& j : st.in_flight)
    if (j->alone) return;
  if (alone && !st.in_flight.empty()) return;
  compact(st.pending);
  stamp(st, st.pending);
  auto j = std::make_shared<job>();
  j->batch = std::make_shared<base::write_batch>(std::move(st.pending));
  j->waiters = std::move(st.waiters);
  j->alone = alone;
  j->last_piece = st.received;
  st.pending = base::write_batch{};
  st.urgent = false;
  st.waiters.clear();
  auto committer = st.idle_committers.back();
  st.idle_committers.pop_back();
  st.in_flight.push_back(j);
  self->request(committer, caf::infinite, commit_atom::value, j->batch)
      .then(
          [=](base::result<base::commit_outcome>& r, std::uint64_t us) {
            j->result = std::move(r);
            j->us = us;
            self->state.idle_committers.push_back(committer);
            settle(self);
            dispatch(self);
          },
          [=](caf::error& err) {
            j->result = base::fail(base::errc::unavailable, "store committer failed: " + self->system().render(err));
            settle(self);
          });
}

void flush(self_ptr self) {
  if (!self->state.overlapped) commit_here(self);
  else dispatch(self);
}

/// A committer owns one extra connection and runs whole commits on its own thread.
caf::behavior committer(caf::event_based_actor*, std::shared_ptr<base::snapshot_store> store) {
  return {
      [store](commit_atom, const batch_ptr& batch) {
        auto started = std::chrono::steady_clock::now();
        auto r = store->commit(*batch);
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started);
        return caf::make_message(std::move(r), static_cast<std::uint64_t>(us.count()));
      },
  };
}

caf::behavior store_actor(store_self* self, std::shared_ptr<base::snapshot_store> store,
                          std::shared_ptr<store_stats> stats, store_options opts) {
  self->state.store = std::move(store);
  self->state.stats = std::move(stats);
  self->state.opts = opts;
  for (const auto& writer : opts.extra_writers) {
    auto c = self->system().spawn<caf::detached>(committer, writer);
    self->link_to(c);  // they end with the store actor
    self->state.idle_committers.push_back(c);
  }
  self->state.overlapped = !opts.extra_writers.empty();
  {
    std::random_device rd;
    self->state.last_commit_id = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }
  self->state.opts.extra_writers.clear();  // the committers own them now
  self->state.opts.extra_writers.shrink_to_fit();
  if (opts.retention_ms > 0)
    self->delayed_send(self, std::chrono::milliseconds(opts.prune_every_ms), prune_atom::value);
  return {
      [=](prune_atom) {
        auto& st = self->state;
        auto cutoff = base::now_ms() - st.opts.retention_ms;
        auto pruned = st.store->prune_terminal(cutoff, st.opts.prune_batch);
        if (pruned && *pruned > 0) {
          st.stats->pruned_tasks.fetch_add(*pruned, std::memory_order_relaxed);
          spdlog::debug("pruned terminal tasks count={}", *pruned);
        }
        if (pruned && *pruned >= st.opts.prune_batch)
          self->send(self, prune_atom::value);  // more to do: after the writes already queued
        else
          self->delayed_send(self, std::chrono::milliseconds(st.opts.prune_every_ms), prune_atom::value);
      },
      [=](write_atom, const batch_ptr& piece) {
        auto& st = self->state;
        if (st.retrying && !piece->new_tasks.empty()) {
          // The database is away: refuse new work at once rather than hold the client.
          commit_reply reply;
          reply.error = base::make_error(base::errc::unavailable, "the store cannot commit right now (reconnecting)", true);
          self->make_response_promise().deliver(std::move(reply));
          return;
        }
        waiter w;
        w.rp = self->make_response_promise();
        w.first_new_task = st.pending.new_tasks.size();
        w.new_tasks = piece->new_tasks.size();
        merge(st.pending, *piece);
        st.waiters.push_back(std::move(w));
        ++st.received;
        if (st.retrying) return;  // the retry timer flushes everything
        // A task's end waits for company longer: one timer for all of them, and
        // anything someone waits on takes them along.
        const bool can_wait = piece->can_wait && !st.overlapped && st.opts.end_us > st.opts.linger_us;
        if (!can_wait) st.urgent = true;
        if (st.pending.size() >= st.opts.max_batch) {
          flush(self);
        } else if (!st.urgent) {
          if (!st.end_armed) {
            st.end_armed = true;
            st.end_deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(st.opts.end_us);
            // The timer ends the window even when a nap below is cut short and the
            // thread then waits for its mailbox.
            self->delayed_send(self, std::chrono::microseconds(st.opts.end_us), end_flush_atom::value);
          }
          // The window is waited out asleep here, not in the mailbox: the ends that
          // come meanwhile queue up instead of waking this thread one by one. Any
          // other message cuts the nap short (store_self::enqueue), so a write
          // someone waits on waits no longer than it would behind the window below.
          self->nap_until(st.end_deadline);
        } else if (!st.flush_queued) {
          st.flush_queued = true;
          const auto linger = std::chrono::microseconds(st.opts.linger_us);
          // Overlapped commits batch by themselves: pieces pile up while every
          // committer waits for the database.
          const auto since = std::chrono::steady_clock::now() - st.last_commit_end;
          // The window is waited out on this actor's own thread (it is detached),
          // not with a delayed flush: writes that arrive meanwhile queue up
          // without waking it one by one, and CAF's clock thread is not woken
          // either (a store wake-up and a clock wake-up less per commit; ~8 us
          // less daemon CPU per LLM call, docs/benchmarks.md).
          if (!st.overlapped && linger.count() > 0 && since < linger)
            std::this_thread::sleep_for(linger - since);
          self->send(self, flush_atom::value, false);
        }
      },
      [=](end_flush_atom) {
        auto& st = self->state;
        st.end_armed = false;
        if (st.retrying || (st.pending.empty() && st.waiters.empty())) return;
        if (!st.doubts.empty() && !settle_doubts(self)) return;
        flush(self);
      },
      [=](flush_atom, bool retry) {
        auto& st = self->state;
        if (retry) st.retrying = false;
        else st.flush_queued = false;
        if (st.retrying) return;
        if (!st.doubts.empty() && !settle_doubts(self)) return;
        flush(self);
      },
      [=](load_atom, const std::string& id, const reply_fn& reply) {
        auto row = self->state.store->load_task(id);
        if (!row) return reply(base::fail(row.error()));
        if (!*row) return reply(base::fail(base::errc::not_found, "no task with id '" + id + "'"));
        auto doc = nlohmann::json::parse((*row)->snapshot, nullptr, false);
        if (doc.is_discarded()) return reply(base::fail(base::errc::internal, "stored snapshot is not JSON"));
        auto t = agents::task_from_json(doc);
        if (!t) return reply(base::fail(t.error()));
        auto journal = self->state.store->load_journal(id, t->seq);
        if (journal)
          for (const auto& j : *journal) {
            auto patch = nlohmann::json::parse(j.payload, nullptr, false);
            if (!patch.is_discarded()) (void)agents::apply_patch(*t, patch);
          }
        reply(agents::to_json(*t));
      },
      [=](audit_atom, std::size_t limit, const reply_fn& reply) {
        auto read = [self, limit, reply] {
          auto rows = self->state.store->load_audit(limit);
          if (!rows) return reply(base::fail(rows.error()));
          auto out = nlohmann::json::array();
          for (const auto& r : *rows) {
            auto detail = nlohmann::json::parse(r.detail, nullptr, false);
            out.push_back({{"ts_ms", r.ts_ms}, {"principal", r.principal}, {"action", r.action},
                           {"target", r.target}, {"outcome", r.outcome},
                           {"detail", detail.is_discarded() ? nlohmann::json(r.detail) : detail}});
          }
          reply(nlohmann::json{{"entries", out}});
        };
        // Read your writes: audit rows queued before this request are committed
        // first (during an outage the read goes ahead with what is committed).
        auto& st = self->state;
        if (st.retrying) return read();
        if (!st.pending.empty() || !st.waiters.empty()) flush(self);
        if (!st.overlapped || st.settled >= st.received) return read();
        st.deferred_reads.emplace_back(st.received, std::move(read));
      },
      [=](recover_atom, const std::string& team) {
        // A team restarted by the root supervisor reloads its last committed state. Its
        // own writes are already in our mailbox ahead of this request: they are committed
        // first (read your writes, like the audit read below).
        auto& st = self->state;
        auto rp = self->make_response_promise();
        auto read = [self, team, rp]() mutable {
          recovered_tasks out;
          auto state = self->state.retrying
                           ? base::result<base::recovered_state>(base::fail(
                                 base::errc::unavailable, "the store cannot commit right now", true))
                           : self->state.store->recover();
          if (!state) {
            out.error = state.error();
            rp.deliver(std::move(out));
            return;
          }
          auto rebuilt = agents::rebuild_tasks(*state, team);
          for (const auto& p : rebuilt.problems)
            spdlog::error("skipping unreadable task on team restart team={} {}", team, p);
          out.ok = true;
          out.tasks = std::move(rebuilt.tasks);
          rp.deliver(std::move(out));
        };
        if (!st.retrying && (!st.pending.empty() || !st.waiters.empty())) flush(self);
        if (!st.overlapped && !st.pending.empty()) {
          // The commit failed: the dead team's last writes are not in the database.
          recovered_tasks out;
          out.error = base::make_error(base::errc::unavailable, "the store cannot commit right now", true);
          rp.deliver(std::move(out));
          return;
        }
        if (st.retrying || !st.overlapped || st.settled >= st.received) return read();
        st.deferred_reads.emplace_back(st.received, std::move(read));
      },
      [=](entities_atom, const std::string& team) {
        entities_reply out;
        auto rows = self->state.store->load_entities(team);
        out.ok = rows.has_value();
        if (rows) out.rows = std::move(*rows);
        else out.error = rows.error();
        return out;
      },
      [=](ping_atom, const reply_fn& reply) {
        auto ok = self->state.store->ping();
        if (!ok) {
          self->state.stats->healthy.store(false);
          return reply(base::fail(ok.error()));
        }
        reply(nlohmann::json{{"store", self->state.store->describe()}, {"healthy", self->state.stats->healthy.load()}});
      },
  };
}

}  // namespace

caf::actor spawn_store(caf::actor_system& sys, std::shared_ptr<base::snapshot_store> store,
                       std::shared_ptr<store_stats> stats, store_options opts) {
  if (const char* env = std::getenv("TROUPE_COMMIT_LINGER_US"); env && *env) {
    char* end = nullptr;
    const long long v = std::strtoll(env, &end, 10);
    if (end && *end == '\0' && v >= 0 && v <= 1000000) opts.linger_us = v;
    else spdlog::warn("ignoring TROUPE_COMMIT_LINGER_US='{}' (expected 0 to 1000000 microseconds)", env);
  }
  return sys.spawn<caf::detached>(store_actor, std::move(store), std::move(stats), opts);
}

}  // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::base::result<troupe::base::commit_outcome>)
