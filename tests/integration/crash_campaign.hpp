#pragma once
/// The kill -9 crash campaign shared by the SQLite and PostgreSQL crash tests:
/// submit tasks of a 3-step workflow, SIGKILL the daemon at seeded random
/// moments while work is in flight, restart it on the same store, and audit
/// the outcome through the HTTP API and the store's own tables.
#include <csignal>
#include <cstdint>
#include <string>

#include "integration_env.hpp"

namespace troupe::test {

/// Which team the campaign drives.
enum class campaign_workflow {
  pipeline,  ///< pipeline_config(): three agent steps, outputs chained
  newsroom,  ///< examples/newsroom.json: research, write, agent review looping back once, publish
};

/// What to run.
struct campaign_options {
  campaign_workflow workflow = campaign_workflow::pipeline;
  int stop_signal = SIGKILL;  ///< SIGKILL (crash) or SIGTERM (drain, must exit 0)
  std::string store_url;      ///< sqlite:PATH or postgresql://...
  int tasks = 500;            ///< acknowledged tasks to reach
  int kills = 12;             ///< SIGKILLs before the final, clean run
  std::uint64_t seed = 1;     ///< seeds the kill moments (logged, so a failure can be replayed)
  int snapshot_every = 16;    ///< runtime.snapshot_every in the daemon's config
  bool faults = false;        ///< pipeline only: every 3rd s2 call fails (retried)
};

/// Figures of one campaign, for the log and docs/durability.md.
struct campaign_stats {
  int kills = 0;
  int acknowledged = 0;
  int in_doubt = 0;           ///< submits cut by a kill
  int in_doubt_stored = 0;    ///< of those, tasks that turned out to be committed
  int reruns = 0;             ///< steps with attempts > 1 (retries, or calls in flight at a kill)
  int failed_calls = 0;       ///< cost ledger rows with an outcome other than ok
  double max_ready_s = 0;     ///< longest spawn-to-ready time of a restart
  double max_recovery_s = 0;  ///< longest recovery_s the daemon reported
  int max_recovered = 0;      ///< most tasks recovered by one restart
  double max_drain_s = 0;     ///< longest SIGTERM-to-exit time (SIGTERM campaigns)
  int refused = 0;            ///< submits refused while draining (SIGTERM campaigns)
  double total_s = 0;
};

/// The 3-step "pipe" team used by the crash and outage tests, as config text
/// (scripted provider, latency [1,5] ms; step outputs embed the attempt number).
/// With `faults`, every 3rd call of step s2 fails with a retryable provider error
/// (the team retries up to 10 attempts, backoff from 5 ms).
std::string pipeline_config(int snapshot_every, bool faults = false);

/// The result a "pipe" task with this input must end with when every step ran once.
std::string pipeline_result(const std::string& input);

/// Default task count: 500.
int default_campaign_tasks();

/// Seed from TROUPE_CRASH_SEED when set, else from the clock.
std::uint64_t campaign_seed();

/// Runs the campaign with gtest assertions; fills `stats`.
void run_crash_campaign(const campaign_options& opts, scratch_dir& dir, campaign_stats& stats);

}  // namespace troupe::test
