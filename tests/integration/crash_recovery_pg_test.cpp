// kill -9 crash recovery against PostgreSQL (the ctest `postgres` fixture).
#include <gtest/gtest.h>

#include <cstdio>

#include "crash_campaign.hpp"
#include "support/pg/pg_test_env.hpp"

namespace troupe::test {

TEST(crash_recovery, postgres_every_acknowledged_task_ends_once_without_rerunning_committed_steps) {
  TROUPE_MAKE_PG_DATABASE_OR_SKIP(db);
  scoped_pg_database owner{*db};
  scratch_dir dir{"troupe-crash-pg"};
  campaign_options opts;
  opts.store_url = db->url;
  opts.tasks = default_campaign_tasks();
  opts.kills = 12;
  opts.seed = campaign_seed();
  // Snapshot often so recovery also rebuilds tasks from snapshots, not only journals.
  opts.snapshot_every = 2;
  std::printf("[crash] postgres seed=%llu (replay with TROUPE_CRASH_SEED) tasks=%d kills=%d\n",
              static_cast<unsigned long long>(opts.seed), opts.tasks, opts.kills);
  campaign_stats stats;
  run_crash_campaign(opts, dir, stats);
  std::printf(
      "[crash] postgres: kills=%d acknowledged=%d in_doubt=%d (committed %d) reruns=%d "
      "max_ready_s=%.3f max_recovery_s=%.3f max_recovered=%d total_s=%.1f\n",
      stats.kills, stats.acknowledged, stats.in_doubt, stats.in_doubt_stored, stats.reruns,
      stats.max_ready_s, stats.max_recovery_s, stats.max_recovered, stats.total_s);
  if (HasFailure()) {
    dir.keep();
    std::printf("[crash] kept %s (daemon.log)\n", dir.path().c_str());
  }
}

}  // namespace troupe::test
