// kill -9 crash recovery (and SIGTERM drains) against the embedded SQLite store;
// see crash_campaign.hpp.
#include <gtest/gtest.h>

#include <cstdio>

#include "crash_campaign.hpp"

namespace troupe::test {
namespace {

void run_sqlite_campaign(const char* label, campaign_options opts) {
  scratch_dir dir{"troupe-crash-sqlite"};
  opts.store_url = "sqlite:" + dir.file("troupe.db");
  opts.seed = campaign_seed();
  std::printf("[crash] %s seed=%llu (replay with TROUPE_CRASH_SEED) tasks=%d stops=%d signal=%d\n",
              label, static_cast<unsigned long long>(opts.seed), opts.tasks, opts.kills,
              opts.stop_signal);
  campaign_stats stats;
  run_crash_campaign(opts, dir, stats);
  std::printf(
      "[crash] %s: stops=%d acknowledged=%d in_doubt=%d (committed %d) refused=%d reruns=%d "
      "failed_calls=%d "
      "max_ready_s=%.3f max_recovery_s=%.3f max_recovered=%d max_drain_s=%.3f total_s=%.1f\n",
      label, stats.kills, stats.acknowledged, stats.in_doubt, stats.in_doubt_stored, stats.refused,
      stats.reruns, stats.failed_calls, stats.max_ready_s, stats.max_recovery_s,
      stats.max_recovered, stats.max_drain_s, stats.total_s);
  if (::testing::Test::HasFailure()) {
    dir.keep();
    std::printf("[crash] kept %s (daemon.log)\n", dir.path().c_str());
  }
}

}  // namespace

TEST(crash_recovery, sqlite_every_acknowledged_task_ends_once_without_rerunning_committed_steps) {
  campaign_options opts;
  opts.tasks = default_campaign_tasks();
  opts.kills = 12;
  run_sqlite_campaign("sqlite", opts);
}

TEST(crash_recovery,
     sqlite_retried_provider_errors_survive_kill_9_without_repeating_successful_calls) {
  campaign_options opts;
  opts.faults = true;
  opts.tasks = 300;
  opts.kills = 10;
  run_sqlite_campaign("sqlite-faults", opts);
}

TEST(crash_recovery, sqlite_newsroom_review_loops_survive_kill_9_without_repeating_calls) {
  campaign_options opts;
  opts.workflow = campaign_workflow::newsroom;
  opts.tasks = 200;
  opts.kills = 10;
  run_sqlite_campaign("sqlite-newsroom", opts);
}

TEST(graceful_stop, sqlite_sigterm_under_load_exits_0_and_the_restart_finishes_every_task) {
  campaign_options opts;
  opts.stop_signal = SIGTERM;
  opts.tasks = 300;
  opts.kills = 6;
  run_sqlite_campaign("sqlite-sigterm", opts);
}

}  // namespace troupe::test
