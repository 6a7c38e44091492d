//! Host side of the action link: transports, safety governor, watchdog, controller simulator.
//!
//! The wire format is `spatialbot_link` (crates/link, SPEC.md there). A control loop uses it so:
//!
//! ```no_run
//! use spatialbot_edge::link::{clock, governor::{Decision, Governor, Limits, Proposal}};
//! use spatialbot_edge::link::{ActionCommand, Link, LinkConfig, LinkSpec, StopReason};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limits = Limits::default();
//! let mut governor = Governor::new(limits)?;
//! let mut link = Link::open(&"sim".parse::<LinkSpec>()?, LinkConfig::new(limits))?; // Hello/HelloAck done
//! let shutdown = spatialbot_edge::link::signals::shutdown_flag()?; // SIGINT/SIGTERM
//! # let (values, capture_us) = ([0.0f32; 8], clock::monotonic_us());
//! while !shutdown.load(std::sync::atomic::Ordering::Relaxed) {
//!     let proposal = Proposal::Values { values, capture_us };          // or Proposal::ParseFailure
//!     match governor.decide(&proposal, clock::monotonic_us()) {
//!         Decision::Act { values, .. } => {
//!             link.send_action(&ActionCommand { chunk_id: 0, chunk_index: 0, capture_us, values })?;
//!         }
//!         Decision::Hold(_) => link.heartbeat()?,                       // controller holds, watchdog fed
//!     }
//!     let _newest_status = link.poll()?;                                 // acks, status, faults
//!     # break;
//! }
//! let ack = link.stop(StopReason::Operator)?;                            // bounded wait for the Ack
//! # let _ = ack; Ok(()) }
//! ```
//!
//! - [`Link::open`] connects (`serial:`, `pty:` or the in-process `sim`) and completes the
//!   `Hello` handshake. Errors that persist after [`ReconnectPolicy`] are [`LinkError::Lost`]
//!   (exit code `LINK_LOST`).
//! - [`Link::stopper`] is a cloneable handle that can send `Stop` from another thread: the
//!   [`watchdog::StageWatchdog`] uses it when a pipeline stage misses its deadline, then the
//!   process ends with `exit::WATCHDOG_STOP`.
//! - [`Link::counters`] and [`governor::GovernorCounters`] are what a status line shows.
//! - Timestamps are µs of the host's monotonic clock ([`clock::monotonic_us`]), the clock
//!   V4L2 and librealsense's system-time mapping use, so a frame's capture stamp compares
//!   directly with the send time.

pub mod clock;
pub mod controller;
pub mod governor;
pub mod signals;
pub mod sim;
pub mod transport;
pub mod watchdog;

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use spatialbot_link::{encode, Decoder, Heartbeat, Hello, Stop, MAX_FRAME};
pub use spatialbot_link::{
    Ack, AckOf, Action, Axis, ControllerState, DecoderCounters, Fault, Message, Outcome, Status,
    StopReason, ACTION_LEN, PROTOCOL_VERSION,
};

pub use governor::Limits;
pub use transport::{LinkSpec, LinkSpecError};

/// When and how often to reopen a link that failed.
#[derive(Clone, Copy, Debug)]
pub struct ReconnectPolicy {
    /// Reopen attempts after a failure before giving up (0: never reconnect).
    pub attempts: u32,
    /// Wait before the first attempt; doubles per attempt.
    pub backoff: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            backoff: Duration::from_millis(50),
        }
    }
}

#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// Sent in `Hello`; the controller rejects actions outside them.
    pub limits: Limits,
    /// The controller holds when nothing valid arrives for this long.
    pub watchdog_ms: u16,
    pub session: u32,
    /// Granularity of the reader thread (read timeout).
    pub read_timeout: Duration,
    /// How long to wait for `HelloAck` (Hello is resent every 100 ms meanwhile).
    pub hello_timeout: Duration,
    /// How long [`Link::stop`] waits for the controller's acknowledgement.
    pub stop_ack_timeout: Duration,
    pub reconnect: ReconnectPolicy,
}

