//! Durable state: runs, steps, the task queue, the event log and the step cache.
//!
//! [`Store`] is the contract; [`SqlStore`] keeps it on SQLite (embedded) or PostgreSQL (shared
//! by many processes) with one text per SQL statement (`db.rs` holds the seam between the two).
//! All writes go through a [`Tx`]: the engine records a task's result, its step's new state,
//! the next tasks and their events in one transaction, so they commit together or not at all.
//!
//! Architecture Invariant: the store holds no workflow logic. It never renders an expression
//! or decides what runs next; it stores what the engine decided and answers queries.
//!
//! Layering (no module imports one that imports it back, no backend imports the other):
//! `error`, `records`, `status` → the table modules' types and traits, `api` → `db` (the seam)
//! and `rows` (decoders) → `sqlite`, `postgres` (what differs) → `tx`, `store` (the one
//! implementation). This file only declares and re-exports.

mod api;
mod db;
mod error;
mod health;
pub mod memory;
pub mod postgres;
mod records;
mod rows;
pub mod schedules;
pub mod secrets;
pub mod server;
pub mod sqlite;
mod status;
mod store;
pub mod tokens;
mod tx;
pub mod usage;
pub mod workers;

pub use api::*;
pub use db::SqlStore;
pub use error::{Error, Result};
pub use health::RECENT as CANNOT_WRITE_RECENT;
pub use records::*;
pub use status::{LeaseHolder, QueueStatus, SchemaStatus};
pub use weft_core::orchestrator::{RunStatus, StepStatus};
