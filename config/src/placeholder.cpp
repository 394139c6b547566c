// Placeholder so the target has a source until the module lands; remove when real sources exist.
namespace troupe { int config_placeholder = 0; }
