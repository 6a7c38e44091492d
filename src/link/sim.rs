//! Runs the reference controller (`spatialbot_link::controller`) on a byte stream: read,
//! feed, write its frames, tick the watchdog; optionally injects the controller's own fault
//! inputs (hardware fault, e-stop) for manual testing.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use spatialbot_link::{FaultCode, Message};

use super::clock::monotonic_us;
use super::controller::{Controller, ControllerConfig, Event, Outbox};
use super::transport::Duplex;

const STOP_LINGER_US: u64 = 300_000;

#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How often the watchdog is checked (also the read timeout).
    pub tick: Duration,
    /// How often `Status` is sent while a session is active.
    pub status_period: Duration,
    /// Return after acknowledging a `Stop`.
    pub exit_on_stop: bool,
    /// Return when the watchdog fires.
    pub exit_on_watchdog: bool,
    /// Raise the controller's hardware fault (`Fault{Hardware}`, Faulted) once this many
    /// actions were applied.
    pub fault_after_applied: Option<u64>,
    /// Raise the controller's e-stop input (`Fault{Estop}`, Faulted) once this many actions
    /// were applied.
    pub estop_after_applied: Option<u64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(1),
            status_period: Duration::from_millis(50),
            exit_on_stop: false,
            exit_on_watchdog: false,
            fault_after_applied: None,
            estop_after_applied: None,
        }
    }
}

/// Why the simulator returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SimExit {
    Stopped,
    Watchdog,
    /// The host end closed.
    Disconnected,
    /// The shutdown flag was raised.
    Shutdown,
}

#[derive(Clone, Debug, Serialize)]
pub struct SimSummary {
    pub exit: SimExit,
    pub applied: u64,
    pub not_applied: u64,
    pub last_seq: u32,
    pub watchdog_holds: u64,
    pub bad_frames: u32,
    pub frames: u32,
    pub crc_errors: u32,
    pub cobs_errors: u32,
    pub overflows: u32,
    pub recovered: u32,
    pub write_errors: u64,
    /// Faults the controller raised itself (injected hardware fault, e-stop input).
    pub local_faults: u64,
    pub final_state: String,
    pub pose: [f32; 7],
}

fn summary(exit: SimExit, c: &Controller, counts: &Counts) -> SimSummary {
    let s = c.status(0);
    let d = c.decoder_counters();
    SimSummary {
        exit,
        applied: counts.applied,
        not_applied: counts.not_applied,
        last_seq: s.last_seq,
        watchdog_holds: counts.holds,
        bad_frames: d.bad_frames,
        frames: d.frames,
        crc_errors: d.crc_errors,
        cobs_errors: d.cobs_errors,
        overflows: d.overflows,
        recovered: d.recovered,
        write_errors: counts.write_errors,
        local_faults: counts.local_faults,
        final_state: format!("{:?}", s.state),
        pose: s.pose,
    }
}

#[derive(Default)]
struct Counts {
    applied: u64,
    not_applied: u64,
    holds: u64,
    write_errors: u64,
    local_faults: u64,
}

