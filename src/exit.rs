//! Process exit codes. Supervisors (systemd) use them to tell a crash from a safety stop.

/// Everything went as asked.
pub const OK: u8 = 0;
/// A runtime failure: a device, a library or the model failed.
pub const RUNTIME: u8 = 1;
/// Bad usage or a bad input file: fix the command line or the file.
pub const BAD_INPUT: u8 = 2;
/// The watchdog stopped the arm: a pipeline stage missed its deadline.
pub const WATCHDOG_STOP: u8 = 3;
/// An emergency stop was requested (by the controller or the operator).
pub const ESTOP: u8 = 4;
/// The link to the arm controller was lost and could not be re-established.
pub const LINK_LOST: u8 = 5;

/// An error that carries the exit code the process should end with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitError {
    pub code: u8,
    pub message: String,
}

impl ExitError {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self {
            code: BAD_INPUT,
            message: message.into(),
        }
    }
    pub fn runtime(message: impl Into<String>) -> Self {
        Self {
            code: RUNTIME,
            message: message.into(),
        }
    }
}
