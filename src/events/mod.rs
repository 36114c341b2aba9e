//! The e-commerce events the pipeline carries, and a seeded generator of
//! realistic traffic.

mod generator;
mod model;

pub use generator::{EventGenerator, GeneratorConfig};
pub use model::{Event, EventKind, LineItem};
