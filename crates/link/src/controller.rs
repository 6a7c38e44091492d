//! The reference arm controller: the state machine of SPEC.md §6 as pure code. Bytes and clock
//! readings go in; encoded frames and log events come out in an [`Outbox`]. No allocation, no
//! I/O, no clock of its own, so the same code runs in firmware and in the host's simulator.
//!
//! A firmware main loop:
//!
//! ```text
//! let mut c = Controller::new(ControllerConfig::default());
//! let mut out = Outbox::new();
//! loop {
//!     let mut rx = uart_read_available();
//!     while !rx.is_empty() {
//!         let used = c.receive(rx, now_us(), &mut out);
//!         uart_write(out.bytes()); log(out.events()); out.clear();
//!         rx = &rx[used..];
//!     }
//!     c.tick(now_us(), &mut out);                    // at least every millisecond
//!     if estop_pressed() { c.raise_fault(FaultCode::Estop, 0, now_us(), &mut out); }
//!     uart_write(out.bytes()); log(out.events()); out.clear();
//! }
//! ```

use crate::codec::{encode, Decoder, DecoderCounters, FrameError, MAX_FRAME, PROTOCOL_VERSION};
use crate::message::{
    fault_bits, Ack, AckOf, Action, Axis, ControllerState, Fault, FaultCode, Hello, HelloAck,
    Message, Outcome, Status, StopReason, ACTION_LEN, DEFAULT_LAYOUT,
};

/// Frames one call can produce at most: two (e.g. `Ack` + `Status`, `Ack` + `Fault`,
/// `Fault` + `HelloAck`).
const FRAMES_PER_STEP: usize = 2;
/// Events one received message can produce at most: a bad-frame report (garbage before a
/// recovered frame), `Resumed`, and the action's outcome with its consequence.
const EVENTS_PER_STEP: usize = 4;

/// Bytes an [`Outbox`] holds: the frames of two steps.
pub const OUTBOX_BYTES: usize = 2 * FRAMES_PER_STEP * MAX_FRAME;
/// Events an [`Outbox`] holds.
pub const OUTBOX_EVENTS: usize = 2 * EVENTS_PER_STEP;

/// Settings that are the controller's own (the session's settings come in `Hello`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControllerConfig {
    /// `Status` is sent this often while Active (SPEC §6: 50 ms). 0 turns the periodic
    /// `Status` off (tests that look at single replies).
    pub status_period_us: u64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            status_period_us: 50_000,
        }
    }
}

/// What the controller did, for its log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// A `Hello` was accepted. `fresh`: a new session (last_seq, faults, bad_frames reset);
    /// otherwise the same session went on with its counters.
    SessionStarted {
        session: u32,
        watchdog_ms: u16,
        fresh: bool,
    },
    /// A `Hello` was refused (`HelloAck{accepted=false}` sent after `Fault{fault}`).
    HelloRefused {
        session: u32,
        protocol: u8,
        fault: FaultCode,
    },
    /// An action was integrated into the pose.
    Applied {
        action: Action,
        pose: [f32; 7],
        at_us: u64,
    },
    /// An action was not applied.
    NotApplied { seq: u32, outcome: Outcome },
    /// A rejected action's offending slots (bit i = slot i), sent as `Fault{LimitViolation}`.
    LimitViolation { seq: u32, axes: u32 },
    /// An applied action had `terminate` = 1: the episode ended and the controller stopped.
    EpisodeEnded { seq: u32, at_us: u64 },
    /// Nothing valid arrived for `silence_us` (> watchdog): the arm holds.
    WatchdogHold { silence_us: u64, at_us: u64 },
    /// A valid message arrived after a watchdog hold.
    Resumed { at_us: u64 },
    /// A `Stop` moved the controller to Stopped.
    Stopped { reason: StopReason, at_us: u64 },
    /// The controller's own fault input fired (hardware fault, e-stop): Faulted.
    Faulted {
        code: FaultCode,
        detail: u32,
        at_us: u64,
    },
    /// The local fault went away; the controller stays Faulted until a `Hello`.
    FaultCleared { at_us: u64 },
    /// Received bytes were discarded (counted in `Status::bad_frames`).
    BadFrame { error: FrameError },
    /// Bytes were discarded, and a good frame was found at their end and handled (the
    /// discarded bytes count once in `Status::bad_frames`).
    RecoveredAfterGarbage,
}

