#pragma once
/// result<T>: a value or a base::error (tl::expected until we reach C++23).
#include <tl/expected.hpp>

#include "troupe/base/error.hpp"

namespace troupe::base {

template <class T>
using result = tl::expected<T, error>;

inline tl::unexpected<error> fail(errc code, std::string message, bool retryable = false) {
  return tl::unexpected<error>(error{code, std::move(message), retryable});
}

inline tl::unexpected<error> fail(error e) { return tl::unexpected<error>(std::move(e)); }

}  // namespace troupe::base
