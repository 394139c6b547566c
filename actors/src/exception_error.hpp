#pragma once
// Private: turns an exception escaping an actor's handler into the error its
// supervisor sees in the down message (instead of CAF's raw stderr line).
#include <exception>
#include <string>

#include <caf/all.hpp>

namespace troupe::actors::detail {

/// What an exception escaping an actor's handler says.
inline std::string exception_what(std::exception_ptr& ep) {
  try {
    std::rethrow_exception(ep);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

inline caf::error exception_to_error(caf::scheduled_actor*, std::exception_ptr& ep) {
  try {
    std::rethrow_exception(ep);
  } catch (const std::exception& e) {
    return caf::make_error(caf::sec::runtime_error, std::string(e.what()));
  } catch (...) {
    return caf::make_error(caf::sec::runtime_error, std::string("unknown exception"));
  }
}

}  // namespace troupe::actors::detail