/// Encoded frames and log events produced by the controller, in a fixed buffer.
///
/// Empty it (send [`Outbox::bytes`], log [`Outbox::events`], then [`Outbox::clear`]) after
/// each call: an empty outbox always holds what one call produces, and
/// [`Controller::receive`] stops consuming input before the outbox could overflow. Anything
/// that still did not fit is dropped and counted in [`Outbox::lost`].
pub struct Outbox {
    bytes: [u8; OUTBOX_BYTES],
    len: usize,
    events: [Option<Event>; OUTBOX_EVENTS],
    n_events: usize,
    lost: u32,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbox {
    pub const fn new() -> Self {
        Self {
            bytes: [0; OUTBOX_BYTES],
            len: 0,
            events: [None; OUTBOX_EVENTS],
            n_events: 0,
            lost: 0,
        }
    }

    /// The frames to send, back to back, each ending with its 0x00 delimiter.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The frames one by one, each with its delimiter.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes().split_inclusive(|&b| b == 0)
    }

    /// The events, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events[..self.n_events].iter().flatten()
    }

    /// Frames and events that did not fit and were dropped, since the outbox was made.
    pub fn lost(&self) -> u32 {
        self.lost
    }

    /// Forgets the frames and events (after they were sent and logged).
    pub fn clear(&mut self) {
        self.len = 0;
        self.n_events = 0;
        self.events = [None; OUTBOX_EVENTS];
    }

    fn has_room_for_step(&self) -> bool {
        OUTBOX_BYTES - self.len >= FRAMES_PER_STEP * MAX_FRAME
            && OUTBOX_EVENTS - self.n_events >= EVENTS_PER_STEP
    }

    fn send(&mut self, message: &Message) {
        match encode(message, &mut self.bytes[self.len..]) {
            Ok(n) => self.len += n,
            Err(_) => self.lost = self.lost.wrapping_add(1),
        }
    }

    fn log(&mut self, event: Event) {
        if self.n_events < OUTBOX_EVENTS {
            self.events[self.n_events] = Some(event);
            self.n_events += 1;
        } else {
            self.lost = self.lost.wrapping_add(1);
        }
    }
}

/// The controller side of the link (SPEC.md §6). See the module documentation for the loop
/// that drives it.
pub struct Controller {
    cfg: ControllerConfig,
    decoder: Decoder,
    /// Decoder bad-frame count already accounted for in `bad_frames`.
    decoder_bad_seen: u32,
    state: ControllerState,
    session: u32,
    layout: [Axis; ACTION_LEN],
    min: [f32; ACTION_LEN],
    max: [f32; ACTION_LEN],
    watchdog_us: u64,
    last_valid_us: u64,
    next_status_us: u64,
    last_seq: u32,
    faults: u32,
    bad_frames: u32,
    pose: [f32; 7],
    /// The local fault (hardware, e-stop) while it persists.
    local_fault: Option<Fault>,
}

impl Controller {
    pub const fn new(cfg: ControllerConfig) -> Self {
        Self {
            cfg,
            decoder: Decoder::new(),
            decoder_bad_seen: 0,
            state: ControllerState::Idle,
            session: 0,
            layout: DEFAULT_LAYOUT,
            min: [0.0; ACTION_LEN],
            max: [0.0; ACTION_LEN],
            watchdog_us: 0,
            last_valid_us: 0,
            next_status_us: 0,
            last_seq: 0,
            faults: 0,
            bad_frames: 0,
            pose: [0.0; 7],
            local_fault: None,
        }
    }