impl LinkConfig {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            watchdog_ms: 100,
            session: std::process::id(),
            read_timeout: Duration::from_millis(5),
            hello_timeout: Duration::from_secs(2),
            stop_ack_timeout: Duration::from_millis(500),
            reconnect: ReconnectPolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot open link {spec}: {source}; check the device path, its permissions (dialout group) and that nothing else holds it")]
    Open { spec: String, source: io::Error },
    #[error("link {spec}: no HelloAck within {timeout_ms} ms; is the controller (or `arm-sim`) running on the other end?")]
    NoHelloAck { spec: String, timeout_ms: u128 },
    #[error("link {spec}: the controller refused the session (protocol {protocol}); update the firmware or the host")]
    Refused { spec: String, protocol: u8 },
    #[error("link {spec} lost after {attempts} reconnect attempts: {reason}")]
    Lost {
        spec: String,
        attempts: u32,
        reason: String,
    },
    #[error("link {spec}: no acknowledgement of Stop within {timeout_ms} ms")]
    NoStopAck { spec: String, timeout_ms: u128 },
    #[error("frame encoding failed: {0:?}")]
    Encode(spatialbot_link::EncodeError),
}

impl LinkError {
    /// The process exit code this error should end the run with.
    pub fn exit_code(&self) -> u8 {
        match self {
            LinkError::Lost { .. } | LinkError::NoStopAck { .. } => crate::exit::LINK_LOST,
            _ => crate::exit::RUNTIME,
        }
    }
}

/// What the control loop hands over per action; the link fills in sequence number and send time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActionCommand {
    pub chunk_id: u32,
    pub chunk_index: u16,
    pub capture_us: u64,
    pub values: [f32; ACTION_LEN],
}

/// Everything the link has counted, for status lines.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct LinkCounters {
    pub actions_sent: u64,
    pub heartbeats_sent: u64,
    pub acks_applied: u64,
    pub acks_held: u64,
    pub acks_duplicate: u64,
    pub acks_rejected: u64,
    pub statuses: u64,
    pub faults: u64,
    pub reconnects: u64,
    /// Frames from the controller that failed to decode.
    pub bad_frames: u32,
}

/// The acknowledgement of a `Stop`, and the controller's status right after it.
#[derive(Clone, Copy, Debug)]
pub struct StopAck {
    pub seq: u32,
    pub status: Option<Status>,
    pub waited: Duration,
}

enum Incoming {
    Message(Message),
    Closed(String),
}

struct Shared {
    writer: Mutex<Box<dyn Write + Send>>,
    control_seq: AtomicU32,
}

impl Shared {
    fn send(&self, message: &Message) -> Result<(), LinkError> {
        let mut frame = [0u8; MAX_FRAME];
        let len = encode(message, &mut frame).map_err(LinkError::Encode)?;
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        // No flush: on a tty it is tcdrain, which blocks until the peer has read everything.
        w.write_all(&frame[..len]).map_err(|e| LinkError::Lost {
            spec: String::new(),
            attempts: 0,
            reason: e.to_string(),
        })
    }
}

/// Sends `Stop` from any thread (the stage watchdog, a signal handler thread).
#[derive(Clone)]
pub struct Stopper {
    shared: Arc<Shared>,
}

impl Stopper {
    /// Writes a `Stop` frame; returns its sequence number. Does not wait for the ack.
    pub fn send_stop(&self, reason: StopReason) -> Result<u32, LinkError> {
        let seq = self.shared.control_seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.shared.send(&Message::Stop(Stop { seq, reason }))?;
        Ok(seq)
    }
}

struct Connection {
    shared: Arc<Shared>,
    rx: Receiver<Incoming>,
    reader_stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    sim_shutdown: Option<Arc<AtomicBool>>,
    sim: Option<JoinHandle<()>>,
    decoder_counters: Arc<Mutex<DecoderCounters>>,
}

impl Connection {
    fn close(&mut self) {
        self.reader_stop.store(true, Ordering::Relaxed);
        if let Some(flag) = &self.sim_shutdown {
            flag.store(true, Ordering::Relaxed);
        }
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
        if let Some(h) = self.sim.take() {
            let _ = h.join();
        }
    }
}

pub struct Link {
    spec: LinkSpec,
    cfg: LinkConfig,
    conn: Connection,
    next_action_seq: u32,
    last_status: Option<Status>,
    last_fault: Option<Fault>,
    counters: LinkCounters,
    broken: Option<String>,
    started: Instant,
}

