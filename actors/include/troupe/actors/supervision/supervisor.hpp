#pragma once
/// The actor-side half of supervision: a helper object that a supervising actor
/// keeps in its state (the team for its agents and decision actors, the root for
/// the teams). It starts children in order, links and monitors them, and on a
/// child's abnormal exit asks the restart_policy which children to stop and start
/// again, or escalates when the restart intensity is exceeded. What a child's
/// stop means for its work (fail it, requeue it) is the owner's business: the
/// helper calls the owner's hooks, always on the owner's own actor thread.
///
/// Children are linked (they end with their supervisor) and monitored (a crash
/// arrives as a down message, which the owner hands to on_down). The owner's
/// exit handler ignores exit messages from addresses the helper knows().
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "troupe/actors/supervision/restart_policy.hpp"

namespace troupe::actors::supervision {

/// permanent: every exit restarts the child; transient: a normal exit is final.
enum class restart_mode { permanent, transient };
/// group: one intensity for all children, exceeding it stops them all (OTP);
/// per_child: each child has its own budget and only that child is given up
/// (the root uses it so one crashing team never spends another team's budget).
enum class intensity_scope { group, per_child };

/// What happened to a child, for the owner's `stopped` hook.
struct stop_info {
  bool crashed = false;     ///< it failed itself; false: stopped because a sibling failed or on escalation
  bool restarting = false;  ///< it is started again right away
  std::string reason;       ///< the rendered exit reason when crashed
};

struct child_hooks {
  /// Spawns the child with the given key (first start and every restart). The
  /// helper links and monitors the handle. An invalid handle means the owner
  /// starts it later (asynchronous preparation) and then calls adopt().
  std::function<caf::actor(const std::string& key)> start;
  /// The child is gone (crashed, or stopped by the helper): release its work.
  std::function<void(const std::string& key, const stop_info& info)> stopped;
  /// The child runs again after a restart.
  std::function<void(const std::string& key)> restarted;
  /// The restart intensity was exceeded by the failure of `key`. In group scope
  /// every child has been stopped; in per_child scope only `key` is given up.
  std::function<void(const std::string& key, const std::string& reason)> escalated;
};

class supervisor {
 public:
  supervisor() = default;
  supervisor(restart_policy policy, restart_mode mode, intensity_scope scope, child_hooks hooks);

  /// Appends a child (start order = order of add) and starts it unless `start_now` is false.
  void add(caf::local_actor* self, std::string key, bool start_now = true);
  /// Children are monitored but not linked: the owner stops them when it ends itself
  /// (a team's agents: a link costs two more attachables per agent, one in each actor).
  void monitor_only() { link_ = false; }
  /// Room for `n` children without reallocating (a team of 100,000 agents).
  void reserve(std::size_t n) { children_.reserve(n); }
  /// Takes over a child the owner started itself (after start() returned an invalid handle).
  void adopt(caf::local_actor* self, const std::string& key, caf::actor handle);
  /// Ends supervision of a child without restarting it (no down or exit message
  /// will follow) and returns its handle; the owner tells it to finish.
  caf::actor release(caf::local_actor* self, const std::string& key);
  /// Handles a down message; false when it did not come from one of our children.
  bool on_down(caf::local_actor* self, const caf::down_msg& msg);
  /// Starts one stopped child again (e.g. the root reviving a given-up team).
  void restart_child(caf::local_actor* self, const std::string& key);
  /// Starts every stopped child again and forgets the restart history (operator restart).
  void restart_stopped(caf::local_actor* self);
  /// Stops every child without restarting it (stopped hooks are called).
  void stop_all(caf::local_actor* self);

  /// True for a current child or one that ended recently (its exit message may still be queued).
  bool knows(const caf::actor_addr& source) const;
  caf::actor handle(const std::string& key) const;
  /// True for a child under supervision, running or stopped (not released).
  bool has(const std::string& key) const { return find(key) < children_.size(); }
  bool running(const std::string& key) const { return static_cast<bool>(handle(key)); }
  /// Group scope: the intensity was exceeded and no restart_stopped happened since.
  bool escalated() const { return escalated_; }
  std::size_t size() const { return children_.size(); }
  std::uint64_t restarts() const { return restarts_; }

 private:
  struct child {
    std::string key;
    caf::actor handle;  ///< invalid while stopped or starting
  };
  std::size_t find(const std::string& key) const;
  void start(caf::local_actor* self, std::size_t pos);
  void attach(caf::local_actor* self, std::size_t pos, caf::actor handle);
  /// Stops a running sibling: no down/exit message will come from it.
  void stop(caf::local_actor* self, std::size_t pos, bool restarting);
  void remember(const caf::actor_addr& addr);
  static std::int64_t now_ms(caf::local_actor* self);

  restart_policy policy_;
  restart_mode mode_ = restart_mode::permanent;
  intensity_scope scope_ = intensity_scope::group;
  child_hooks hooks_;
  std::vector<child> children_;
  std::vector<restart_policy> per_child_;  ///< per_child scope only, parallel to children_
  std::vector<caf::actor_addr> recent_;    ///< last few dead children (bounded ring)
  std::size_t recent_next_ = 0;
  std::uint64_t restarts_ = 0;
  bool escalated_ = false;
  bool link_ = true;
};

}  // namespace troupe::actors::supervision
