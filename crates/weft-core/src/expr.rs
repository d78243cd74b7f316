//! Placeholder: expressions.
