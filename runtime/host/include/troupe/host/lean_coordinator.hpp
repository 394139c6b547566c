#pragma once

#include <caf/actor_system.hpp>
#include <caf/policy/work_stealing.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/coordinator.hpp>
#include <caf/scheduler/worker.hpp>

#include "troupe/base/io_driver.hpp"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>

namespace troupe::host {

/// CAF's work stealing with one worker at a time polling on a timer.
///
/// A worker whose queue ran dry spins a little, then polls "moderately" (short sleeps
/// between looks at the queues), then sleeps on a condition variable
/// until a job is enqueued to it. On a virtual machine every wake-up from a sleep
/// costs tens of microseconds of the thread's CPU time (the timer's programming, the
/// idle CPU's exit), and CAF lets every idle worker poll: between LLM responses that
/// was one timed wake-up per worker per millisecond, most of them finding nothing a
/// single one would not have found. Here only one idle worker polls (the poller); the
/// others sleep on their condition variable at once. A job from outside the workers
/// (an I/O thread, the store, the clock) goes to the poller, or to a worker that is
/// running a job, before it goes to, and wakes, a sleeping one; so a worker sleeps
/// through the load one worker can carry. More workers take part when it cannot:
/// a worker that takes 256 jobs in a row without its queue running dry wakes a
/// sleeping one to steal from it, and a sleeper whose wait times out (CAF's relaxed
/// sleep, 10 ms) while another worker runs jobs becomes the poller if there is none.
struct lean_work_stealing : caf::policy::work_stealing {
  using base = caf::policy::work_stealing;
  static constexpr std::size_t no_worker = static_cast<std::size_t>(-1);
  /// Jobs taken in a row from a queue that still had more: then a sleeper is woken.
  /// (32 woke one most milliseconds at 5,000 LLM calls/s, for bursts one worker
  /// clears in well under a millisecond: 6 % more CPU per call, docs/benchmarks.md.)
  static constexpr int backlog_run = 256;
  /// Jobs a busy worker takes between two polls of the loop it drives.
  static constexpr int io_every = 64;
  /// Polls in a window after one that found nothing.
  static constexpr std::size_t short_window = 4;

  struct coordinator_data : base::coordinator_data {
    explicit coordinator_data(caf::scheduler::abstract_coordinator* p) : base::coordinator_data(p) {}
    std::atomic<std::size_t> poller{no_worker};  ///< the worker polling on a timer, if any
    std::atomic<troupe::base::io_driver*> io{nullptr};  ///< a loop the workers drive, if any
    std::atomic<bool> idle{false};  ///< the last polling window found nothing: the next is short
  };

  struct worker_data : base::worker_data {
    explicit worker_data(caf::scheduler::abstract_coordinator* p) : base::worker_data(p) {}
    worker_data(const worker_data& other) : base::worker_data(other) {}
    /// waitdata.sleeping (which CAF's enqueue reads under the lock), for a look without it
    std::atomic<bool> asleep{false};
    bool kicked = false;              ///< woken to steal (guarded by waitdata.lock)
    int run = 0;                      ///< jobs taken in a row with more left in the queue
    int since_io = 0;                 ///< jobs taken since this worker last polled the loop
  };

  /// A job from outside the workers: to the poller, else to a worker that is awake,
  /// else (all asleep) to the next one in turn, which the enqueue wakes.
  template <class Coordinator>
  void central_enqueue(Coordinator* self, caf::resumable* job) {
    auto& cd = d(self);
    const auto n = self->num_workers();
    auto target = cd.poller.load(std::memory_order_acquire);
    if (target == no_worker || target >= n) {
      const auto first = cd.next_worker.fetch_add(1, std::memory_order_relaxed);
      target = first % n;
      for (std::size_t k = 0; k < n; ++k) {
        auto i = (first + k) % n;
        if (!d(self->worker_by_id(i)).asleep.load(std::memory_order_acquire)) {
          target = i;
          break;
        }
      }
    }
    self->worker_by_id(target)->external_enqueue(job);
  }

  template <class Worker>
  caf::resumable* dequeue(Worker* self) {
    auto& me = d(self);
    if (auto job = me.queue.take_head()) return after_take(self, job);
    me.run = 0;
    // Dry: first let the loop send what the jobs just run asked for.
    if (poll_io(self))
      if (auto job = me.queue.take_head()) return job;
    const auto& aggressive = me.strategies[0];
    for (std::size_t i = 0; i < aggressive.attempts; i += aggressive.step_size) {
      if (auto job = me.queue.take_head()) return job;
      if (i % aggressive.steal_interval == 0)
        if (auto job = try_steal(self)) return job;
    }
    auto& cd = d(self->parent());
    if (auto job = poll(self, cd)) return job;
    for (;;) {
      if (auto job = sleep(self)) return job;
      // An idle daemon's workers stay asleep; a worker running jobs gets a poller.
      if (other_running(self, cd))
        if (auto job = poll(self, cd)) return job;
    }
  }

  template <class Worker>
  void before_shutdown(Worker* self) {
    if (auto* io = d(self->parent()).io.load(std::memory_order_acquire)) io->give_back();
  }

