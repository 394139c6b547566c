#pragma once
/// Store URL helpers shared by open_store and the PostgreSQL store (private).
#include <string>

namespace troupe::persistence::detail {

/// The password embedded in a postgresql:// URL (user info or `password=`
/// query parameter); empty when there is none.
std::string url_password(const std::string& url);

/// `text` with every occurrence of `secret` replaced by "***" (no-op when empty).
std::string scrub(std::string text, const std::string& secret);

}  // namespace troupe::persistence::detail
