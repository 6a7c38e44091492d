//! The arm controller the simulator runs: `spatialbot_link`'s reference controller (SPEC.md
//! §6), re-exported so the host names it as `link::controller`. `sim.rs` runs it on a byte
//! stream.

pub use spatialbot_link::controller::{
    Controller, ControllerConfig, Event, Outbox, OUTBOX_BYTES, OUTBOX_EVENTS,
};
