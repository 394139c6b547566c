// Placeholder so the target has a source until the module lands; remove when real sources exist.
namespace troupe { int protocols_placeholder = 0; }
