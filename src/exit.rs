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
/// The link to the arm controller was lost and could not be re-established, the controller
/// went silent past the lost-link time, or it did not acknowledge Stop.
pub const LINK_LOST: u8 = 5;
/// The controller refused: the session (protocol mismatch), too many actions in a row
/// (Rejected), or this host's sequence numbers in a fresh session (Duplicate).
pub const CONTROLLER_REFUSED: u8 = 6;
/// The controller reported a fault (Faulted, Fault{Hardware}) other than an e-stop.
pub const CONTROLLER_FAULT: u8 = 7;
/// The controller stopped the session without a Stop from this host.
pub const CONTROLLER_STOPPED: u8 = 8;
/// The run ended as asked, but the arm applied none of its actions.
pub const NOTHING_APPLIED: u8 = 9;

/// The exit codes as `--help` prints them.
pub const TABLE: &str = "Exit codes:
  0  done: steps/duration/recording finished or SIGINT/SIGTERM, and the arm acknowledged Stop
  1  runtime failure: a device, a library or the model failed
  2  bad input: a command-line flag or a file (named in the message)
  3  host watchdog: a stage missed its deadline or the camera stalled (Stop{Watchdog} sent)
  4  emergency stop reported by the controller
  5  link lost: nothing valid from the controller, or no Ack of an Action, past the lost-link
     time; the link could not be reopened; or Stop was not acknowledged
  6  controller refused: session refused, too many Rejected actions, Duplicate in a fresh session
  7  controller fault (Faulted, Fault{Hardware})
  8  the controller stopped the session without a Stop from this host
  9  the run ended but the arm applied none of its actions
A SIGINT/SIGTERM at any instant (start-up included; several at once) sends no further Action and
Stop{Operator} when a session is open: exit 0 once acknowledged, 5 when not.";

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
