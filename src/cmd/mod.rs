//! One module per subcommand. Each defines `Args` (clap) and `run(args, json) -> exit code`.

pub mod arm_sim;
pub mod ask;
pub mod bench;
pub mod devices;
pub mod doctor;
pub mod pack;
pub mod preprocess;
pub mod record;
pub mod register;
pub mod replay;
pub mod run;

use spatialbot_edge::exit::{self, ExitError};

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

/// Prints a serialisable value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
