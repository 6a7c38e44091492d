//! `spatialbot-edge arm-sim`: a simulated arm controller speaking the wire protocol.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use spatialbot_edge::exit;
use spatialbot_edge::link::controller::Event;
use spatialbot_edge::link::sim::{run_controller, SimConfig, SimExit};
use spatialbot_edge::link::transport::{create_pty, open_serial};
use spatialbot_edge::link::LinkSpec;

use super::bad_input;

#[derive(clap::Args)]
pub struct Args {
    /// Where the host connects: `pty:PATH` creates a pseudo-terminal and links PATH to its
    /// slave (the host then opens `pty:PATH`); `serial:/dev/ttyUSB0@921600` serves a real port.
    #[arg(long)]
    link: String,
    /// Write every applied action, hold and stop as JSON lines to this file. (`--log` is the
    /// global log filter.)
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Watchdog check period in milliseconds, 1..=60000.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    tick_ms: u64,
    /// Exit (code 0) after acknowledging a Stop.
    #[arg(long)]
    exit_on_stop: bool,
    /// Exit with the watchdog code (3) when the watchdog fires.
    #[arg(long)]
    exit_on_watchdog: bool,
    /// Inject the controller's own hardware fault after N applied actions: it sends
    /// `Fault{Hardware}` and `Status{Faulted}`, then answers Actions and Heartbeats `Held` and
    /// refuses every `Hello` (the fault is never cleared). For testing a host by hand.
    #[arg(long, value_name = "N")]
    fault_after_applied: Option<u64>,
    /// Press the controller's e-stop input after N applied actions: it sends `Fault{Estop}`
    /// and `Status{Faulted}` (fault bit 4 latched), then behaves as with
    /// --fault-after-applied. For testing a host by hand.
    #[arg(long, value_name = "N")]
    estop_after_applied: Option<u64>,
    /// Print each applied action on stdout (human output only).
    #[arg(long)]
    verbose: bool,
    /// Apply every applied action (default layout) to a simulated world too, e.g.
    /// `sim:reach,seed=3`; the summary then says whether its task succeeded. The camera that
    /// renders this world lives in this process only (docs/simulation.md).
    #[arg(long, value_name = "sim:TASK[,seed=N]")]
    world: Option<String>,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<u8> {
    let spec: LinkSpec = args.link.parse().map_err(bad_input)?;
    let world = match &args.world {
        Some(text) => {
            let rest = text.strip_prefix("sim:").ok_or_else(|| {
                bad_input(format!(
                    "--world {text}: give sim:TASK[,seed=N], e.g. sim:reach,seed=3"
                ))
            })?;
            let options = spatialbot_edge::camera::sim::SimOptions::parse(&[], Some(rest))
                .map_err(|e| bad_input(format!("--world {text}: {e}")))?;
            Some(options.world)
        }
        None => None,
    };
    let tick = Duration::from_millis(args.tick_ms.max(1));
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, shutdown.clone())
            .context("installing the signal handler")?;
    }
    let mut log = match &args.log_file {
        Some(p) => Some(BufWriter::new(File::create(p).map_err(|e| {
            bad_input(format!("cannot create the log file {}: {e}", p.display()))
        })?)),
        None => None,
    };
    let cfg = SimConfig {
        tick,
        exit_on_stop: args.exit_on_stop,
        exit_on_watchdog: args.exit_on_watchdog,
        fault_after_applied: args.fault_after_applied,
        estop_after_applied: args.estop_after_applied,
        ..SimConfig::default()
    };
    // The pty endpoint must outlive the run: it holds the slave open.
    let (duplex, _pty) = match &spec {
        LinkSpec::Pty { path } => {
            let pty = create_pty(path, tick).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    // Something arm-sim did not create is at PATH: bad input, nothing removed.
                    bad_input(e)
                } else {
                    anyhow::Error::new(e)
                        .context(format!("creating a pty linked at {}", path.display()))
                }
            })?;
            announce(
                json,
                &json!({"event": "ready", "link": path, "pty": pty.slave_name}),
            );
            (pty.duplex()?, Some(pty))
        }
        LinkSpec::Serial { path, baud } => {
            let d = open_serial(path, *baud, tick)
                .with_context(|| format!("opening serial port {}", path.display()))?;
            announce(json, &json!({"event": "ready", "link": path, "baud": baud}));
            (d, None)
        }
        LinkSpec::Sim => {
            return Err(bad_input(
                "arm-sim serves a link: give --link pty:PATH or --link serial:PATH@BAUD",
            ))
        }
    };
    let mut write_log = |e: &Event| {
        if let (Some(world), Event::Applied { action, .. }) = (world.as_ref(), e) {
            world
                .lock()
                .apply_layout(&spatialbot_link::DEFAULT_LAYOUT, &action.values);
        }
        let line = event_json(e);
        if let Some(w) = log.as_mut() {
            let _ = writeln!(w, "{line}");
            if !matches!(e, Event::Applied { .. }) {
                let _ = w.flush();
            }
        }
        let routine = matches!(e, Event::Applied { .. } | Event::NotApplied { .. });
        if !json && (args.verbose || !routine) {
            outln!("{line}");
        }
    };
    let summary =
        run_controller(duplex, &cfg, &shutdown, &mut write_log).context("arm simulator I/O")?;
    if let Some(mut w) = log.take() {
        w.flush().context("writing the log file")?;
    }
    // The summary as before, with the world's outcome beside it when there is one.
    #[derive(serde::Serialize)]
    struct Report<'a> {
        #[serde(flatten)]
        summary: &'a spatialbot_edge::link::sim::SimSummary,
        #[serde(skip_serializing_if = "Option::is_none")]
        world: Option<serde_json::Value>,
    }
    let report = Report {
        summary: &summary,
        world: world.as_ref().map(|w| {
            let w = w.snapshot();
            json!({
                "task": w.task.kind, "seed": w.seed, "goal": w.task.goal, "steps": w.steps,
                "success": w.success_step.is_some(), "success_step": w.success_step,
                "terminated": w.terminated, "gripper": w.gripper.pos,
            })
        }),
    };
    if json {
        super::print_json(&report)?;
    } else {
        outln!("{}", serde_json::to_string(&report)?);
    }
    let _ = shutdown.load(Ordering::Relaxed);
    Ok(match summary.exit {
        SimExit::Watchdog => exit::WATCHDOG_STOP,
        SimExit::Stopped | SimExit::Shutdown | SimExit::Disconnected => exit::OK,
    })
}

