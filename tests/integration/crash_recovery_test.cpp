// kill -9 crash recovery against the embedded SQLite store (see crash_campaign.hpp).
#include <cstdio>

#include <gtest/gtest.h>

#include "crash_campaign.hpp"

namespace troupe::test {

TEST(crash_recovery, sqlite_every_acknowledged_task_ends_once_without_rerunning_committed_steps) {
  scratch_dir dir{"troupe-crash-sqlite"};
  campaign_options opts;
  opts.store_url = "sqlite:" + dir.file("troupe.db");
  opts.tasks = default_campaign_tasks();
  opts.kills = 12;
  opts.seed = campaign_seed();
  std::printf("[crash] sqlite seed=%llu (replay with TROUPE_CRASH_SEED) tasks=%d kills=%d\n",
              static_cast<unsigned long long>(opts.seed), opts.tasks, opts.kills);
  campaign_stats stats;
  run_crash_campaign(opts, dir, stats);
  std::printf(
      "[crash] sqlite: kills=%d acknowledged=%d in_doubt=%d (committed %d) reruns=%d "
      "max_ready_s=%.3f max_recovery_s=%.3f max_recovered=%d total_s=%.1f\n",
      stats.kills, stats.acknowledged, stats.in_doubt, stats.in_doubt_stored, stats.reruns,
      stats.max_ready_s, stats.max_recovery_s, stats.max_recovered, stats.total_s);
  if (HasFailure()) {
    dir.keep();
    std::printf("[crash] kept %s (daemon.log)\n", dir.path().c_str());
  }
}

}  // namespace troupe::test
