//! `spatialbot-edge doctor`: checks this board against its profile.

use spatialbot_edge::config::Board;
use spatialbot_edge::doctor::{run_checks, Roots, Status};

use super::bad_input;

#[derive(clap::Args)]
pub struct Args {
    /// Board profile: a file, or a shipped profile name (default: dev-x86_64).
    #[arg(long)]
    board: Option<String>,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    let board = match &args.board {
        Some(b) => Board::resolve(b),
        None => Board::default_dev(),
    }
    .map_err(bad_input)?;
    let checks = run_checks(&board, &Roots::default());
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    let failed = count(Status::Fail);
    if json {
        super::print_json(&serde_json::json!({
            "board": board.name,
            "board_file": board.source.display().to_string(),
            "checks": checks,
            "summary": {"pass": count(Status::Pass), "warn": count(Status::Warn), "fail": failed, "skip": count(Status::Skip)},
        }))?;
    } else {
        for c in &checks {
            outln!("{}  {:<22} {}", c.status.label(), c.name, c.detail);
            if !c.fix.is_empty() {
                outln!("      {:<22} fix: {}", "", c.fix);
            }
        }
        outln!(
            "{} pass, {} warn, {} fail, {} skip",
            count(Status::Pass),
            count(Status::Warn),
            failed,
            count(Status::Skip)
        );
    }
    Ok(if failed > 0 {
        spatialbot_edge::exit::RUNTIME
    } else {
        spatialbot_edge::exit::OK
    })
}