impl Link {
    /// Opens the link and completes the `Hello`/`HelloAck` handshake.
    pub fn open(spec: &LinkSpec, cfg: LinkConfig) -> Result<Link, LinkError> {
        let conn = connect(spec, &cfg, 0)?;
        let mut link = Link {
            spec: spec.clone(),
            cfg,
            conn,
            next_action_seq: 1,
            last_status: None,
            last_fault: None,
            counters: LinkCounters::default(),
            broken: None,
            started: Instant::now(),
        };
        link.handshake()?;
        Ok(link)
    }

    pub fn spec(&self) -> &LinkSpec {
        &self.spec
    }

    pub fn stopper(&self) -> Stopper {
        Stopper {
            shared: self.conn.shared.clone(),
        }
    }

    /// Sends one action; returns its sequence number.
    pub fn send_action(&mut self, cmd: &ActionCommand) -> Result<u32, LinkError> {
        let seq = self.next_action_seq;
        let action = Action {
            seq,
            chunk_id: cmd.chunk_id,
            chunk_index: cmd.chunk_index,
            capture_us: cmd.capture_us,
            send_us: clock::monotonic_us(),
            values: cmd.values,
        };
        self.send_with_reconnect(&Message::Action(action))?;
        self.next_action_seq += 1;
        self.counters.actions_sent += 1;
        Ok(seq)
    }

    /// Feeds the controller's watchdog without moving the arm.
    pub fn heartbeat(&mut self) -> Result<(), LinkError> {
        let seq = self.conn.shared.control_seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.send_with_reconnect(&Message::Heartbeat(Heartbeat {
            seq,
            send_us: clock::monotonic_us(),
        }))?;
        self.counters.heartbeats_sent += 1;
        Ok(())
    }

    /// Handles everything the controller sent; returns the newest `Status` among it, if any.
    pub fn poll(&mut self) -> Result<Option<Status>, LinkError> {
        let mut newest = None;
        while let Ok(incoming) = self.conn.rx.try_recv() {
            if let Some(s) = self.absorb(incoming) {
                newest = Some(s);
            }
        }
        if let Some(reason) = self.broken.take() {
            self.reconnect(&reason)?;
        }
        Ok(newest)
    }