 private:
  /// Polls the loop the workers drive, if it is theirs now.
  template <class Worker>
  static bool poll_io(Worker* self) {
    auto& me = d(self);
    me.since_io = 0;
    auto* io = d(self->parent()).io.load(std::memory_order_acquire);
    return io != nullptr && io->poll();
  }

  template <class Worker>
  caf::resumable* after_take(Worker* self, caf::resumable* job) {
    auto& me = d(self);
    // A worker busy for long still looks at the sockets now and then.
    if (++me.since_io >= io_every) poll_io(self);
    if (++me.run < backlog_run) return job;
    me.run = 0;
    if (me.queue.empty()) return job;
    // A backlog this worker has carried for a while: wake a sleeper to steal.
    auto p = self->parent();
    for (std::size_t i = 0; i < p->num_workers(); ++i) {
      auto& other = d(p->worker_by_id(i));
      if (i == self->id() || !other.asleep.load(std::memory_order_acquire)) continue;
      std::unique_lock<std::mutex> guard(other.waitdata.lock);
      if (!other.waitdata.sleeping) continue;
      other.kicked = true;
      other.waitdata.cv.notify_one();
      break;
    }
    return job;
  }

  /// Whether another worker is awake and not polling: running jobs.
  template <class Worker>
  static bool other_running(Worker* self, const coordinator_data& cd) {
    auto p = self->parent();
    const auto poller = cd.poller.load(std::memory_order_acquire);
    for (std::size_t i = 0; i < p->num_workers(); ++i)
      if (i != self->id() && i != poller && !d(p->worker_by_id(i)).asleep.load(std::memory_order_acquire))
        return true;
    return false;
  }

  /// Every other worker's queue, from the back.
  template <class Worker>
  caf::resumable* steal_any(Worker* self) {
    auto p = self->parent();
    const auto n = p->num_workers();
    for (std::size_t k = 1; k < n; ++k)
      if (auto job = d(p->worker_by_id((self->id() + k) % n)).queue.take_tail()) return job;
    return nullptr;
  }

  /// The moderate strategy's timed polling, if no other worker is doing it.
  template <class Worker>
  caf::resumable* poll(Worker* self, coordinator_data& cd) {
    auto& me = d(self);
    auto none = no_worker;
    if (!cd.poller.compare_exchange_strong(none, self->id(), std::memory_order_acq_rel)) return nullptr;
    auto* io = cd.io.load(std::memory_order_acquire);
    if (io != nullptr && !io->take()) io = nullptr;
    const auto& moderate = me.strategies[1];
    // After a window that found nothing (an idle daemon's timer events, or work far
    // apart) a short one: a few ticks, not the whole window, per event; a window that
    // finds work makes the next one whole again.
    const auto ticks = cd.idle.load(std::memory_order_relaxed) ? std::min(moderate.attempts, short_window)
                                                               : moderate.attempts;
    caf::resumable* job = nullptr;
    for (std::size_t i = 0; i < ticks && job == nullptr; i += moderate.step_size) {
      std::this_thread::sleep_for(moderate.sleep_duration);
      if (io != nullptr) io->poll();
      job = me.queue.take_head();
      if (job == nullptr) job = steal_any(self);
    }
    cd.idle.store(job == nullptr, std::memory_order_relaxed);
    // Idle for the whole window: the loop's own thread waits in the kernel for it.
    if (job == nullptr && io != nullptr) io->give_back();
    cd.poller.store(no_worker, std::memory_order_release);
    // A job enqueued to the poller as it gave up is in its queue now: the next look
    // (this worker's sleep checks its queue first) finds it.
    return job;
  }

  /// The relaxed strategy: a condition variable, woken by a job for this worker or
  /// by a busy worker's kick; a timeout steals, then lets the caller try to poll.
  template <class Worker>
  caf::resumable* sleep(Worker* self) {
    auto& me = d(self);
    const auto& relaxed = me.strategies[2];
    {
      std::unique_lock<std::mutex> guard(me.waitdata.lock);
      me.waitdata.sleeping = true;
      me.asleep.store(true, std::memory_order_release);
      me.waitdata.cv.wait_for(guard, relaxed.sleep_duration, [&] { return !me.queue.empty() || me.kicked; });
      me.kicked = false;
      me.waitdata.sleeping = false;
      me.asleep.store(false, std::memory_order_release);
    }
    if (auto job = me.queue.take_head()) return job;
    return steal_any(self);
  }
};

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

  /// Workers asleep on their condition variable now (for tests).
  std::size_t sleeping_workers() {
    std::size_t n = 0;
    for (std::size_t i = 0; i < num_workers(); ++i)
      if (worker_by_id(i)->data().asleep.load(std::memory_order_acquire)) ++n;
    return n;
  }

  /// Lets the idle workers drive `io` (see lean_work_stealing); at most once.
  void drive(std::shared_ptr<troupe::base::io_driver> io) {
    io_ = std::move(io);
    data().io.store(io_.get(), std::memory_order_release);
  }

  static caf::actor_system::module* make(caf::actor_system& sys, caf::detail::type_list<>) {
    return new lean_coordinator(sys);
  }

  caf::detail::thread_safe_actor_clock& clock() noexcept override { return clock_; }

 private:
  timeout_tracking_clock clock_;
  std::shared_ptr<troupe::base::io_driver> io_;
};

}  // namespace troupe::host
