//! The simulated arm controller's logic. Pure: messages and clock readings in, replies and
//! events out. `sim.rs` runs it on a byte stream.

use spatialbot_link::{
    fault_bits, Ack, AckOf, Action, Axis, ControllerState, Fault, FaultCode, FrameError, Hello,
    HelloAck, Message, Outcome, Status, StopReason, ACTION_LEN, PROTOCOL_VERSION,
};

/// What the controller did, for its log.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    SessionStarted {
        session: u32,
        watchdog_ms: u16,
    },
    /// An action was integrated into the pose.
    Applied {
        action: Action,
        pose: [f32; 7],
        at_us: u64,
    },
    /// An action was not applied.
    NotApplied {
        seq: u32,
        outcome: Outcome,
    },
    /// Nothing valid arrived for `silence_us` (> watchdog): the arm holds.
    WatchdogHold {
        silence_us: u64,
        at_us: u64,
    },
    /// A valid message arrived after a watchdog hold.
    Resumed {
        at_us: u64,
    },
    Stopped {
        reason: StopReason,
        at_us: u64,
    },
    BadFrame {
        error: FrameError,
    },
}

pub struct Controller {
    state: ControllerState,
    session: u32,
    layout: [Axis; ACTION_LEN],
    min: [f32; ACTION_LEN],
    max: [f32; ACTION_LEN],
    watchdog_us: u64,
    last_valid_us: u64,
    last_seq: u32,
    faults: u32,
    bad_frames: u32,
    pose: [f32; 7],
}

impl Default for Controller {
    fn default() -> Self {
        Self::new()
    }
}

impl Controller {
    pub fn new() -> Self {
        Self {
            state: ControllerState::Idle,
            session: 0,
            layout: spatialbot_link::DEFAULT_LAYOUT,
            min: [0.0; ACTION_LEN],
            max: [0.0; ACTION_LEN],
            watchdog_us: 0,
            last_valid_us: 0,
            last_seq: 0,
            faults: 0,
            bad_frames: 0,
            pose: [0.0; 7],
        }
    }

    pub fn state(&self) -> ControllerState {
        self.state
    }

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

    /// A frame that failed to decode.
    pub fn bad_frame(&mut self, error: FrameError, events: &mut Vec<Event>) {
        self.bad_frames = self.bad_frames.wrapping_add(1);
        self.faults |= fault_bits::BAD_FRAME;
        events.push(Event::BadFrame { error });
    }

    /// Handles one received message; pushes the replies to send and the events to log.
    pub fn handle(
        &mut self,
        message: &Message,
        now_us: u64,
        replies: &mut Vec<Message>,
        events: &mut Vec<Event>,
    ) {
        match *message {
            Message::Hello(h) => self.hello(&h, now_us, replies, events),
            Message::Action(a) => {
                let outcome = self.action(&a, now_us, events);
                replies.push(Message::Ack(Ack {
                    of: AckOf::Action,
                    seq: a.seq,
                    outcome,
                }));
            }
            Message::Heartbeat(h) => {
                let outcome = match self.state {
                    ControllerState::Active | ControllerState::Holding => {
                        self.feed_watchdog(now_us, events);
                        Outcome::Applied
                    }
                    _ => Outcome::Held,
                };
                replies.push(Message::Ack(Ack {
                    of: AckOf::Heartbeat,
                    seq: h.seq,
                    outcome,
                }));
                replies.push(Message::Status(self.status(now_us)));
            }
            Message::Stop(s) => {
                if self.state != ControllerState::Stopped {
                    events.push(Event::Stopped {
                        reason: s.reason,
                        at_us: now_us,
                    });
                }
                if s.reason == StopReason::Estop {
                    self.faults |= fault_bits::ESTOP;
                }
                self.state = ControllerState::Stopped;
                replies.push(Message::Ack(Ack {
                    of: AckOf::Stop,
                    seq: s.seq,
                    outcome: Outcome::Applied,
                }));
                replies.push(Message::Status(self.status(now_us)));
            }
            // Controller → host messages arriving here are echoes or a miswired link: ignore.
            Message::HelloAck(_) | Message::Ack(_) | Message::Status(_) | Message::Fault(_) => {}
        }
    }

    /// Advances the clock: returns a reply to send when the watchdog expires.
    pub fn tick(&mut self, now_us: u64, events: &mut Vec<Event>) -> Option<Message> {
        if self.state == ControllerState::Active
            && now_us.saturating_sub(self.last_valid_us) > self.watchdog_us
        {
            self.state = ControllerState::Holding;
            self.faults |= fault_bits::WATCHDOG;
            events.push(Event::WatchdogHold {
                silence_us: now_us - self.last_valid_us,
                at_us: now_us,
            });
            return Some(Message::Fault(Fault {
                code: FaultCode::Watchdog,
                detail: self.last_seq,
            }));
        }
        None
    }

    fn hello(
        &mut self,
        h: &Hello,
        now_us: u64,
        replies: &mut Vec<Message>,
        events: &mut Vec<Event>,
    ) {
        let accepted = h.protocol == PROTOCOL_VERSION && h.watchdog_ms > 0;
        if accepted {
            let new_session = h.session != self.session || self.state == ControllerState::Idle;
            self.session = h.session;
            self.layout = h.layout;
            self.min = h.min;
            self.max = h.max;
            self.watchdog_us = u64::from(h.watchdog_ms) * 1000;
            self.last_valid_us = now_us;
            self.state = ControllerState::Active;
            if new_session {
                self.last_seq = 0;
                self.faults = 0;
                self.bad_frames = 0;
            }
            events.push(Event::SessionStarted {
                session: h.session,
                watchdog_ms: h.watchdog_ms,
            });
        } else {
            replies.push(Message::Fault(Fault {
                code: FaultCode::ProtocolMismatch,
                detail: u32::from(h.protocol),
            }));
        }
        replies.push(Message::HelloAck(HelloAck {
            protocol: PROTOCOL_VERSION,
            session: h.session,
            accepted,
        }));
    }

    fn feed_watchdog(&mut self, now_us: u64, events: &mut Vec<Event>) {
        self.last_valid_us = now_us;
        if self.state == ControllerState::Holding {
            self.state = ControllerState::Active;
            events.push(Event::Resumed { at_us: now_us });
        }
    }

    fn action(&mut self, a: &Action, now_us: u64, events: &mut Vec<Event>) -> Outcome {
        let outcome = match self.state {
            ControllerState::Active | ControllerState::Holding => {
                self.feed_watchdog(now_us, events);
                if a.seq <= self.last_seq {
                    self.faults |= fault_bits::SEQUENCE;
                    Outcome::Duplicate
                } else if (0..ACTION_LEN).any(|i| {
                    let v = a.values[i];
                    !v.is_finite() || v < self.min[i] || v > self.max[i]
                }) {
                    self.faults |= fault_bits::LIMIT;
                    Outcome::Rejected
                } else {
                    self.integrate(&a.values);
                    self.last_seq = a.seq;
                    events.push(Event::Applied {
                        action: *a,
                        pose: self.pose,
                        at_us: now_us,
                    });
                    return Outcome::Applied;
                }
            }
            _ => Outcome::Held,
        };
        events.push(Event::NotApplied {
            seq: a.seq,
            outcome,
        });
        outcome
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
