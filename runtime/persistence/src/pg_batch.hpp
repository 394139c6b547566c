#pragma once
/// A whole write_batch as one PostgreSQL statement (private header).
///
/// Every row kind travels as column arrays and one data-modifying CTE per kind
/// writes it, so a group commit is one statement: run outside an explicit
/// transaction it is also its own transaction, and the batch costs a single
/// round trip (BEGIN, one statement per row kind and COMMIT were seven on a
/// typical daemon batch, each a wake-up of the daemon and of the server).
#include <cstdint>
#include <string>
#include <vector>

#include "pg_arrays.hpp"
#include "troupe/base/store_port.hpp"

namespace troupe::persistence::detail {

/// The 62 parameters of batch_sql: $1-$56 in the order below, the snapshot
/// columns as blobs ($7 and $22, bytea) whose offsets and lengths are $57-$60, and
/// the commit mark's slot and id ($61-$62; id 0 writes no mark). Snapshots, entities
/// and decisions keep only the last row of each key (an upsert may touch a row once
/// per statement).
struct batch_columns {
  task_arrays new_tasks;                              // $1-$10
  text_array j_task, j_kind, j_payload;               // $11-$15 with j_seq, j_ts
  int_array j_seq, j_ts;
  task_arrays snapshots;                              // $16-$25
  text_array c_task, c_step, c_agent, c_team, c_provider, c_model, c_outcome;  // $26-$37
  int_array c_in, c_out, c_latency, c_ts;
  float_array c_usd;
  int_array a_ts;                                     // $38-$43
  text_array a_principal, a_action, a_target, a_detail, a_outcome;
  text_array e_team, e_agent, e_detail;               // $44-$50
  int_array e_paused, e_failed, e_updated;
  float_array e_spent;
  text_array d_id, d_task, d_step, d_state, d_record; // $51-$56
  int_array d_deadline;
  std::uint64_t commit_id = 0;                        // $61-$62: its slot and itself
};

/// The columns of `batch`, leaving out the snapshots whose index is in `skip`.
batch_columns columns_of(const base::write_batch& batch, const std::vector<bool>& skip);

/// The columns of the snapshots whose index is in `only` (nothing else).
batch_columns snapshot_columns(const std::vector<base::task_row>& snapshots,
                               const std::vector<bool>& only);

/// The statement: writes every kind in the order the port documents, returns
/// the ids of the new tasks that went in. Journal rows that a snapshot of the
/// same statement covers are not inserted (a CTE cannot see rows another CTE
/// of its statement wrote, so they could not be trimmed afterwards).
extern const char* const batch_sql;

}  // namespace troupe::persistence::detail