/// Runs until a configured exit, the host disconnecting, or `shutdown`. Every event goes to
/// `on_event` (the CLI logs them). Read timeouts of `io` must be about `cfg.tick`.
pub fn run_controller(
    io: Duplex,
    cfg: &SimConfig,
    shutdown: &Arc<AtomicBool>,
    on_event: &mut dyn FnMut(&Event),
) -> io::Result<SimSummary> {
    let Duplex {
        mut reader,
        mut writer,
    } = io;
    let mut controller = Controller::new(ControllerConfig {
        status_period_us: cfg.status_period.as_micros() as u64,
    });
    let mut out = Outbox::new();
    let mut counts = Counts::default();
    let mut buf = [0u8; 512];
    let mut stopped_at_us: Option<u64> = None;
    // Injected local faults still to raise: (after this many applied, code).
    let mut injections: Vec<(u64, FaultCode)> = [
        cfg.fault_after_applied.map(|n| (n, FaultCode::Hardware)),
        cfg.estop_after_applied.map(|n| (n, FaultCode::Estop)),
    ]
    .into_iter()
    .flatten()
    .collect();
    loop {
        if shutdown.load(Ordering::Relaxed) {
            return Ok(summary(SimExit::Shutdown, &controller, &counts));
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(summary(SimExit::Disconnected, &controller, &counts)),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                ) =>
            {
                0
            }
            Err(e) => return Err(e),
        };
        let mut stop_seen = false;
        let mut watchdog_fired = false;
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let used = controller.receive(rest, monotonic_us(), &mut out);
            rest = &rest[used..];
            stop_seen |= stop_acked(&out);
            flush(
                &mut out,
                &mut writer,
                &mut counts,
                on_event,
                &mut watchdog_fired,
            );
            // Raise an injected fault right after the action that reached its count.
            if let Some(i) = injections
                .iter()
                .position(|(after, _)| counts.applied >= *after)
            {
                let (_, code) = injections.swap_remove(i);
                controller.raise_fault(code, 0, monotonic_us(), &mut out);
                counts.local_faults += 1;
                flush(
                    &mut out,
                    &mut writer,
                    &mut counts,
                    on_event,
                    &mut watchdog_fired,
                );
            }
        }
        let now = monotonic_us();
        controller.tick(now, &mut out);
        flush(
            &mut out,
            &mut writer,
            &mut counts,
            on_event,
            &mut watchdog_fired,
        );
        if stop_seen && stopped_at_us.is_none() {
            stopped_at_us = Some(now);
        }
        // Linger after a Stop so the host reads the Ack: closing a pty master discards what
        // the slave has not read yet.
        if let (Some(at), true) = (stopped_at_us, cfg.exit_on_stop) {
            if now.saturating_sub(at) >= STOP_LINGER_US {
                return Ok(summary(SimExit::Stopped, &controller, &counts));
            }
        }
        if watchdog_fired && cfg.exit_on_watchdog {
            return Ok(summary(SimExit::Watchdog, &controller, &counts));
        }
    }
}

/// The controller's hook into a simulated world: an action it applied (`Event::Applied`, its
/// slots in the session's `layout`) moves `world` too. Anything else, or no world, does nothing.
pub fn apply_to_world(
    world: Option<&crate::sim::SharedWorld>,
    layout: &[spatialbot_link::Axis; spatialbot_link::ACTION_LEN],
    event: &Event,
) {
    if let (Some(world), Event::Applied { action, .. }) = (world, event) {
        world.lock().apply_layout(layout, &action.values);
    }
}

/// Whether the outbox holds the acknowledgement of a `Stop` (also of one that found the
/// controller already stopped or faulted, which logs no `Stopped` event).
fn stop_acked(out: &Outbox) -> bool {
    out.frames().any(|f| {
        matches!(
            spatialbot_link::decode_frame(&f[..f.len().saturating_sub(1)]),
            Ok(Message::Ack(spatialbot_link::Ack {
                of: spatialbot_link::AckOf::Stop,
                ..
            }))
        )
    })
}

/// Writes the outbox's frames, counts and reports its events, and empties it.
fn flush(
    out: &mut Outbox,
    writer: &mut Box<dyn Write + Send>,
    counts: &mut Counts,
    on_event: &mut dyn FnMut(&Event),
    watchdog_fired: &mut bool,
) {
    if !out.bytes().is_empty() && writer.write_all(out.bytes()).is_err() {
        counts.write_errors += 1;
    }
    for e in out.events() {
        match e {
            Event::Applied { .. } => counts.applied += 1,
            Event::NotApplied { .. } => counts.not_applied += 1,
            Event::WatchdogHold { .. } => {
                counts.holds += 1;
                *watchdog_fired = true;
            }
            _ => {}
        }
        on_event(e);
    }
    out.clear();
}
