#pragma once

#include <caf/actor_system.hpp>
#include <caf/policy/work_stealing.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/coordinator.hpp>
#include <caf/scheduler/worker.hpp>

#include <atomic>
#include <cstddef>
#include <mutex>
#include <unordered_set>

namespace troupe::host {

/// CAF's work stealing, unchanged; a type of its own so that its workers' loop can be
/// the one below.
struct lean_work_stealing : caf::policy::work_stealing {};

}  // namespace troupe::host

/// The scheduling loop of a lean_coordinator worker. CAF's own loop tags every resume
/// with the actor's id for its logger (a cross-casting `dynamic_cast` to find the actor,
/// then a thread-local write), about 3 us per LLM call at 7 resumes per call
/// (docs/benchmarks.md); CAF is built with logging off (`CAF_LOG_LEVEL_QUIET`), so
/// nothing reads that id. Otherwise the same steps: take a job from the policy, resume
/// it, and keep, drop or requeue it by what the resume says.
template <>
inline void caf::scheduler::worker<troupe::host::lean_work_stealing>::run() {
  for (;;) {
    resumable* job = policy_.dequeue(this);
    policy_.before_resume(this, job);
    const auto outcome = job->resume(this, max_throughput_);
    policy_.after_resume(this, job);
    if (outcome == resumable::resume_later) {
      policy_.resume_job_later(this, job);  // still referenced: it stays in the queue
    } else if (outcome == resumable::awaiting_message) {
      intrusive_ptr_release(job);  // scheduled again when a message arrives
    } else if (outcome == resumable::done) {
      policy_.after_completion(this, job);
      intrusive_ptr_release(job);
    } else {  // shutdown_execution_unit
      policy_.after_completion(this, job);
      policy_.before_shutdown(this);
      return;
    }
  }
}

namespace troupe::host {

/// CAF's clock, minus the wake-ups for actors that never set a timeout.
///
/// In CAF 0.17 every actor that ends cancels its timeouts (`local_actor::cleanup`),
/// and the thread-safe clock turns each cancel into an event for its own thread,
/// which it wakes through a condition variable, whether the actor ever had a
/// timeout or not. An LLM call ends an actor or two (the call, a finished task), so
/// that was one to two clock-thread wake-ups per call. This clock remembers which
/// actors set a timeout and forwards only their cancels; everything else goes to
/// the coordinator's own clock unchanged (delayed messages are not per-actor
/// timeouts: `cancel_timeouts` never touched them). It derives from the thread-safe
/// clock only because the coordinator's `clock()` must return one (covariant
/// override); its own queue and thread are never used.
class timeout_tracking_clock final : public caf::detail::thread_safe_actor_clock {
 public:
  explicit timeout_tracking_clock(caf::detail::thread_safe_actor_clock& real) : real_(real) {}

  void set_ordinary_timeout(time_point t, caf::abstract_actor* self, caf::atom_value type,
                            uint64_t id) override {
    note(self);
    real_.set_ordinary_timeout(t, self, type, id);
  }

  void set_request_timeout(time_point t, caf::abstract_actor* self, caf::message_id id) override {
    note(self);
    real_.set_request_timeout(t, self, id);
  }

  void set_multi_timeout(time_point t, caf::abstract_actor* self, caf::atom_value type,
                         uint64_t id) override {
    note(self);
    real_.set_multi_timeout(t, self, type, id);
  }

  void cancel_ordinary_timeout(caf::abstract_actor* self, caf::atom_value type) override {
    real_.cancel_ordinary_timeout(self, type);
  }

  void cancel_request_timeout(caf::abstract_actor* self, caf::message_id id) override {
    real_.cancel_request_timeout(self, id);
  }

  void cancel_timeouts(caf::abstract_actor* self) override {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (with_timeouts_.erase(self) == 0) return;
    }
    forwarded_cancels_.fetch_add(1, std::memory_order_relaxed);
    real_.cancel_timeouts(self);
  }

  /// How many `cancel_timeouts` reached the coordinator's clock (for tests).
  std::size_t forwarded_cancels() const noexcept { return forwarded_cancels_.load(std::memory_order_relaxed); }

  void schedule_message(time_point t, caf::strong_actor_ptr receiver,
                        caf::mailbox_element_ptr content) override {
    real_.schedule_message(t, std::move(receiver), std::move(content));
  }

  void schedule_message(time_point t, caf::group target, caf::strong_actor_ptr sender,
                        caf::message content) override {
    real_.schedule_message(t, std::move(target), std::move(sender), std::move(content));
  }

  void cancel_all() override { real_.cancel_all(); }

 private:
  void note(caf::abstract_actor* self) {
    std::lock_guard<std::mutex> guard{mtx_};
    with_timeouts_.insert(self);
  }

  caf::detail::thread_safe_actor_clock& real_;
  std::mutex mtx_;
  /// Actors that set a timeout since their last `cancel_timeouts`. An actor's
  /// cleanup erases it, so an address reused by a later actor starts clean.
  std::unordered_set<const caf::abstract_actor*> with_timeouts_;
  std::atomic<std::size_t> forwarded_cancels_{0};
};

/// CAF's work-stealing coordinator with the clock above and the workers' loop above.
/// Loaded as the actor system's scheduler module (CAF then skips its own choice of
/// scheduler).
class lean_coordinator final : public caf::scheduler::coordinator<lean_work_stealing> {
 public:
  using super = caf::scheduler::coordinator<lean_work_stealing>;

  explicit lean_coordinator(caf::actor_system& sys) : super(sys), clock_(super::clock()) {}

  static caf::actor_system::module* make(caf::actor_system& sys, caf::detail::type_list<>) {
    return new lean_coordinator(sys);
  }

  caf::detail::thread_safe_actor_clock& clock() noexcept override { return clock_; }

 private:
  timeout_tracking_clock clock_;
};

}  // namespace troupe::host
