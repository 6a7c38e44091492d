//! The `spatialbot-edge` command line: parses arguments, calls the library, maps errors to
//! exit codes. Each subcommand lives in `src/cmd/<name>.rs`.

mod cmd;

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
}

fn init_logging(filter: &str) {
    let env = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&env)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    spatialbot_edge::memory::tune_for_frame_buffers();
    let cli = Cli::parse();
    init_logging(&cli.log);
    let json = cli.json;
    let result = match cli.command {
        Command::Run(a) => cmd::run::run(a, json),
        Command::Ask(a) => cmd::ask::run(a, json),
        Command::Bench(a) => cmd::bench::run(a, json),
        Command::Devices(a) => cmd::devices::run(a, json),
        Command::Doctor(a) => cmd::doctor::run(a, json),
        Command::Pack(a) => cmd::pack::run(a, json),
        Command::Preprocess(a) => cmd::preprocess::run(a, json),
        Command::Register(a) => cmd::register::run(a, json),
        Command::Record(a) => cmd::record::run(a, json),
        Command::Replay(a) => cmd::replay::run(a, json),
        Command::ArmSim(a) => cmd::arm_sim::run(a, json),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let code = cmd::exit_code_of(&err);
            eprintln!("error: {}", cmd::one_line(&err));
            ExitCode::from(code)
        }
    }
}
