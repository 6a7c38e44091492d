//! One module per subcommand. Each defines `Args` (clap) and `run(args, json) -> exit code`.
//!
//! Commands write to stdout through [`print_json`], `out!` and `outln!`: when the reader has
//! closed stdout (`spatialbot-edge devices --json | head -c1`) the output is dropped quietly and
//! the command ends with its own exit code.

/// `print!` to stdout that never panics; see [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::cmd::write_stdout_text(format_args!($($arg)*)) };
}

/// `println!` to stdout that never panics; see [`write_stdout`].
macro_rules! outln {
    () => { $crate::cmd::write_stdout_text(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cmd::write_stdout_text(format_args!("{}\n", format_args!($($arg)*))) };
}

pub mod arm_sim;
pub mod ask;
pub mod assemble;
pub mod bench;
pub mod demos;
pub mod devices;
pub mod doctor;
pub mod eval;
pub mod guard_eval;
pub mod pack;
pub mod preprocess;
pub mod qa_eval;
pub mod record;
pub mod register;
pub mod replay;
pub mod run;
pub mod spatialqa;
pub mod triton_repo;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use spatialbot_edge::exit::{self, ExitError};

/// Set once anything was written to stdout (so `main` prints no JSON error object after a
/// command's own output).
static STDOUT_USED: AtomicBool = AtomicBool::new(false);
/// Set when stdout turned out to be closed; later writes are skipped.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether a command wrote anything to stdout.
pub fn stdout_used() -> bool {
    STDOUT_USED.load(Ordering::Relaxed)
}

/// Writes to stdout. A closed stdout (`BrokenPipe`: the reader went away) is not an error: the
/// output is dropped, quietly, and so is everything written after it. Any other write error
/// (a full disk behind a redirection) is returned; `out!`/`outln!` log it, [`print_json`]
/// fails the command with it.
pub fn write_stdout(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    STDOUT_USED.store(true, Ordering::Relaxed);
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        other => other,
    }
}

/// [`write_stdout`] for text output: a write error is logged (once), not fatal.
pub fn write_stdout_text(args: std::fmt::Arguments<'_>) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = write_stdout(args) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!("cannot write to stdout: {e}");
        }
    }
}

/// The exit code an error maps to: an `ExitError` anywhere in the chain decides, otherwise 1.
pub fn exit_code_of(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|e| e.downcast_ref::<ExitError>().map(|x| x.code))
        .unwrap_or(exit::RUNTIME)
}

/// The error and its causes on one line, for operators and supervisors' logs.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// `--constrain on|off`: constrained decoding (docs/decoding.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
}

/// Wraps an error caused by a bad input file or argument so it exits with code 2.
pub fn bad_input<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::Error::new(ExitError::bad_input(e.to_string()))
}

/// Before any work: refuses an output file that is a folder or one of the command's `inputs`
/// (exit 2, naming both), and makes SIGINT/SIGTERM remove a half-written output (see
/// `fsutil`). For commands that write a user-named file and have no signal handling of their own.
pub fn prepare_output(
    out_flag: &str,
    out: &std::path::Path,
    inputs: &[(&str, &std::path::Path)],
) -> anyhow::Result<()> {
    spatialbot_edge::fsutil::check_output(out_flag, out, inputs).map_err(bad_input)?;
    spatialbot_edge::fsutil::remove_temps_on_signal()
        .map_err(|e| anyhow::anyhow!("installing the SIGINT/SIGTERM cleanup: {e}"))
}

/// Prints a serialisable value as pretty JSON on stdout (a closed stdout is not an error; see
/// [`write_stdout`]).
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    write_stdout(format_args!("{text}\n"))
        .map_err(|e| anyhow::anyhow!("cannot write the JSON output to stdout: {e}"))
}
