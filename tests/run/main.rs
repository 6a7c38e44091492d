//! The control loop: in process with fake stages, over a pty to the simulator, on the sample
//! recording, with registration and the guard, and `run` end to end (the Python reference,
//! faults, nothing lost on signals).
//!
//! One test binary per area (a module per former test file); `tests/support` is shared by all.

#[path = "../support/mod.rs"]
mod support;

mod nothing_lost;
mod run_cli;
mod run_constrained;
mod run_e2e_reference;
mod run_faults_e2e;
mod run_guard;
mod run_link_pty;
mod run_loop_faults;
mod run_register_in_loop;
mod run_sample;
mod run_triton;
mod sim;
mod sim_policy_reference;
