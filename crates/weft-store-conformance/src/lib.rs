//! The store's conformance suites, kept out of the shipped `weft-store` library: the one
//! contract every backend must keep, as runnable checks. `tests/` runs them on SQLite (a temp
//! file per check) and PostgreSQL (a fresh database per check, `WEFT_TEST_PG`).

pub mod conformance;
pub mod conformance_server;
pub mod conformance_usage;