    pub fn state(&self) -> ControllerState {
        self.state
    }

    /// The session id of the last accepted `Hello` (0 before the first).
    pub fn session(&self) -> u32 {
        self.session
    }

    /// Sequence number of the last applied action in this session, 0 if none.
    pub fn last_seq(&self) -> u32 {
        self.last_seq
    }

    /// [`fault_bits`] seen in this session.
    pub fn faults(&self) -> u32 {
        self.faults
    }

    /// Discarded frames in this session.
    pub fn bad_frames(&self) -> u32 {
        self.bad_frames
    }

    /// x, y, z, roll, pitch, yaw, gripper: the integral of the applied actions.
    pub fn pose(&self) -> [f32; 7] {
        self.pose
    }

    /// The local fault while it persists (raised and not yet cleared).
    pub fn local_fault(&self) -> Option<Fault> {
        self.local_fault
    }

    /// What the decoder has counted since power-up (not reset by sessions).
    pub fn decoder_counters(&self) -> DecoderCounters {
        self.decoder.counters()
    }

    /// The `Status` message as it would be sent at `now_us`.
    pub fn status(&self, now_us: u64) -> Status {
        Status {
            state: self.state,
            last_seq: self.last_seq,
            faults: self.faults,
            bad_frames: self.bad_frames,
            controller_us: now_us,
            pose: self.pose,
        }
    }

    /// Feeds received bytes (any chunking). Every completed frame is handled at `now_us`.
    /// Returns how many bytes were consumed: fewer than `bytes.len()` when `out` filled up;
    /// empty `out` and call again with the rest.
    pub fn receive(&mut self, bytes: &[u8], now_us: u64, out: &mut Outbox) -> usize {
        for (i, &b) in bytes.iter().enumerate() {
            if !out.has_room_for_step() {
                return i;
            }
            let Some(result) = self.decoder.push(b) else {
                continue;
            };
            // The decoder counts a discarded run once, also when it recovered a good frame at
            // the run's end: that run is a bad frame here too.
            let bad_now = self.decoder.counters().bad_frames;
            let discarded = bad_now.wrapping_sub(self.decoder_bad_seen);
            self.decoder_bad_seen = bad_now;
            match result {
                Ok(message) => {
                    if discarded > 0 {
                        self.count_bad_frames(discarded, Event::RecoveredAfterGarbage, out);
                    }
                    self.handle(&message, now_us, out);
                }
                Err(error) => {
                    self.count_bad_frames(discarded.max(1), Event::BadFrame { error }, out)
                }
            }
        }
        bytes.len()
    }

    fn count_bad_frames(&mut self, n: u32, event: Event, out: &mut Outbox) {
        self.bad_frames = self.bad_frames.wrapping_add(n);
        self.faults |= fault_bits::BAD_FRAME;
        out.log(event);
    }

    /// Handles one decoded message (what [`Controller::receive`] does for each good frame).
    pub fn handle(&mut self, message: &Message, now_us: u64, out: &mut Outbox) {
        match *message {
            Message::Hello(h) => self.hello(&h, now_us, out),
            Message::Action(a) => self.action(&a, now_us, out),
            Message::Heartbeat(h) => {
                let outcome = if self.in_session() {
                    self.feed_watchdog(now_us, out);
                    Outcome::Applied
                } else {
                    Outcome::Held
                };
                self.ack(AckOf::Heartbeat, h.seq, outcome, out);
                out.send(&Message::Status(self.status(now_us)));
            }
            Message::Stop(s) => {
                if s.reason == StopReason::Estop {
                    self.faults |= fault_bits::ESTOP;
                }
                if !matches!(
                    self.state,
                    ControllerState::Stopped | ControllerState::Faulted
                ) {
                    self.state = ControllerState::Stopped;
                    out.log(Event::Stopped {
                        reason: s.reason,
                        at_us: now_us,
                    });
                }
                self.ack(AckOf::Stop, s.seq, Outcome::Applied, out);
                out.send(&Message::Status(self.status(now_us)));
            }
            // Controller → host messages arriving here are echoes or a miswired link: ignored
            // (they are valid frames, so not bad frames either).
            Message::HelloAck(_) | Message::Ack(_) | Message::Status(_) | Message::Fault(_) => {}
        }
    }

