//! Checks of what landed, for tests in any language: [`snapshot`]s of the
//! decoded landing, and [`expect`]ations (exactly once, no errors, key
//! shape).

pub mod expect;
pub mod snapshot;
