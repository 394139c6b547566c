#pragma once
// A team actor on CAF's test coordinator: nothing runs until the test says so,
// and timers (scripted latency, backoff, decision timeouts) fire only when the
// test moves virtual time. Events from the bus are recorded for assertions.
#include <map>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "troupe/actors/messages.hpp"
#include "troupe/actors/team_actor.hpp"

namespace troupe::actors::testing {

struct testing_config : caf::actor_system_config {
  testing_config() { set("scheduler.policy", caf::atom("testing")); }
};

/// A config with one team "t" of agents a1..aN (capability "work") on scripted provider "p".
nlohmann::json team_config(nlohmann::json replies, nlohmann::json workflow, int agents, nlohmann::json supervision,
                           int latency_ms = 1000);
/// The team_spec the runtime would build for team `team` of `cfg`.
team_spec spec_of(const nlohmann::json& cfg, const std::string& team = "t");

class team_fixture : public ::testing::Test {
 public:
  testing_config cfg;
  caf::actor_system sys{cfg};
  caf::scheduler::test_coordinator& sched = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  std::shared_ptr<agents::event_bus> bus = std::make_shared<agents::event_bus>();
  std::vector<std::pair<std::string, nlohmann::json>> events;
  std::map<std::string, nlohmann::json> finished;  ///< task id -> its last task.update
  caf::actor team;

  team_fixture();
  ~team_fixture() override;
  void spawn(team_spec spec);
  /// Sends `op` with a reply slot to `to` (default: the team) and runs the mailbox until answered.
  base::result<nlohmann::json> ask(const caf::message& msg, caf::actor to = {});
  std::string submit(const std::string& input, const std::string& agent = {}, int max_attempts = 0);
  nlohmann::json status();
  /// Runs and advances virtual time in `step_ms` steps until `done` holds (at most `max_ms`).
  bool run_until(const std::function<bool()>& done, std::int64_t max_ms = 120000, std::int64_t step_ms = 50);
  std::size_t count(const std::string& name, const std::function<bool(const nlohmann::json&)>& pred) const;
  /// Agent states emitted for `agent`, in order.
  std::vector<std::string> agent_states(const std::string& agent) const;

 private:
  std::shared_ptr<void> token_;
};

}  // namespace troupe::actors::testing