    /// Advances the clock: the watchdog (Active → Holding after more than `watchdog_ms`
    /// without a valid Action, Heartbeat or Hello) and the periodic `Status`. Call it at least
    /// every millisecond.
    pub fn tick(&mut self, now_us: u64, out: &mut Outbox) {
        if !out.has_room_for_step() {
            return;
        }
        if self.state != ControllerState::Active {
            return;
        }
        let silence = now_us.saturating_sub(self.last_valid_us);
        if silence > self.watchdog_us {
            self.state = ControllerState::Holding;
            self.faults |= fault_bits::WATCHDOG;
            out.log(Event::WatchdogHold {
                silence_us: silence,
                at_us: now_us,
            });
            out.send(&Message::Fault(Fault {
                code: FaultCode::Watchdog,
                detail: self.last_seq,
            }));
            out.send(&Message::Status(self.status(now_us)));
            return;
        }
        if self.cfg.status_period_us > 0 && now_us >= self.next_status_us {
            out.send(&Message::Status(self.status(now_us)));
            self.next_status_us = now_us.saturating_add(self.cfg.status_period_us);
        }
    }

    /// The controller's own fault input fired: a hardware fault (`FaultCode::Hardware`) or
    /// the e-stop input (`FaultCode::Estop`, also latches fault bit 4). Motion stops, the
    /// state becomes Faulted, and `Fault{code, detail}` then `Status` are sent. The fault
    /// persists until [`Controller::clear_fault`].
    pub fn raise_fault(&mut self, code: FaultCode, detail: u32, now_us: u64, out: &mut Outbox) {
        let fault = Fault { code, detail };
        if code == FaultCode::Estop {
            self.faults |= fault_bits::ESTOP;
        }
        self.local_fault = Some(fault);
        self.state = ControllerState::Faulted;
        out.log(Event::Faulted {
            code,
            detail,
            at_us: now_us,
        });
        out.send(&Message::Fault(fault));
        out.send(&Message::Status(self.status(now_us)));
    }

    /// The local fault went away (the e-stop was released, the hardware recovered). The
    /// controller stays Faulted; the next accepted `Hello` leaves it.
    pub fn clear_fault(&mut self, now_us: u64, out: &mut Outbox) {
        if self.local_fault.take().is_some() {
            out.log(Event::FaultCleared { at_us: now_us });
        }
    }

    fn in_session(&self) -> bool {
        matches!(
            self.state,
            ControllerState::Active | ControllerState::Holding
        )
    }

    fn ack(&mut self, of: AckOf, seq: u32, outcome: Outcome, out: &mut Outbox) {
        out.send(&Message::Ack(Ack { of, seq, outcome }));
    }

    fn hello(&mut self, h: &Hello, now_us: u64, out: &mut Outbox) {
        let refusal = if let Some(f) = self.local_fault {
            Some(f)
        } else if h.protocol != PROTOCOL_VERSION || h.watchdog_ms == 0 {
            Some(Fault {
                code: FaultCode::ProtocolMismatch,
                detail: u32::from(h.protocol),
            })
        } else {
            None
        };
        if let Some(fault) = refusal {
            out.log(Event::HelloRefused {
                session: h.session,
                protocol: h.protocol,
                fault: fault.code,
            });
            out.send(&Message::Fault(fault));
            out.send(&Message::HelloAck(HelloAck {
                protocol: PROTOCOL_VERSION,
                session: h.session,
                accepted: false,
            }));
            return;
        }
        let fresh = self.state == ControllerState::Idle || h.session != self.session;
        if fresh {
            self.last_seq = 0;
            self.faults = 0;
            self.bad_frames = 0;
        }
        self.session = h.session;
        self.layout = h.layout;
        self.min = h.min;
        self.max = h.max;
        self.watchdog_us = u64::from(h.watchdog_ms) * 1000;
        self.last_valid_us = now_us;
        self.next_status_us = now_us;
        self.state = ControllerState::Active;
        out.log(Event::SessionStarted {
            session: h.session,
            watchdog_ms: h.watchdog_ms,
            fresh,
        });
        out.send(&Message::HelloAck(HelloAck {
            protocol: PROTOCOL_VERSION,
            session: h.session,
            accepted: true,
        }));
    }