    /// Sends `Stop` and waits (at most `stop_ack_timeout`) for its acknowledgement.
    pub fn stop(&mut self, reason: StopReason) -> Result<StopAck, LinkError> {
        let t0 = Instant::now();
        let seq = self.stopper().send_stop(reason)?;
        let deadline = t0 + self.cfg.stop_ack_timeout;
        let mut acked = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.conn.rx.recv_timeout(left) {
                Ok(incoming) => {
                    if let Incoming::Message(Message::Ack(Ack {
                        of: AckOf::Stop,
                        seq: s,
                        ..
                    })) = incoming
                    {
                        if s == seq {
                            acked = true;
                        }
                    }
                    let status = matches!(incoming, Incoming::Message(Message::Status(_)));
                    self.absorb(incoming);
                    if acked
                        && (status
                            || self.last_status.map(|s| s.state) == Some(ControllerState::Stopped))
                    {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if !acked {
            return Err(LinkError::NoStopAck {
                spec: self.spec.to_string(),
                timeout_ms: self.cfg.stop_ack_timeout.as_millis(),
            });
        }
        Ok(StopAck {
            seq,
            status: self.last_status,
            waited: t0.elapsed(),
        })
    }

    pub fn last_status(&self) -> Option<Status> {
        self.last_status
    }

    pub fn last_fault(&self) -> Option<Fault> {
        self.last_fault
    }

    pub fn counters(&self) -> LinkCounters {
        let mut c = self.counters;
        c.bad_frames = self
            .conn
            .decoder_counters
            .lock()
            .map(|d| d.bad_frames)
            .unwrap_or(0);
        c
    }

    /// One line for a status display.
    pub fn status_line(&self) -> String {
        let c = self.counters();
        let state = self
            .last_status
            .map(|s| format!("{:?}", s.state))
            .unwrap_or_else(|| "?".into());
        format!(
            "link {}: controller {}, sent {} actions / {} heartbeats, acks {} applied {} held {} dup {} rejected, {} faults, {} bad frames, {} reconnects, up {:.1} s",
            self.spec,
            state,
            c.actions_sent,
            c.heartbeats_sent,
            c.acks_applied,
            c.acks_held,
            c.acks_duplicate,
            c.acks_rejected,
            c.faults,
            c.bad_frames,
            c.reconnects,
            self.started.elapsed().as_secs_f64()
        )
    }

    fn absorb(&mut self, incoming: Incoming) -> Option<Status> {
        match incoming {
            Incoming::Closed(reason) => {
                self.broken = Some(reason);
                None
            }
            Incoming::Message(Message::Ack(a)) => {
                let c = match a.outcome {
                    Outcome::Applied => &mut self.counters.acks_applied,
                    Outcome::Held => &mut self.counters.acks_held,
                    Outcome::Duplicate => &mut self.counters.acks_duplicate,
                    Outcome::Rejected => &mut self.counters.acks_rejected,
                };
                if a.of == AckOf::Action {
                    *c += 1;
                }
                None
            }
            Incoming::Message(Message::Status(s)) => {
                self.counters.statuses += 1;
                self.last_status = Some(s);
                Some(s)
            }
            Incoming::Message(Message::Fault(f)) => {
                self.counters.faults += 1;
                tracing::warn!(?f, "controller fault");
                self.last_fault = Some(f);
                None
            }
            Incoming::Message(_) => None,
        }
    }

    fn hello(&self) -> Message {
        let l = &self.cfg.limits;
        Message::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            session: self.cfg.session,
            layout: l.layout,
            min: l.min,
            max: l.max,
            max_step: l.max_step,
            watchdog_ms: self.cfg.watchdog_ms,
        })
    }

    fn handshake(&mut self) -> Result<(), LinkError> {
        let hello = self.hello();
        let deadline = Instant::now() + self.cfg.hello_timeout;
        let mut next_send = Instant::now();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(LinkError::NoHelloAck {
                    spec: self.spec.to_string(),
                    timeout_ms: self.cfg.hello_timeout.as_millis(),
                });
            }
            if now >= next_send {
                self.conn
                    .shared
                    .send(&hello)
                    .map_err(|e| self.with_spec(e))?;
                next_send = now + Duration::from_millis(100);
            }
            let wait = next_send
                .min(deadline)
                .saturating_duration_since(Instant::now());
            match self.conn.rx.recv_timeout(wait) {
                Ok(Incoming::Message(Message::HelloAck(a))) if a.session == self.cfg.session => {
                    if !a.accepted {
                        return Err(LinkError::Refused {
                            spec: self.spec.to_string(),
                            protocol: a.protocol,
                        });
                    }
                    return Ok(());
                }
                Ok(Incoming::Closed(reason)) => {
                    return Err(LinkError::Open {
                        spec: self.spec.to_string(),
                        source: io::Error::other(reason),
                    })
                }
                Ok(other) => {
                    self.absorb(other);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(LinkError::Open {
                        spec: self.spec.to_string(),
                        source: io::Error::other("reader ended"),
                    })
                }
            }
        }
    }

    fn with_spec(&self, e: LinkError) -> LinkError {
        match e {
            LinkError::Lost {
                attempts, reason, ..
            } => LinkError::Lost {
                spec: self.spec.to_string(),
                attempts,
                reason,
            },
            other => other,
        }
    }

    fn send_with_reconnect(&mut self, message: &Message) -> Result<(), LinkError> {
        if let Some(reason) = self.broken.take() {
            self.reconnect(&reason)?;
        }
        match self.conn.shared.send(message) {
            Ok(()) => Ok(()),
            Err(LinkError::Lost { reason, .. }) => {
                self.reconnect(&reason)?;
                self.conn
                    .shared
                    .send(message)
                    .map_err(|e| self.with_spec(e))
            }
            Err(e) => Err(e),
        }
    }

    /// Reopens the link per the policy and repeats the handshake (same session).
    fn reconnect(&mut self, reason: &str) -> Result<(), LinkError> {
        let policy = self.cfg.reconnect;
        tracing::warn!(spec = %self.spec, reason, "link failed; reconnecting");
        self.conn.close();
        let mut backoff = policy.backoff;
        let mut last = reason.to_string();
        for _ in 0..policy.attempts {
            std::thread::sleep(backoff);
            backoff = backoff.saturating_mul(2);
            let seq = self.conn.shared.control_seq.load(Ordering::Relaxed);
            match connect(&self.spec, &self.cfg, seq) {
                Ok(conn) => {
                    self.conn = conn;
                    match self.handshake() {
                        Ok(()) => {
                            self.counters.reconnects += 1;
                            return Ok(());
                        }
                        Err(e) => {
                            last = e.to_string();
                            self.conn.close();
                        }
                    }
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(LinkError::Lost {
            spec: self.spec.to_string(),
            attempts: policy.attempts,
            reason: last,
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.conn.close();
    }
}

fn connect(
    spec: &LinkSpec,
    cfg: &LinkConfig,
    control_seq_start: u32,
) -> Result<Connection, LinkError> {
    let open_err = |source: io::Error| LinkError::Open {
        spec: spec.to_string(),
        source,
    };
    let (duplex, sim_shutdown, sim) = match spec {
        LinkSpec::Serial { path, baud } => (
            transport::open_serial(path, *baud, cfg.read_timeout)
                .map_err(|e| open_err(io::Error::other(e)))?,
            None,
            None,
        ),
        LinkSpec::Pty { path } => (
            transport::open_serial(path, transport::DEFAULT_BAUD, cfg.read_timeout)
                .map_err(|e| open_err(io::Error::other(e)))?,
            None,
            None,
        ),
        LinkSpec::Sim => {
            let sim_cfg = sim::SimConfig::default();
            let (host, controller) = transport::pipe_pair(sim_cfg.tick);
            let shutdown = Arc::new(AtomicBool::new(false));
            let flag = shutdown.clone();
            let handle = std::thread::Builder::new()
                .name("arm-sim".into())
                .spawn(move || {
                    let mut log = |e: &controller::Event| tracing::debug!(?e, "arm-sim");
                    if let Err(e) = sim::run_controller(controller, &sim_cfg, &flag, &mut log) {
                        tracing::error!(%e, "in-process arm simulator failed");
                    }
                })
                .map_err(open_err)?;
            (host, Some(shutdown), Some(handle))
        }
    };
    let transport::Duplex { reader, writer } = duplex;
    let (tx, rx) = crossbeam_channel::unbounded();
    let reader_stop = Arc::new(AtomicBool::new(false));
    let decoder_counters = Arc::new(Mutex::new(DecoderCounters::default()));
    let handle = {
        let stop = reader_stop.clone();
        let counters = decoder_counters.clone();
        std::thread::Builder::new()
            .name("link-reader".into())
            .spawn(move || read_loop(reader, tx, &stop, &counters))
            .map_err(open_err)?
    };
    Ok(Connection {
        shared: Arc::new(Shared {
            writer: Mutex::new(writer),
            control_seq: AtomicU32::new(control_seq_start),
        }),
        rx,
        reader_stop,
        reader: Some(handle),
        sim_shutdown,
        sim,
        decoder_counters,
    })
}

fn read_loop(
    mut reader: Box<dyn Read + Send>,
    tx: Sender<Incoming>,
    stop: &AtomicBool,
    counters: &Mutex<DecoderCounters>,
) {
    let mut decoder = Decoder::new();
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        let n = match reader.read(&mut buf) {
            Ok(0) => {
                let _ = tx.send(Incoming::Closed("the other end closed the link".into()));
                return;
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
                continue
            }
            Err(e) => {
                let _ = tx.send(Incoming::Closed(e.to_string()));
                return;
            }
        };
        for &byte in &buf[..n] {
            let Some(result) = decoder.push(byte) else {
                continue;
            };
            // Counters first, so whoever sees a later message also sees this frame counted.
            if let Ok(mut c) = counters.lock() {
                *c = decoder.counters();
            }
            match result {
                Ok(m) => {
                    let _ = tx.send(Incoming::Message(m));
                }
                Err(e) => tracing::debug!(?e, "bad frame from controller"),
            }
        }
    }
}
