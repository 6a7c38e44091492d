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
//! - [`Link::poll`] acts on everything the controller said (SPEC §7): a rejected, duplicate or
//!   unheld action, a controller that lost its session, stopped, faulted or went silent. What
//!   must end the run comes back as a [`LinkError`] whose [`LinkError::exit_code`] is the
//!   process's; what only forbids the next action is [`Link::gate`].
//! - [`Link::stopper`] is a cloneable handle that can send `Stop` from another thread.
//! - No `Action` leaves once the shutdown flag of [`LinkConfig::shutdown`] is up (checked under
//!   the writer's lock, right before the bytes are written).
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

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use spatialbot_link::{encode, fault_bits, Decoder, Heartbeat, Hello, Stop, MAX_FRAME};
pub use spatialbot_link::{
    Ack, AckOf, Action, Axis, ControllerState, DecoderCounters, Fault, FaultCode, Message, Outcome,
    Status, StopReason, ACTION_LEN, PROTOCOL_VERSION,
};

pub use governor::Limits;

/// The wire's axis names (`Axis::name` of [`spatialbot_link::DEFAULT_LAYOUT`]): the names a
/// board's `[[safety.axes]]` and a policy's `[[policy.action]]` may use.
pub const WIRE_AXIS_NAMES: [&str; ACTION_LEN] = [
    "dx",
    "dy",
    "dz",
    "droll",
    "dpitch",
    "dyaw",
    "gripper",
    "terminate",
];
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

/// What the built-in simulated controller calls with each action it applies: the session's
/// layout and the action's values (see [`LinkConfig::on_applied`]).
#[derive(Clone)]
pub struct AppliedHook(pub Arc<AppliedFn>);

/// The function inside an [`AppliedHook`].
pub type AppliedFn = dyn Fn(&[spatialbot_link::Axis; ACTION_LEN], &[f32; ACTION_LEN]) + Send + Sync;

impl std::fmt::Debug for AppliedHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppliedHook")
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
    /// No valid frame from the controller for this long: no Action is sent (heartbeats only)
    /// until it speaks again.
    pub reply_timeout: Duration,
    /// No valid frame from the controller for this long: the link is lost (exit 5).
    pub lost_link: Duration,
    /// This many `Rejected` acks in a row end the run (exit 6).
    pub max_rejected_in_a_row: u32,
    /// Raised by SIGINT/SIGTERM: from then on no Action is written.
    pub shutdown: Option<Arc<AtomicBool>>,
    /// How often the control loop sends a Heartbeat when it has no action to send.
    pub heartbeat: Duration,
    /// With `LinkSpec::Sim`: called with each action the built-in controller applies (its
    /// slots in the session's layout), e.g. to move a simulated world the camera renders.
    /// `None`: the controller only integrates its pose.
    pub on_applied: Option<AppliedHook>,
}

impl LinkConfig {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            watchdog_ms: 100,
            session: new_session_id(),
            read_timeout: Duration::from_millis(5),
            hello_timeout: Duration::from_secs(2),
            stop_ack_timeout: Duration::from_millis(500),
            reconnect: ReconnectPolicy::default(),
            reply_timeout: Duration::from_millis(DEFAULT_REPLY_TIMEOUT_MS),
            lost_link: Duration::from_millis(DEFAULT_LOST_LINK_MS),
            max_rejected_in_a_row: DEFAULT_MAX_REJECTED_IN_A_ROW,
            shutdown: None,
            heartbeat: Duration::from_millis(50),
            on_applied: None,
        }
    }
}

/// Default of [`LinkConfig::reply_timeout`]: three of the controller's 50 ms Status periods.
pub const DEFAULT_REPLY_TIMEOUT_MS: u64 = 150;
/// Default of [`LinkConfig::lost_link`].
pub const DEFAULT_LOST_LINK_MS: u64 = 1000;
/// Default of [`LinkConfig::max_rejected_in_a_row`].
pub const DEFAULT_MAX_REJECTED_IN_A_ROW: u32 = 3;

