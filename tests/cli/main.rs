//! The command line and what it reads: bad input and limits, board profiles, `doctor`, `bench`,
//! and fuzzed parsers.
//!
//! One test binary per area (a module per former test file); `tests/support` is shared by all.

#[path = "../support/mod.rs"]
mod support;

mod bad_input;
mod bench_report;
mod board_profiles;
mod doctor_checks;
mod fuzz_parsers;
mod spatialqa;
