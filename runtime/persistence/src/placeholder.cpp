// Placeholder so the target has a source until the module lands; remove when real sources exist.
namespace troupe { int persistence_placeholder = 0; }
