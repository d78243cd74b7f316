//! Placeholder: the pure orchestrator.
