//! The host side of the action link: the governor, the link over a pty against the simulated
//! controller, `arm-sim`, and the real binary against scripted controllers.
//!
//! One test binary per area (a module per former test file); `tests/support` is shared by all.

#[path = "../support/mod.rs"]
mod support;

mod arm_sim_cli;
mod link_e2e;
mod link_governor;
mod link_scenarios;