fn announce(json: bool, v: &serde_json::Value) {
    if json {
        outln!("{v}");
    } else {
        outln!("arm-sim ready: {v}");
    }
    let _ = std::io::stdout().flush();
}

fn event_json(e: &Event) -> serde_json::Value {
    match e {
        Event::SessionStarted {
            session,
            watchdog_ms,
            fresh,
        } => {
            json!({"event": "session", "session": session, "watchdog_ms": watchdog_ms, "fresh": fresh})
        }
        Event::HelloRefused {
            session,
            protocol,
            fault,
        } => json!({
            "event": "hello_refused", "session": session, "protocol": protocol, "fault": format!("{fault:?}"),
        }),
        Event::Applied {
            action,
            pose,
            at_us,
        } => json!({
            "event": "applied", "seq": action.seq, "chunk_id": action.chunk_id, "chunk_index": action.chunk_index,
            "capture_us": action.capture_us, "send_us": action.send_us, "values": action.values, "pose": pose, "at_us": at_us,
        }),
        Event::NotApplied { seq, outcome } => {
            json!({"event": "not_applied", "seq": seq, "outcome": format!("{outcome:?}")})
        }
        Event::LimitViolation { seq, axes } => {
            json!({"event": "limit_violation", "seq": seq, "axes": axes})
        }
        Event::EpisodeEnded { seq, at_us } => {
            json!({"event": "episode_ended", "seq": seq, "at_us": at_us})
        }
        Event::WatchdogHold { silence_us, at_us } => {
            json!({"event": "hold", "reason": "watchdog", "silence_us": silence_us, "at_us": at_us})
        }
        Event::Resumed { at_us } => json!({"event": "resumed", "at_us": at_us}),
        Event::Stopped { reason, at_us } => {
            json!({"event": "stop", "reason": format!("{reason:?}"), "at_us": at_us})
        }
        Event::Faulted {
            code,
            detail,
            at_us,
        } => {
            json!({"event": "faulted", "code": format!("{code:?}"), "detail": detail, "at_us": at_us})
        }
        Event::FaultCleared { at_us } => json!({"event": "fault_cleared", "at_us": at_us}),
        Event::BadFrame { error } => json!({"event": "bad_frame", "error": format!("{error:?}")}),
        Event::RecoveredAfterGarbage => json!({"event": "bad_frame", "error": "Recovered"}),
    }
}