/// A random non-zero session id from the operating system (getrandom(2)); never the PID, so a
/// restarted host (same PID in a container) does not resume a stale session.
pub fn new_session_id() -> u32 {
    loop {
        let mut b = [0u8; 4];
        // SAFETY: `b` is a valid 4-byte buffer for getrandom to fill.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        let id = if n == 4 {
            u32::from_le_bytes(b)
        } else {
            // No getrandom (very old kernel): /dev/urandom, else time and PID mixed.
            let mut f = [0u8; 4];
            match std::fs::File::open("/dev/urandom").and_then(|mut u| u.read_exact(&mut f)) {
                Ok(()) => u32::from_le_bytes(f),
                Err(_) => {
                    let t = clock::monotonic_us() ^ (u64::from(std::process::id()) << 32);
                    (t ^ (t >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) as u32
                }
            }
        };
        if id != 0 {
            return id;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot open link {spec}: {source}; check the device path, its permissions (dialout group) and that nothing else holds it")]
    Open { spec: String, source: io::Error },
    #[error("link {spec}: no HelloAck within {timeout_ms} ms; is the controller (or `arm-sim`) running on the other end?")]
    NoHelloAck { spec: String, timeout_ms: u128 },
    #[error("link {spec}: the controller refused the session (it speaks protocol {protocol}); update the firmware or the host")]
    Refused { spec: String, protocol: u8 },
    #[error("link {spec}: the controller rejected {count} actions in a row (limit {limit}, last seq {seq}): the host's limits and the controller's disagree")]
    Rejected {
        spec: String,
        count: u32,
        limit: u32,
        seq: u32,
    },
    #[error("link {spec}: the controller reports duplicate sequence numbers in a fresh session ({session:#010x}); is another host talking to it?")]
    Duplicate { spec: String, session: u32 },
    #[error("link {spec}: the controller stopped the session (Status Stopped without a Stop from this host)")]
    ControllerStopped { spec: String },
    #[error("link {spec}: the controller reports a fault: {what}")]
    ControllerFault { spec: String, what: String },
    #[error("link {spec}: emergency stop reported by the controller: {what}")]
    Estop { spec: String, what: String },
    #[error("link {spec}: no valid frame from the controller for {silent_ms} ms (lost-link limit {limit_ms} ms)")]
    Silent {
        spec: String,
        silent_ms: u128,
        limit_ms: u128,
    },
    #[error("link {spec}: action {seq} has had no Ack for {waited_ms} ms (lost-link limit {limit_ms} ms); the controller answers but does not acknowledge actions")]
    Unacknowledged {
        spec: String,
        seq: u32,
        waited_ms: u128,
        limit_ms: u128,
    },
    #[error("shutting down: no Action is sent after SIGINT/SIGTERM")]
    ShuttingDown,
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
            LinkError::Lost { .. }
            | LinkError::NoStopAck { .. }
            | LinkError::Silent { .. }
            | LinkError::Unacknowledged { .. } => crate::exit::LINK_LOST,
            LinkError::Refused { .. }
            | LinkError::Rejected { .. }
            | LinkError::Duplicate { .. } => crate::exit::CONTROLLER_REFUSED,
            LinkError::ControllerFault { .. } => crate::exit::CONTROLLER_FAULT,
            LinkError::ControllerStopped { .. } => crate::exit::CONTROLLER_STOPPED,
            LinkError::Estop { .. } => crate::exit::ESTOP,
            LinkError::ShuttingDown => crate::exit::OK,
            LinkError::Open { .. } | LinkError::NoHelloAck { .. } | LinkError::Encode(_) => {
                crate::exit::RUNTIME
            }
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
    /// Actions sent that no Ack answered (so far; final once the run has stopped).
    pub unacknowledged: u64,
    /// Hellos sent again because the controller had lost the session (Held / Idle).
    pub rehellos: u64,
    /// New sessions opened because the controller reported duplicate sequence numbers.
    pub new_sessions: u64,
    /// Steps held because the controller had been silent past the reply timeout.
    pub silent_holds: u64,
    /// Steps held because an action had no Ack past the reply timeout.
    pub unacknowledged_holds: u64,
    /// `Fault{Watchdog}` reports: the controller held because nothing reached it in time.
    pub controller_watchdogs: u64,
    /// `Fault{LimitViolation}` reports (each comes with a Rejected ack).
    pub limit_violations: u64,
}

/// The acknowledgement of a `Stop`, and the controller's status right after it.
#[derive(Clone, Copy, Debug)]
pub struct StopAck {
    pub seq: u32,
    pub status: Option<Status>,
    pub waited: Duration,
}

enum Incoming {
    /// A valid message and when the reader decoded it.
    Message(Message, Instant),
    Closed(String),
}

struct Shared {
    writer: Mutex<Box<dyn Write + Send>>,
    control_seq: AtomicU32,
    shutdown: Option<Arc<AtomicBool>>,
}

impl Shared {
    fn send(&self, message: &Message) -> Result<(), LinkError> {
        let mut frame = [0u8; MAX_FRAME];
        let len = encode(message, &mut frame).map_err(LinkError::Encode)?;
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        // The last barrier between a shutdown signal and the arm: checked with the writer held.
        if matches!(message, Message::Action(_))
            && self
                .shutdown
                .as_ref()
                .is_some_and(|f| f.load(Ordering::SeqCst))
        {
            return Err(LinkError::ShuttingDown);
        }
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

/// Why the link forbids an Action right now (the step holds; heartbeats keep flowing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkHold {
    /// No valid frame from the controller for the reply timeout.
    ControllerSilent,
    /// The controller answered `Held` or reported `Idle`: it has no session until a new Hello
    /// is accepted.
    NoSession,
    /// SIGINT/SIGTERM arrived: nothing more moves.
    ShuttingDown,
    /// An action sent more than the reply timeout ago has no Ack yet: nothing more is sent
    /// until the controller answers it.
    Unacknowledged,
}

impl LinkHold {
    pub fn name(self) -> &'static str {
        match self {
            LinkHold::ControllerSilent => "link_controller_silent",
            LinkHold::NoSession => "link_no_session",
            LinkHold::ShuttingDown => "shutting_down",
            LinkHold::Unacknowledged => "link_unacknowledged",
        }
    }
}

/// A controller report that ends the run; kept until [`Link::poll`] returns it.
#[derive(Clone, Debug)]
enum Fatal {
    Rejected { count: u32, seq: u32 },
    Duplicate { session: u32 },
    Stopped,
    Fault(String),
    Estop(String),
    Refused(u8),
}

/// What the host knows of the controller beyond the counters.
#[derive(Debug)]
struct Tracking {
    /// When the reader last decoded a valid frame from the controller.
    last_heard: Instant,
    rejected_in_a_row: u32,
    /// An Ack said `Held`: no Actions until a Status says what the controller's state is.
    awaiting_status: bool,
    /// The controller is Idle: a Hello (same session) must be accepted before any Action.
    need_hello: bool,
    /// The controller's sequence is ahead of ours: open a new session.
    need_new_session: bool,
    /// The session opened because of duplicates; duplicates in it are fatal.
    fresh_session: Option<u32>,
    /// The host sent Stop (a Stopped state is then expected).
    stop_sent: bool,
    /// Seq of the action sent with terminate = 1, and whether it was applied (the controller
    /// then ends the episode: Stopped is expected).
    terminate_seq: Option<u32>,
    episode_ended: bool,
    /// An action was not applied (Rejected): the governor must count from where the arm is.
    not_applied: bool,
    fatal: Option<Fatal>,
    /// Inside a handshake: acks of the previous session's actions are only counted.
    in_handshake: bool,
    /// Actions sent and not acknowledged yet, oldest first (seq, when sent).
    outstanding: std::collections::VecDeque<(u32, Instant)>,
}

/// At most this many unacknowledged actions are remembered (the oldest decides the hold).
const MAX_OUTSTANDING: usize = 1024;

impl Tracking {
    fn new() -> Self {
        Self {
            last_heard: Instant::now(),
            rejected_in_a_row: 0,
            awaiting_status: false,
            need_hello: false,
            need_new_session: false,
            fresh_session: None,
            stop_sent: false,
            terminate_seq: None,
            episode_ended: false,
            not_applied: false,
            fatal: None,
            in_handshake: false,
            outstanding: std::collections::VecDeque::new(),
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
    track: Tracking,
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
            track: Tracking::new(),
        };
        link.handshake()?;
        Ok(link)
    }

    pub fn spec(&self) -> &LinkSpec {
        &self.spec
    }

    /// The session id the controller knows this host by.
    pub fn session(&self) -> u32 {
        self.cfg.session
    }

    pub fn stopper(&self) -> Stopper {
        Stopper {
            shared: self.conn.shared.clone(),
        }
    }

    /// Whether an Action may be sent now (`Err`: hold this step, say why).
    pub fn gate(&self) -> Result<(), LinkHold> {
        if self
            .cfg
            .shutdown
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
        {
            return Err(LinkHold::ShuttingDown);
        }
        if self.track.awaiting_status || self.track.need_hello || self.track.need_new_session {
            return Err(LinkHold::NoSession);
        }
        if self.track.last_heard.elapsed() > self.cfg.reply_timeout {
            return Err(LinkHold::ControllerSilent);
        }
        if self
            .track
            .outstanding
            .front()
            .is_some_and(|(_, sent)| sent.elapsed() > self.cfg.reply_timeout)
        {
            return Err(LinkHold::Unacknowledged);
        }
        Ok(())
    }

    /// Counts a step held because of [`Link::gate`].
    pub fn count_hold(&mut self, hold: LinkHold) {
        match hold {
            LinkHold::ControllerSilent => self.counters.silent_holds += 1,
            LinkHold::Unacknowledged => self.counters.unacknowledged_holds += 1,
            LinkHold::NoSession | LinkHold::ShuttingDown => {}
        }
    }

    /// True once since the controller last refused to apply an action: the arm did not move.
    pub fn take_not_applied(&mut self) -> bool {
        std::mem::take(&mut self.track.not_applied)
    }

    /// The policy ended the episode (an action with terminate = 1 was applied).
    pub fn episode_ended(&self) -> bool {
        self.track.episode_ended
    }

    /// Sends one action; returns its sequence number.
    pub fn send_action(&mut self, cmd: &ActionCommand) -> Result<u32, LinkError> {
        self.send_action_ending(cmd, false)
    }

    /// [`Link::send_action`], saying whether the action's terminate value is 1.
    pub fn send_action_ending(
        &mut self,
        cmd: &ActionCommand,
        terminate: bool,
    ) -> Result<u32, LinkError> {
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
        if self.track.outstanding.len() >= MAX_OUTSTANDING {
            self.track.outstanding.pop_front();
        }
        self.track.outstanding.push_back((seq, Instant::now()));
        if terminate {
            self.track.terminate_seq = Some(seq);
        }
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

    /// Acts on everything the controller sent (SPEC §7); returns the newest `Status` among it.
    /// `Err`: the run must end, with the error's exit code.
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
        if let Some(fatal) = self.track.fatal.clone() {
            return Err(self.fatal_error(fatal));
        }
        let silent = self.track.last_heard.elapsed();
        if silent > self.cfg.lost_link {
            return Err(LinkError::Silent {
                spec: self.spec.to_string(),
                silent_ms: silent.as_millis(),
                limit_ms: self.cfg.lost_link.as_millis(),
            });
        }
        if let Some(&(seq, sent)) = self.track.outstanding.front() {
            if sent.elapsed() > self.cfg.lost_link {
                return Err(LinkError::Unacknowledged {
                    spec: self.spec.to_string(),
                    seq,
                    waited_ms: sent.elapsed().as_millis(),
                    limit_ms: self.cfg.lost_link.as_millis(),
                });
            }
        }
        if self.track.need_new_session {
            self.new_session()?;
        } else if self.track.need_hello {
            tracing::warn!(spec = %self.spec, "the controller has no session (Idle); sending Hello again");
            self.handshake()?;
            self.counters.rehellos += 1;
        }
        Ok(newest)
    }

    fn fatal_error(&self, fatal: Fatal) -> LinkError {
        let spec = self.spec.to_string();
        match fatal {
            Fatal::Rejected { count, seq } => LinkError::Rejected {
                spec,
                count,
                limit: self.cfg.max_rejected_in_a_row,
                seq,
            },
            Fatal::Duplicate { session } => LinkError::Duplicate { spec, session },
            Fatal::Stopped => LinkError::ControllerStopped { spec },
            Fatal::Fault(what) => LinkError::ControllerFault { spec, what },
            Fatal::Estop(what) => LinkError::Estop { spec, what },
            Fatal::Refused(protocol) => LinkError::Refused { spec, protocol },
        }
    }

    /// A new random session, actions numbered from 1 again, and the handshake.
    fn new_session(&mut self) -> Result<(), LinkError> {
        let old = self.cfg.session;
        let mut session = new_session_id();
        while session == old {
            session = new_session_id();
        }
        tracing::warn!(spec = %self.spec, old = format!("{old:#010x}"), new = format!("{session:#010x}"),
            "the controller's action sequence is ahead of this session's (Duplicate): opening a new session");
        self.cfg.session = session;
        self.next_action_seq = 1;
        // The old session's numbers mean nothing in the new one.
        self.track.outstanding.clear();
        self.track.fresh_session = Some(session);
        self.handshake()?;
        self.counters.new_sessions += 1;
        Ok(())
    }

    /// Sends `Stop` and waits (at most `stop_ack_timeout`) for its acknowledgement.
    pub fn stop(&mut self, reason: StopReason) -> Result<StopAck, LinkError> {
        let t0 = Instant::now();
        self.track.stop_sent = true;
        let seq = self.stopper().send_stop(reason)?;
        let deadline = t0 + self.cfg.stop_ack_timeout;
        let mut acked = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.conn.rx.recv_timeout(left) {
                Ok(incoming) => {
                    if let Incoming::Message(
                        Message::Ack(Ack {
                            of: AckOf::Stop,
                            seq: s,
                            ..
                        }),
                        _,
                    ) = incoming
                    {
                        if s == seq {
                            acked = true;
                        }
                    }
                    let status = matches!(incoming, Incoming::Message(Message::Status(_), _));
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
        c.unacknowledged = c
            .actions_sent
            .saturating_sub(c.acks_applied + c.acks_held + c.acks_duplicate + c.acks_rejected);
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
            "link {}: controller {}, sent {} actions / {} heartbeats, acks {} applied {} held {} dup {} rejected, {} unacknowledged, {} faults, {} bad frames, {} reconnects, up {:.1} s",
            self.spec,
            state,
            c.actions_sent,
            c.heartbeats_sent,
            c.acks_applied,
            c.acks_held,
            c.acks_duplicate,
            c.acks_rejected,
            c.unacknowledged,
            c.faults,
            c.bad_frames,
            c.reconnects,
            self.started.elapsed().as_secs_f64()
        )
    }

    fn absorb(&mut self, incoming: Incoming) -> Option<Status> {
        let (message, at) = match incoming {
            Incoming::Closed(reason) => {
                self.broken = Some(reason);
                return None;
            }
            Incoming::Message(m, at) => (m, at),
        };
        if at > self.track.last_heard {
            self.track.last_heard = at;
        }
        match message {
            Message::Ack(a) => {
                self.ack(a);
                None
            }
            Message::Status(s) => {
                self.counters.statuses += 1;
                self.last_status = Some(s);
                self.status(&s);
                Some(s)
            }
            Message::Fault(f) => {
                self.counters.faults += 1;
                self.last_fault = Some(f);
                self.fault(&f);
                None
            }
            _ => None,
        }
    }

    fn ack(&mut self, a: Ack) {
        if a.of == AckOf::Action {
            let c = match a.outcome {
                Outcome::Applied => &mut self.counters.acks_applied,
                Outcome::Held => &mut self.counters.acks_held,
                Outcome::Duplicate => &mut self.counters.acks_duplicate,
                Outcome::Rejected => &mut self.counters.acks_rejected,
            };
            *c += 1;
            while self
                .track
                .outstanding
                .front()
                .is_some_and(|(seq, _)| *seq <= a.seq)
            {
                self.track.outstanding.pop_front();
            }
        }
        if self.track.in_handshake || self.track.stop_sent {
            return;
        }
        match (a.of, a.outcome) {
            (AckOf::Action, Outcome::Applied) => {
                self.track.rejected_in_a_row = 0;
                if self.track.terminate_seq == Some(a.seq) {
                    self.track.episode_ended = true;
                }
            }
            (AckOf::Action, Outcome::Rejected) => {
                self.track.rejected_in_a_row += 1;
                self.track.not_applied = true;
                tracing::warn!(
                    seq = a.seq,
                    in_a_row = self.track.rejected_in_a_row,
                    "the controller rejected an action"
                );
                if self.track.rejected_in_a_row >= self.cfg.max_rejected_in_a_row {
                    self.set_fatal(Fatal::Rejected {
                        count: self.track.rejected_in_a_row,
                        seq: a.seq,
                    });
                }
            }
            (AckOf::Action, Outcome::Duplicate) => {
                self.track.not_applied = true;
                if self.track.fresh_session == Some(self.cfg.session) {
                    self.set_fatal(Fatal::Duplicate {
                        session: self.cfg.session,
                    });
                } else {
                    self.track.need_new_session = true;
                }
            }
            (AckOf::Action | AckOf::Heartbeat, Outcome::Held) => {
                self.track.not_applied |= a.of == AckOf::Action;
                self.track.awaiting_status = true;
            }
            _ => {}
        }
    }

    fn status(&mut self, s: &Status) {
        if self.track.in_handshake {
            return;
        }
        let expected_stop = self.track.stop_sent || self.track.episode_ended;
        if s.faults & fault_bits::ESTOP != 0 && !self.track.stop_sent {
            self.set_fatal(Fatal::Estop(format!(
                "Status {:?} with the e-stop bit latched",
                s.state
            )));
            return;
        }
        match s.state {
            ControllerState::Idle if !expected_stop => {
                self.track.awaiting_status = false;
                self.track.need_hello = true;
            }
            ControllerState::Active | ControllerState::Holding => {
                self.track.awaiting_status = false;
            }
            ControllerState::Stopped if !expected_stop => self.set_fatal(Fatal::Stopped),
            ControllerState::Faulted if !self.track.stop_sent => {
                let what = match self.last_fault {
                    Some(f) => format!(
                        "Status Faulted after Fault {:?} (detail {})",
                        f.code, f.detail
                    ),
                    None => format!("Status Faulted (fault bits {:#x})", s.faults),
                };
                self.set_fatal(Fatal::Fault(what));
            }
            _ => {}
        }
    }

    fn fault(&mut self, f: &Fault) {
        tracing::warn!(code = ?f.code, detail = f.detail, "controller fault");
        match f.code {
            FaultCode::Watchdog => self.counters.controller_watchdogs += 1,
            FaultCode::LimitViolation => self.counters.limit_violations += 1,
            FaultCode::Estop => {
                self.set_fatal(Fatal::Estop(format!("Fault Estop (detail {})", f.detail)))
            }
            FaultCode::Hardware => self.set_fatal(Fatal::Fault(format!(
                "Fault Hardware (detail {})",
                f.detail
            ))),
            FaultCode::ProtocolMismatch if !self.track.in_handshake => {
                self.set_fatal(Fatal::Refused(u8::try_from(f.detail).unwrap_or(u8::MAX)))
            }
            FaultCode::ProtocolMismatch => {}
        }
    }

    /// The first fatal report wins (an e-stop outranks everything after it).
    fn set_fatal(&mut self, fatal: Fatal) {
        if self.track.fatal.is_none() {
            self.track.fatal = Some(fatal);
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
        self.track.in_handshake = true;
        let result = self.handshake_inner();
        self.track.in_handshake = false;
        if result.is_ok() {
            self.track.last_heard = Instant::now();
            self.track.awaiting_status = false;
            self.track.need_hello = false;
            self.track.need_new_session = false;
            self.track.rejected_in_a_row = 0;
        }
        result
    }

    fn handshake_inner(&mut self) -> Result<(), LinkError> {
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
                Ok(Incoming::Message(Message::HelloAck(a), _)) if a.session == self.cfg.session => {
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
            let on_applied = cfg.on_applied.clone();
            let layout = cfg.limits.layout;
            let handle = std::thread::Builder::new()
                .name("arm-sim".into())
                .spawn(move || {
                    let mut log = |e: &controller::Event| {
                        tracing::debug!(?e, "arm-sim");
                        if let (Some(hook), controller::Event::Applied { action, .. }) =
                            (&on_applied, e)
                        {
                            (hook.0)(&layout, &action.values);
                        }
                    };
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
            shutdown: cfg.shutdown.clone(),
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
                    let _ = tx.send(Incoming::Message(m, Instant::now()));
                }
                Err(e) => tracing::debug!(?e, "bad frame from controller"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_axis_names_are_the_default_layouts() {
        let names = spatialbot_link::DEFAULT_LAYOUT.map(|a| a.name());
        assert_eq!(names, WIRE_AXIS_NAMES);
    }
}
