//! Runs the simulated controller on a byte stream: decode, handle, reply, tick the watchdog.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use spatialbot_link::{encode, ControllerState, Decoder, DecoderCounters, Message, MAX_FRAME};

use super::clock::monotonic_us;
use super::controller::{Controller, Event};
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
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(1),
            status_period: Duration::from_millis(50),
            exit_on_stop: false,
            exit_on_watchdog: false,
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
    pub final_state: String,
    pub pose: [f32; 7],
}

fn summary(exit: SimExit, c: &Controller, d: DecoderCounters, counts: &Counts) -> SimSummary {
    let s = c.status(0);
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
    let mut controller = Controller::new();
    let mut decoder = Decoder::new();
    let mut counts = Counts::default();
    let mut buf = [0u8; 512];
    let mut replies: Vec<Message> = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let mut frame = [0u8; MAX_FRAME];
    let mut next_status_us = 0u64;
    let status_period_us = cfg.status_period.as_micros() as u64;
    let mut stopped_at_us: Option<u64> = None;
    loop {
        if shutdown.load(Ordering::Relaxed) {
            return Ok(summary(
                SimExit::Shutdown,
                &controller,
                decoder.counters(),
                &counts,
            ));
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => {
                return Ok(summary(
                    SimExit::Disconnected,
                    &controller,
                    decoder.counters(),
                    &counts,
                ))
            }
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
        for &b in &buf[..n] {
            let Some(result) = decoder.push(b) else {
                continue;
            };
            let now = monotonic_us();
            match result {
                Ok(m) => {
                    stop_seen |= matches!(m, Message::Stop(_));
                    controller.handle(&m, now, &mut replies, &mut events);
                }
                Err(e) => controller.bad_frame(e, &mut events),
            }
        }
        let now = monotonic_us();
        if let Some(fault) = controller.tick(now, &mut events) {
            replies.push(fault);
            replies.push(Message::Status(controller.status(now)));
        }
        if controller.state() == ControllerState::Active && now >= next_status_us {
            replies.push(Message::Status(controller.status(now)));
            next_status_us = now + status_period_us;
        }
        for m in replies.drain(..) {
            if let Ok(len) = encode(&m, &mut frame) {
                if writer.write_all(&frame[..len]).is_err() {
                    counts.write_errors += 1;
                }
            }
        }
        let mut watchdog_fired = false;
        for e in events.drain(..) {
            match e {
                Event::Applied { .. } => counts.applied += 1,
                Event::NotApplied { .. } => counts.not_applied += 1,
                Event::WatchdogHold { .. } => {
                    counts.holds += 1;
                    watchdog_fired = true;
                }
                _ => {}
            }
            on_event(&e);
        }
        if stop_seen && stopped_at_us.is_none() {
            stopped_at_us = Some(now);
        }
        // Linger after a Stop so the host reads the Ack: closing a pty master discards what
        // the slave has not read yet.
        if let (Some(at), true) = (stopped_at_us, cfg.exit_on_stop) {
            if now.saturating_sub(at) >= STOP_LINGER_US {
                return Ok(summary(
                    SimExit::Stopped,
                    &controller,
                    decoder.counters(),
                    &counts,
                ));
            }
        }
        if watchdog_fired && cfg.exit_on_watchdog {
            return Ok(summary(
                SimExit::Watchdog,
                &controller,
                decoder.counters(),
                &counts,
            ));
        }
    }
}
