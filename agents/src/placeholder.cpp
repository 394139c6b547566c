// Placeholder so the target has a source until the module lands; remove when real sources exist.
namespace troupe { int agents_placeholder = 0; }
