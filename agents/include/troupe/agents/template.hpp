#pragma once
/// Prompt templating: {{input}}, {{prompt}}, {{step.ID}}, {{agent}}, {{attempt}}.
/// Unknown placeholders are kept verbatim (config validation rejects them earlier).
#include <functional>
#include <string>
#include <string_view>

namespace troupe::agents {

/// Looks a placeholder name up ("input", "step.research", ...); returns false
/// when it is unknown.
using template_lookup = std::function<bool(std::string_view name, std::string& out)>;

std::string render_template(std::string_view text, const template_lookup& lookup);

}  // namespace troupe::agents
