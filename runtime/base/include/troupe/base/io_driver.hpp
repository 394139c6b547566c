#pragma once
/// An event loop (an I/O context with a thread of its own) that the scheduler's idle
/// workers may drive instead of its thread.
///
/// Every sleep and wake of a thread costs CPU time, a lot of it on a virtual machine
/// (docs/benchmarks.md); an I/O thread that sleeps in the kernel between replies wakes
/// once per reply, and the worker that then runs the reply's actors wakes once more.
/// A worker that polls on a timer anyway can look at the sockets in the same wake-up.
/// While the loop is taken, its own thread waits; given back, it runs it again.
namespace troupe::base {

class io_driver {
 public:
  virtual ~io_driver() = default;
  /// Takes the loop from its own thread; blocks until that thread has let go.
  /// False once the loop is closed (its owner is shutting down): then poll does nothing.
  virtual bool take() = 0;
  /// Runs whatever is ready (I/O completions, timers, posted work) without blocking,
  /// if the loop is taken and no other caller is polling it: false otherwise.
  virtual bool poll() = 0;
  /// Gives the loop back to its own thread (nothing if it was not taken).
  virtual void give_back() = 0;
};

}  // namespace troupe::base
