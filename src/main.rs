//! The `spatialbot-edge` command line: parses arguments, calls the library, maps errors to
//! exit codes. Each subcommand lives in `src/cmd/<name>.rs`.

mod cmd;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "spatialbot-edge",
    version,
    about = "SpatialBot RGB-D inference and robot control on the edge",
    after_help = spatialbot_edge::exit::TABLE
)]
struct Cli {
    /// Print machine-readable JSON instead of human output.
    #[arg(long, global = true)]
    json: bool,
    /// Log filter (tracing syntax), e.g. `info` or `spatialbot_edge=debug`. Also RUST_LOG.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The control loop: camera → policy → safety governor → arm.
    #[command(after_help = spatialbot_edge::exit::TABLE)]
    Run(cmd::run::Args),
    /// SpatialBot VQA on one RGB-D pair, with the Depth API loop.
    Ask(cmd::ask::Args),
    /// Per-stage latency on this device.
    Bench(cmd::bench::Args),
    /// Cameras, serial ports and inference backends on this machine.
    Devices(cmd::devices::Args),
    /// Checks this board: libraries, permissions, links, power mode.
    Doctor(cmd::doctor::Args),
    /// Depth PNG (uint16 mm) → SpatialBot 3-channel image.
    Pack(cmd::pack::Args),
    /// A Triton Inference Server model repository for a model folder (its three graphs).
    TritonRepo(cmd::triton_repo::Args),
    /// One image → the f32 CHW tensor the vision graph eats (.npy).
    Preprocess(cmd::preprocess::Args),
    /// Depth registered into the colour camera's frame.
    Register(cmd::register::Args),
    /// Record an RGB-D session.
    Record(cmd::record::Args),
    /// Play back an RGB-D recording and report what it holds.
    Replay(cmd::replay::Args),
    /// A controller simulator speaking the wire protocol.
    ArmSim(cmd::arm_sim::Args),
    /// Closed-loop success rate of a policy in the simulated tabletop world.
    Eval(cmd::eval::Args),
    /// Precision and recall of the SpatialBot guard on labelled gripper-close decisions.
    GuardEval(cmd::guard_eval::Args),
    /// Generate a SpatialQA question set from the simulated tabletop's ground truth.
    Spatialqa(cmd::spatialqa::Args),
    /// A SpatialBot model on a question set (ours or SpatialBench's), scored per category.
    QaEval(cmd::qa_eval::Args),
    /// Demonstrations of the scripted expert in the simulated world, for training.
    Demos(cmd::demos::Args),
}

/// Whether log lines may carry ANSI colour codes: only when stderr is a terminal, and never
/// with `NO_COLOR` set to anything but the empty string (no-color.org). Under systemd stderr
/// is journald, which would store the codes verbatim.
fn log_colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn init_logging(filter: &str) {
    use std::io::IsTerminal;
    let env = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&env)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(log_colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .with_writer(std::io::stderr)
        .try_init();
}

/// A print to a closed stdout or stderr (the reader of a pipe went away) ends the process
/// quietly with code 0 instead of a panic message and code 101. Commands write stdout through
/// `cmd::write_stdout`, which never panics, and the exit-code-bearing stderr lines (the error
/// line, the control loop's summary) with write calls whose errors are ignored; this covers the
/// `println!`/`eprintln!` left in reports printed after a command's work is done.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        let closed_pipe = (payload.starts_with("failed printing to stdout")
            || payload.starts_with("failed printing to stderr"))
            && payload.contains("Broken pipe");
        if closed_pipe {
            std::process::exit(i32::from(spatialbot_edge::exit::OK));
        }
        default(info)
    }));
}

/// The `{"error": ..., "exit_code": N}` object `--json` prints on stdout when a command fails
/// before printing anything else, so a caller parsing stdout always gets a JSON document.
fn json_error(message: &str, code: u8) -> String {
    serde_json::json!({ "error": message, "exit_code": code }).to_string()
}

/// Whether the raw arguments ask for `--json` (for errors found before clap has parsed them).
fn wants_json() -> bool {
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    spatialbot_edge::memory::tune_for_frame_buffers();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let usage_error = !matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if usage_error && wants_json() {
                let rendered = e.to_string();
                let text = rendered
                    .lines()
                    .next()
                    .unwrap_or("bad usage")
                    .trim_start_matches("error: ");
                cmd::write_stdout_text(format_args!(
                    "{}\n",
                    json_error(text, spatialbot_edge::exit::BAD_INPUT)
                ));
            }
            // clap prints the message (help to stdout, errors to stderr) and exits: 0 for
            // help and version, 2 for a usage error.
            e.exit()
        }
    };
    init_logging(&cli.log);
    let json = cli.json;
    let result = match cli.command {
        Command::Run(a) => cmd::run::run(a, json),
        Command::Ask(a) => cmd::ask::run(a, json),
        Command::Bench(a) => cmd::bench::run(a, json),
        Command::Devices(a) => cmd::devices::run(a, json),
        Command::Doctor(a) => cmd::doctor::run(a, json),
        Command::Pack(a) => cmd::pack::run(a, json),
        Command::TritonRepo(a) => cmd::triton_repo::run(a, json),
        Command::Preprocess(a) => cmd::preprocess::run(a, json),
        Command::Register(a) => cmd::register::run(a, json),
        Command::Record(a) => cmd::record::run(a, json),
        Command::Replay(a) => cmd::replay::run(a, json),
        Command::ArmSim(a) => cmd::arm_sim::run(a, json),
        Command::Eval(a) => cmd::eval::run(a, json),
        Command::GuardEval(a) => cmd::guard_eval::run(a, json),
        Command::Spatialqa(a) => cmd::spatialqa::run(a, json),
        Command::QaEval(a) => cmd::qa_eval::run(a, json),
        Command::Demos(a) => cmd::demos::run(a, json),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let code = cmd::exit_code_of(&err);
            let message = cmd::one_line(&err);
            // Not eprintln!: a closed stderr must not turn this exit code into a panic's.
            let _ = writeln!(std::io::stderr(), "error: {message}");
            if json && !cmd::stdout_used() {
                cmd::write_stdout_text(format_args!("{}\n", json_error(&message, code)));
            }
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(log_colour(true, None));
        assert!(!log_colour(false, None));
        assert!(!log_colour(true, Some("1".into())));
        assert!(log_colour(true, Some("".into())));
    }

    #[test]
    fn json_error_object() {
        let v: serde_json::Value = serde_json::from_str(&json_error("a \"b\"", 2)).unwrap();
        assert_eq!(v["error"], "a \"b\"");
        assert_eq!(v["exit_code"], 2);
    }
}
