#include "troupe/actors/store_actor.hpp"

#include <chrono>
#include <vector>

#include <spdlog/spdlog.h>

#include "troupe/actors/messages.hpp"
#include "troupe/agents/recovery.hpp"
#include "troupe/agents/task_json.hpp"
#include "troupe/base/clock.hpp"

namespace troupe::actors {
namespace {

using prune_atom = caf::atom_constant<caf::atom("prune")>;

struct waiter {
  caf::response_promise rp;
  std::size_t first_new_task = 0;  ///< offset of its new_tasks in the merged batch
  std::size_t new_tasks = 0;
};

struct store_state {
  std::shared_ptr<base::snapshot_store> store;
  std::shared_ptr<store_stats> stats;
  store_options opts;
  base::write_batch pending;        ///< merged pieces not yet committed
  std::vector<waiter> waiters;      ///< their promises, in arrival order
  bool flush_queued = false;
  bool retrying = false;
  std::int64_t retry_delay_ms = 0;
  static inline const char* name = "troupe.store";
};

template <class T>
void append(std::vector<T>& to, std::vector<T>& from) {
  if (to.empty()) {
    to = std::move(from);
  } else {
    to.reserve(to.size() + from.size());
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

void flush(caf::stateful_actor<store_state>* self) {
  auto& st = self->state;
  if (st.waiters.empty() && st.pending.empty()) return;
  auto started = std::chrono::steady_clock::now();
  auto outcome = st.store->commit(st.pending);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count();
  if (outcome) {
    auto rows = st.pending.size();
    st.stats->commits.fetch_add(1, std::memory_order_relaxed);
    st.stats->rows.fetch_add(rows, std::memory_order_relaxed);
    st.stats->last_batch_rows.store(rows, std::memory_order_relaxed);
    st.stats->last_commit_us.store(static_cast<std::uint64_t>(us), std::memory_order_relaxed);
    st.stats->total_commit_us.fetch_add(static_cast<std::uint64_t>(us), std::memory_order_relaxed);
    st.stats->backlog_rows.store(0, std::memory_order_relaxed);
    if (!st.stats->healthy.exchange(true)) spdlog::info("store recovered store={}", st.store->describe());
    st.retry_delay_ms = 0;
    for (auto& w : st.waiters) {
      commit_reply reply;
      reply.ok = true;
      for (const auto& c : outcome->conflicts)
        if (c.index >= w.first_new_task && c.index < w.first_new_task + w.new_tasks)
          reply.conflicts.push_back({c.index - w.first_new_task, c.existing_id});
      w.rp.deliver(std::move(reply));
    }
    st.waiters.clear();
    st.pending = base::write_batch{};
    return;
  }
  // Failed: refuse the submits now, keep everything else for the retry.
  st.stats->failures.fetch_add(1, std::memory_order_relaxed);
  if (st.stats->healthy.exchange(false))
    spdlog::error("store commit failed, retrying with backoff store={} error=\"{}\"",
                  st.store->describe(), outcome.error().message);
  std::vector<waiter> kept;
  for (auto& w : st.waiters) {
    if (w.new_tasks > 0) {
      commit_reply reply;
      reply.ok = false;
      reply.error = base::make_error(base::errc::unavailable,
                                     "the store cannot commit right now: " + outcome.error().message, true);
      w.rp.deliver(std::move(reply));
    } else {
      w.new_tasks = 0;
      kept.push_back(std::move(w));
    }
  }
  st.waiters = std::move(kept);
  st.pending.new_tasks.clear();
  for (auto& w : st.waiters) w.first_new_task = 0;
  st.stats->backlog_rows.store(st.pending.size(), std::memory_order_relaxed);
  st.retry_delay_ms = st.retry_delay_ms == 0 ? st.opts.retry_ms
                                             : std::min(st.retry_delay_ms * 2, st.opts.retry_max_ms);
  if (!st.retrying) {
    st.retrying = true;
    self->delayed_send(self, std::chrono::milliseconds(st.retry_delay_ms), flush_atom::value, true);
  }
}

caf::behavior store_actor(caf::stateful_actor<store_state>* self, std::shared_ptr<base::snapshot_store> store,
                          std::shared_ptr<store_stats> stats, store_options opts) {
  self->state.store = std::move(store);
  self->state.stats = std::move(stats);
  self->state.opts = opts;
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
        if (st.retrying) return;  // the retry timer flushes everything
        if (st.pending.size() >= st.opts.max_batch) {
          flush(self);
        } else if (!st.flush_queued) {
          st.flush_queued = true;
          self->send(self, flush_atom::value, false);
        }
      },
      [=](flush_atom, bool retry) {
        auto& st = self->state;
        if (retry) st.retrying = false;
        else st.flush_queued = false;
        if (st.retrying) return;
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
      [=](recover_atom, const std::string& team) {
        // A team restarted by the root supervisor reloads its last committed state. Its
        // own writes are already in our mailbox ahead of this request: commit them first.
        auto& st = self->state;
        recovered_tasks out;
        if (!st.retrying) flush(self);
        if (st.retrying || !st.pending.empty()) {
          out.error = base::make_error(base::errc::unavailable, "the store cannot commit right now", true);
          return out;
        }
        auto state = st.store->recover();
        if (!state) {
          out.error = state.error();
          return out;
        }
        auto rebuilt = agents::rebuild_tasks(*state, team);
        for (const auto& p : rebuilt.problems) spdlog::error("skipping unreadable task on team restart team={} {}", team, p);
        out.ok = true;
        out.tasks = std::move(rebuilt.tasks);
        return out;
      },
      [=](audit_atom, std::size_t limit, const reply_fn& reply) {
        // Read your writes: audit rows queued before this request are committed first.
        if (!self->state.retrying && !self->state.pending.empty()) flush(self);
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
  return sys.spawn<caf::detached>(store_actor, std::move(store), std::move(stats), opts);
}

}  // namespace troupe::actors