    fn feed_watchdog(&mut self, now_us: u64, out: &mut Outbox) {
        self.last_valid_us = now_us;
        if self.state == ControllerState::Holding {
            self.state = ControllerState::Active;
            out.log(Event::Resumed { at_us: now_us });
        }
    }

    /// Bit i set: slot i is not finite, outside `[min, max]`, or non-zero on an unused axis.
    fn offending_axes(&self, values: &[f32; ACTION_LEN]) -> u32 {
        let mut mask = 0u32;
        for (i, &v) in values.iter().enumerate() {
            let bad = !v.is_finite()
                || v < self.min[i]
                || v > self.max[i]
                || (self.layout[i] == Axis::Unused && v != 0.0);
            if bad {
                mask |= 1 << i;
            }
        }
        mask
    }

    fn action(&mut self, a: &Action, now_us: u64, out: &mut Outbox) {
        if !self.in_session() {
            self.not_applied(a.seq, Outcome::Held, out);
            return;
        }
        // Every valid Action shows the host is alive, whatever its outcome.
        self.feed_watchdog(now_us, out);
        if a.seq <= self.last_seq {
            self.faults |= fault_bits::SEQUENCE;
            self.not_applied(a.seq, Outcome::Duplicate, out);
            return;
        }
        let axes = self.offending_axes(&a.values);
        if axes != 0 {
            self.faults |= fault_bits::LIMIT;
            self.not_applied(a.seq, Outcome::Rejected, out);
            out.log(Event::LimitViolation { seq: a.seq, axes });
            out.send(&Message::Fault(Fault {
                code: FaultCode::LimitViolation,
                detail: axes,
            }));
            return;
        }
        self.integrate(&a.values);
        self.last_seq = a.seq;
        out.log(Event::Applied {
            action: *a,
            pose: self.pose,
            at_us: now_us,
        });
        self.ack(AckOf::Action, a.seq, Outcome::Applied, out);
        let terminate = self
            .layout
            .iter()
            .zip(a.values.iter())
            .any(|(&axis, &v)| axis == Axis::Terminate && v == 1.0);
        if terminate {
            self.state = ControllerState::Stopped;
            out.log(Event::EpisodeEnded {
                seq: a.seq,
                at_us: now_us,
            });
            out.send(&Message::Status(self.status(now_us)));
        }
    }

    fn not_applied(&mut self, seq: u32, outcome: Outcome, out: &mut Outbox) {
        out.log(Event::NotApplied { seq, outcome });
        self.ack(AckOf::Action, seq, outcome, out);
    }

    fn integrate(&mut self, values: &[f32; ACTION_LEN]) {
        for (i, &v) in values.iter().enumerate() {
            match self.layout[i] {
                Axis::Dx => self.pose[0] += v,
                Axis::Dy => self.pose[1] += v,
                Axis::Dz => self.pose[2] += v,
                Axis::Droll => self.pose[3] += v,
                Axis::Dpitch => self.pose[4] += v,
                Axis::Dyaw => self.pose[5] += v,
                Axis::Gripper => self.pose[6] = v,
                Axis::Terminate | Axis::Unused => {}
            }
        }
    }
}
