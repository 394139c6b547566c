#include "pg_batch.hpp"

#include "batch_dedup.hpp"

namespace troupe::persistence::detail {
namespace {

void add_journal(batch_columns& c, const std::vector<base::journal_row>& rows) {
  for (const auto& j : rows) {
    c.j_task.add(j.task_id), c.j_seq.add(j.seq), c.j_kind.add(j.kind), c.j_payload.add(j.payload);
    c.j_ts.add(j.ts_ms);
  }
}

void add_costs(batch_columns& c, const std::vector<base::cost_row>& rows) {
  for (const auto& r : rows) {
    c.c_task.add(r.task_id), c.c_step.add(r.step_id), c.c_agent.add(r.agent), c.c_team.add(r.team);
    c.c_provider.add(r.provider), c.c_model.add(r.model), c.c_outcome.add(r.outcome);
    c.c_in.add(r.tokens_in), c.c_out.add(r.tokens_out), c.c_latency.add(r.latency_ms);
    c.c_ts.add(r.ts_ms), c.c_usd.add(r.usd);
  }
}

void add_audit(batch_columns& c, const std::vector<base::audit_row>& rows) {
  for (const auto& a : rows) {
    c.a_ts.add(a.ts_ms), c.a_principal.add(a.principal), c.a_action.add(a.action);
    c.a_target.add(a.target), c.a_detail.add(a.detail), c.a_outcome.add(a.outcome);
  }
}

void add_entities(batch_columns& c, const std::vector<base::entity_row>& rows) {
  for (std::size_t i : last_of_each(rows, [](const auto& e) { return e.team + '\x1f' + e.agent; })) {
    const auto& e = rows[i];
    c.e_team.add(e.team), c.e_agent.add(e.agent), c.e_paused.add(e.paused ? 1 : 0);
    c.e_failed.add(e.failed ? 1 : 0), c.e_spent.add(e.spent_usd), c.e_detail.add(e.detail);
    c.e_updated.add(e.updated_ms);
  }
}

void add_decisions(batch_columns& c, const std::vector<base::decision_row>& rows) {
  for (std::size_t i : last_of_each(rows, [](const auto& d) { return d.id; })) {
    const auto& d = rows[i];
    c.d_id.add(d.id), c.d_task.add(d.task_id), c.d_step.add(d.step_id), c.d_state.add(d.state);
    c.d_record.add(d.record), c.d_deadline.add(d.deadline_ms);
  }
}

void add_snapshots(batch_columns& c, const std::vector<base::task_row>& rows,
                   const std::vector<bool>& keep) {
  for (std::size_t i : last_of_each(rows, [](const auto& t) { return t.id; }))
    if (keep.empty() || keep[i]) c.snapshots.add(rows[i]);
}

}  // namespace

batch_columns columns_of(const base::write_batch& batch, const std::vector<bool>& skip) {
  batch_columns c;
  for (const auto& t : batch.new_tasks) c.new_tasks.add(t);
  add_journal(c, batch.journal);
  std::vector<bool> keep;
  if (!skip.empty()) {
    keep.resize(skip.size());
    for (std::size_t i = 0; i < skip.size(); ++i) keep[i] = !skip[i];
  }
  add_snapshots(c, batch.snapshots, keep);
  add_costs(c, batch.costs);
  add_audit(c, batch.audit);
  add_entities(c, batch.entities);
  add_decisions(c, batch.decisions);
  c.commit_id = batch.commit_id;
  return c;
}

batch_columns snapshot_columns(const std::vector<base::task_row>& snapshots,
                               const std::vector<bool>& only) {
  batch_columns c;
  add_snapshots(c, snapshots, only);
  return c;
}

// The CTEs run in one snapshot of the database, so none sees what another
// wrote; the order below only matters for the rules the port documents:
// - new tasks go in with ON CONFLICT DO NOTHING and come back in RETURNING,
//   in batch order (ORDER BY the ordinality);
// - a snapshot never moves a task back to an older seq, and deletes the
//   journal rows it covers; journal rows of this batch that one of its
//   snapshots covers are not inserted at all (the same end state);
// - audit rows get their serial ids in batch order;
// - the commit mark (if any) lands with everything else or not at all.
const char* const batch_sql =
    "WITH nt AS (INSERT INTO tasks (id, team, agent, priority, state, idempotency_key, snapshot, "
    "seq, created_ms, updated_ms) "
    "SELECT id, team, agent, priority, state, idempotency_key, snapshot, seq, created_ms, "
    "updated_ms FROM (SELECT id, team, agent, priority, state, idempotency_key, "
    "convert_from(substring($7::bytea FROM s_off FOR s_len), 'UTF8') AS snapshot, seq, "
    "created_ms, updated_ms, ord "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], "
    "$57::int[], $58::int[], $8::bigint[], $9::bigint[], $10::bigint[]) WITH ORDINALITY "
    "AS u(id, team, agent, priority, state, idempotency_key, s_off, s_len, seq, created_ms, "
    "updated_ms, ord)) AS v ORDER BY ord ON CONFLICT DO NOTHING RETURNING id), "
    "s AS MATERIALIZED (SELECT id, team, agent, priority, state, idempotency_key, "
    "convert_from(substring($22::bytea FROM s_off FOR s_len), 'UTF8') AS snapshot, seq, "
    "created_ms, updated_ms "
    "FROM unnest($16::text[], $17::text[], $18::text[], $19::int[], $20::text[], $21::text[], "
    "$59::int[], $60::int[], $23::bigint[], $24::bigint[], $25::bigint[]) "
    "AS u(id, team, agent, priority, state, idempotency_key, s_off, s_len, seq, created_ms, "
    "updated_ms)), "
    "jn AS (INSERT INTO journal (task_id, seq, kind, payload, ts_ms) "
    "SELECT j.* FROM unnest($11::text[], $12::bigint[], $13::text[], $14::text[], $15::bigint[]) "
    "AS j(task_id, seq, kind, payload, ts_ms) "
    "WHERE NOT EXISTS (SELECT 1 FROM s WHERE s.id = j.task_id AND s.seq >= j.seq) "
    "ON CONFLICT DO NOTHING), "
    "up AS (INSERT INTO tasks (id, team, agent, priority, state, idempotency_key, snapshot, seq, "
    "created_ms, updated_ms) SELECT * FROM s "
    "ON CONFLICT (id) DO UPDATE SET team = excluded.team, agent = excluded.agent, "
    "priority = excluded.priority, state = excluded.state, "
    "idempotency_key = excluded.idempotency_key, snapshot = excluded.snapshot, "
    "seq = excluded.seq, created_ms = excluded.created_ms, updated_ms = excluded.updated_ms "
    "WHERE excluded.seq >= tasks.seq), "
    "tr AS (DELETE FROM journal j USING s WHERE j.task_id = s.id AND j.seq <= s.seq), "
    "co AS (INSERT INTO costs (task_id, step_id, agent, team, provider, model, outcome, "
    "tokens_in, tokens_out, latency_ms, ts_ms, usd) "
    "SELECT * FROM unnest($26::text[], $27::text[], $28::text[], $29::text[], $30::text[], "
    "$31::text[], $32::text[], $33::bigint[], $34::bigint[], $35::bigint[], $36::bigint[], "
    "$37::float8[])), "
    "au AS (INSERT INTO audit (ts_ms, principal, action, target, detail, outcome) "
    "SELECT ts_ms, principal, action, target, detail, outcome FROM unnest($38::bigint[], "
    "$39::text[], $40::text[], $41::text[], $42::text[], $43::text[]) WITH ORDINALITY "
    "AS u(ts_ms, principal, action, target, detail, outcome, ord) ORDER BY ord), "
    "en AS (INSERT INTO entity_state (team, agent, paused, failed, spent_usd, detail, updated_ms) "
    "SELECT * FROM unnest($44::text[], $45::text[], $46::int[], $47::int[], $48::float8[], "
    "$49::text[], $50::bigint[]) ON CONFLICT (team, agent) DO UPDATE SET "
    "paused = excluded.paused, failed = excluded.failed, spent_usd = excluded.spent_usd, "
    "detail = excluded.detail, updated_ms = excluded.updated_ms), "
    "de AS (INSERT INTO decisions (id, task_id, step_id, state, record, deadline_ms) "
    "SELECT * FROM unnest($51::text[], $52::text[], $53::text[], $54::text[], $55::text[], "
    "$56::bigint[]) ON CONFLICT (id) DO UPDATE SET task_id = excluded.task_id, "
    "step_id = excluded.step_id, state = excluded.state, record = excluded.record, "
    "deadline_ms = excluded.deadline_ms), "
    "cm AS (INSERT INTO commit_marks (slot, commit_id) SELECT $61::int, $62::bigint "
    "WHERE $62::bigint <> 0 ON CONFLICT (slot) DO UPDATE SET commit_id = excluded.commit_id) "
    "SELECT id FROM nt";

}  // namespace troupe::persistence::detail
