//! The reference controller against SPEC.md §6, one test per rule. Each test drives the
//! controller with encoded frames (as a host would) and reads back the frames it sent.

use spatialbot_link::controller::{Controller, ControllerConfig, Event, Outbox};
use spatialbot_link::*;

const T0: u64 = 1_000_000;
const SESSION: u32 = 0x1234_5678;

/// Limits of the tests' sessions: ±0.1 on the deltas, [0, 1] on gripper and terminate.
fn hello_with(session: u32, protocol: u8, watchdog_ms: u16) -> Message {
    Message::Hello(Hello {
        protocol,
        session,
        layout: DEFAULT_LAYOUT,
        min: [-0.1, -0.1, -0.1, -0.1, -0.1, -0.1, 0.0, 0.0],
        max: [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 1.0, 1.0],
        max_step: [0.1; 8],
        watchdog_ms,
    })
}

fn hello(session: u32) -> Message {
    hello_with(session, 1, 100)
}

fn action(seq: u32, values: [f32; 8]) -> Message {
    Message::Action(Action {
        seq,
        chunk_id: 0,
        chunk_index: 0,
        capture_us: 0,
        send_us: 0,
        values,
    })
}

fn small(seq: u32) -> Message {
    action(seq, [0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0])
}

fn heartbeat(seq: u32) -> Message {
    Message::Heartbeat(Heartbeat { seq, send_us: 0 })
}

fn stop(seq: u32, reason: StopReason) -> Message {
    Message::Stop(Stop { seq, reason })
}

fn ack(of: AckOf, seq: u32, outcome: Outcome) -> Message {
    Message::Ack(Ack { of, seq, outcome })
}

fn fault(code: FaultCode, detail: u32) -> Message {
    Message::Fault(Fault { code, detail })
}

/// A controller and what it sent and logged, driven over bytes.
struct Rig {
    c: Controller,
    out: Outbox,
    events: Vec<Event>,
}

impl Rig {
    fn new() -> Self {
        Self::with(ControllerConfig {
            status_period_us: 0,
        })
    }
    fn with(cfg: ControllerConfig) -> Self {
        Self {
            c: Controller::new(cfg),
            out: Outbox::new(),
            events: Vec::new(),
        }
    }
    fn drain(&mut self) -> Vec<Message> {
        let sent = self
            .out
            .frames()
            .map(|f| decode_frame(&f[..f.len() - 1]).unwrap())
            .collect();
        self.events.extend(self.out.events().copied());
        self.out.clear();
        sent
    }
    fn bytes(&mut self, bytes: &[u8], now: u64) -> Vec<Message> {
        let mut sent = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let used = self.c.receive(rest, now, &mut self.out);
            sent.extend(self.drain());
            rest = &rest[used..];
        }
        sent
    }
    fn send(&mut self, m: &Message, now: u64) -> Vec<Message> {
        let mut buf = [0u8; MAX_FRAME];
        let n = encode(m, &mut buf).unwrap();
        self.bytes(&buf[..n], now)
    }
    fn tick(&mut self, now: u64) -> Vec<Message> {
        self.c.tick(now, &mut self.out);
        self.drain()
    }
    fn raise(&mut self, code: FaultCode, now: u64) -> Vec<Message> {
        self.c.raise_fault(code, 0, now, &mut self.out);
        self.drain()
    }
    fn status(&self, now: u64) -> Message {
        Message::Status(self.c.status(now))
    }
    /// A controller in session `SESSION`, action 1 applied.
    fn active() -> Self {
        let mut r = Self::new();
        r.send(&hello(SESSION), T0);
        assert_eq!(
            r.send(&small(1), T0),
            [ack(AckOf::Action, 1, Outcome::Applied)]
        );
        r
    }
}

fn state_of(m: &Message) -> Option<ControllerState> {
    match m {
        Message::Status(s) => Some(s.state),
        _ => None,
    }
}

// --- Hello -------------------------------------------------------------------------------

#[test]
fn a_hello_with_protocol_1_and_a_watchdog_opens_a_session_and_is_acked_with_the_protocol_spoken() {
    let mut r = Rig::new();
    let sent = r.send(&hello(SESSION), T0);
    assert_eq!(
        sent,
        [Message::HelloAck(HelloAck {
            protocol: PROTOCOL_VERSION,
            session: SESSION,
            accepted: true
        })]
    );
    assert_eq!(r.c.state(), ControllerState::Active);
}

#[test]
fn a_hello_with_another_protocol_is_refused_with_protocol_mismatch_then_hello_ack_false() {
    let mut r = Rig::new();
    let sent = r.send(&hello_with(SESSION, 2, 100), T0);
    assert_eq!(
        sent,
        [
            fault(FaultCode::ProtocolMismatch, 2),
            Message::HelloAck(HelloAck {
                protocol: 1,
                session: SESSION,
                accepted: false
            })
        ]
    );
    assert_eq!(r.c.state(), ControllerState::Idle);
}

#[test]
fn a_hello_with_watchdog_0_is_refused_as_a_protocol_mismatch_with_the_protocol_received() {
    let mut r = Rig::new();
    let sent = r.send(&hello_with(SESSION, 1, 0), T0);
    assert_eq!(sent[0], fault(FaultCode::ProtocolMismatch, 1));
    assert!(matches!(
        sent[1],
        Message::HelloAck(HelloAck {
            accepted: false,
            ..
        })
    ));
}

#[test]
fn the_same_session_keeps_last_seq_faults_and_bad_frames_a_new_session_resets_them() {
    let mut r = Rig::active();
    r.send(&small(1), T0); // duplicate: fault bit 3
    r.bytes(&[0x05, 0x11, 0x00], T0); // a bad frame
    let before = r.c.status(T0);
    assert_eq!(before.last_seq, 1);
    assert_eq!(before.bad_frames, 1);
    assert_eq!(before.faults, fault_bits::SEQUENCE | fault_bits::BAD_FRAME);
    r.send(&hello(SESSION), T0);
    assert_eq!(r.c.status(T0), before, "same session: counters kept");
    r.send(&hello(SESSION + 1), T0);
    let after = r.c.status(T0);
    assert_eq!((after.last_seq, after.faults, after.bad_frames), (0, 0, 0));
}

#[test]
fn a_hello_while_idle_always_starts_fresh() {
    let mut r = Rig::new();
    // Session 0 is the controller's initial session value; a Hello with it still resets.
    r.bytes(&[0x05, 0x11, 0x00], T0);
    assert_eq!(r.c.bad_frames(), 1);
    r.send(&hello(0), T0);
    assert_eq!(r.c.bad_frames(), 0);
    assert!(r.events.contains(&Event::SessionStarted {
        session: 0,
        watchdog_ms: 100,
        fresh: true
    }));
}

#[test]
fn any_accepted_hello_leaves_stopped_same_session_keeping_its_counters() {
    let mut r = Rig::active();
    r.send(&stop(1, StopReason::Operator), T0);
    assert_eq!(r.c.state(), ControllerState::Stopped);
    r.send(&hello(SESSION), T0);
    assert_eq!(r.c.state(), ControllerState::Active);
    assert_eq!(r.c.last_seq(), 1);
    assert_eq!(
        r.send(&small(1), T0),
        [ack(AckOf::Action, 1, Outcome::Duplicate)]
    );
    r.send(&stop(2, StopReason::Operator), T0);
    r.send(&hello(SESSION + 1), T0);
    assert_eq!(
        r.send(&small(1), T0),
        [ack(AckOf::Action, 1, Outcome::Applied)]
    );
}

// --- Action ------------------------------------------------------------------------------

#[test]
fn an_action_in_session_with_a_higher_seq_and_values_in_limits_is_applied_and_integrated() {
    let mut r = Rig::active();
    assert_eq!(
        r.send(&action(2, [0.02, -0.01, 0.1, 0.0, 0.0, -0.1, 1.0, 0.0]), T0),
        [ack(AckOf::Action, 2, Outcome::Applied)]
    );
    assert_eq!(r.c.last_seq(), 2);
    let p = r.c.pose();
    assert!((p[0] - 0.03).abs() < 1e-6);
    assert_eq!(&p[1..], &[-0.01, 0.1, 0.0, 0.0, -0.1, 1.0]);
}

#[test]
fn an_action_with_seq_at_or_below_last_seq_is_a_duplicate_and_sets_fault_bit_3() {
    let mut r = Rig::active();
    assert_eq!(
        r.send(&small(1), T0),
        [ack(AckOf::Action, 1, Outcome::Duplicate)]
    );
    assert_eq!(
        r.send(&small(0), T0),
        [ack(AckOf::Action, 0, Outcome::Duplicate)]
    );
    assert_eq!(r.c.faults(), fault_bits::SEQUENCE);
}

#[test]
fn an_action_outside_the_limits_is_rejected_then_a_limit_violation_names_the_axes_by_bit() {
    let mut r = Rig::active();
    let sent = r.send(&action(2, [0.5, 0.0, -0.2, 0.0, 0.0, 0.0, 0.0, 0.0]), T0);
    assert_eq!(
        sent,
        [
            ack(AckOf::Action, 2, Outcome::Rejected),
            fault(FaultCode::LimitViolation, 0b101)
        ]
    );
    assert_eq!(r.c.last_seq(), 1, "a rejected action is not applied");
    assert_eq!(r.c.faults(), fault_bits::LIMIT);
    assert_eq!(
        r.send(&small(2), T0),
        [ack(AckOf::Action, 2, Outcome::Applied)],
        "a rejected seq may be used again"
    );
}

#[test]
fn an_action_with_a_value_that_is_not_finite_is_rejected() {
    let mut r = Rig::active();
    for (seq, v) in [(2, f32::NAN), (3, f32::INFINITY), (4, f32::NEG_INFINITY)] {
        let sent = r.send(&action(seq, [0.0, 0.0, 0.0, v, 0.0, 0.0, 0.0, 0.0]), T0);
        assert_eq!(
            sent,
            [
                ack(AckOf::Action, seq, Outcome::Rejected),
                fault(FaultCode::LimitViolation, 1 << 3)
            ]
        );
    }
}

#[test]
fn a_non_zero_value_on_an_unused_axis_is_rejected_even_inside_the_limits() {
    let mut r = Rig::new();
    let Message::Hello(mut h) = hello(SESSION) else {
        unreachable!()
    };
    h.layout[5] = Axis::Unused;
    r.send(&Message::Hello(h), T0);
    let sent = r.send(&action(1, [0.0, 0.0, 0.0, 0.0, 0.0, 0.05, 0.0, 0.0]), T0);
    assert_eq!(
        sent,
        [
            ack(AckOf::Action, 1, Outcome::Rejected),
            fault(FaultCode::LimitViolation, 1 << 5)
        ]
    );
    assert_eq!(
        r.send(&action(1, [0.0; 8]), T0),
        [ack(AckOf::Action, 1, Outcome::Applied)]
    );
}

#[test]
fn duplicate_is_checked_before_the_values() {
    let mut r = Rig::active();
    let sent = r.send(&action(1, [9.0; 8]), T0);
    assert_eq!(sent, [ack(AckOf::Action, 1, Outcome::Duplicate)]);
    assert_eq!(r.c.faults(), fault_bits::SEQUENCE, "no limit bit");
}

#[test]
fn every_valid_action_feeds_the_watchdog_whatever_its_outcome() {
    let mut r = Rig::active();
    // Duplicate at +90 ms, rejected at +180 ms: the watchdog (100 ms) never fires.
    r.send(&small(1), T0 + 90_000);
    assert!(r.tick(T0 + 150_000).is_empty());
    r.send(&action(2, [1.0; 8]), T0 + 180_000);
    assert!(r.tick(T0 + 250_000).is_empty());
    assert_eq!(r.c.state(), ControllerState::Active);
}

#[test]
fn an_action_while_holding_resumes_the_session_and_is_judged_as_usual() {
    let mut r = Rig::active();
    r.tick(T0 + 100_001);
    assert_eq!(r.c.state(), ControllerState::Holding);
    assert_eq!(
        r.send(&small(2), T0 + 200_000),
        [ack(AckOf::Action, 2, Outcome::Applied)]
    );
    assert_eq!(r.c.state(), ControllerState::Active);
    assert!(r.events.contains(&Event::Resumed {
        at_us: T0 + 200_000
    }));
}

#[test]
fn an_action_in_idle_stopped_or_faulted_is_acked_held_and_not_applied() {
    let mut r = Rig::new();
    assert_eq!(
        r.send(&small(1), T0),
        [ack(AckOf::Action, 1, Outcome::Held)]
    );
    let mut r = Rig::active();
    r.send(&stop(1, StopReason::Operator), T0);
    assert_eq!(
        r.send(&small(2), T0),
        [ack(AckOf::Action, 2, Outcome::Held)]
    );
    let mut r = Rig::active();
    r.raise(FaultCode::Hardware, T0);
    assert_eq!(
        r.send(&small(2), T0),
        [ack(AckOf::Action, 2, Outcome::Held)]
    );
    assert_eq!(r.c.last_seq(), 1);
}

#[test]
fn terminate_exactly_1_applies_the_action_then_stops_and_sends_status() {
    let mut r = Rig::active();
    let sent = r.send(&action(2, [0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0]), T0);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], ack(AckOf::Action, 2, Outcome::Applied));
    assert_eq!(state_of(&sent[1]), Some(ControllerState::Stopped));
    assert_eq!(r.c.last_seq(), 2);
    assert!(r
        .events
        .contains(&Event::EpisodeEnded { seq: 2, at_us: T0 }));
}

#[test]
fn terminate_below_1_continues() {
    let mut r = Rig::active();
    let sent = r.send(
        &action(2, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.999_999_9]),
        T0,
    );
    assert_eq!(sent, [ack(AckOf::Action, 2, Outcome::Applied)]);
    assert_eq!(r.c.state(), ControllerState::Active);
}

// --- Heartbeat ---------------------------------------------------------------------------

#[test]
fn a_heartbeat_in_session_feeds_the_watchdog_and_is_acked_applied_then_status() {
    let mut r = Rig::active();
    let sent = r.send(&heartbeat(1), T0 + 90_000);
    assert_eq!(sent[0], ack(AckOf::Heartbeat, 1, Outcome::Applied));
    assert_eq!(sent[1], r.status(T0 + 90_000));
    assert!(r.tick(T0 + 150_000).is_empty(), "fed at +90 ms");
}

#[test]
fn a_heartbeat_leaves_holding() {
    let mut r = Rig::active();
    r.tick(T0 + 100_001);
    let sent = r.send(&heartbeat(1), T0 + 200_000);
    assert_eq!(sent[0], ack(AckOf::Heartbeat, 1, Outcome::Applied));
    assert_eq!(state_of(&sent[1]), Some(ControllerState::Active));
}

#[test]
fn a_heartbeat_in_idle_stopped_or_faulted_is_acked_held_then_status() {
    let mut r = Rig::new();
    let sent = r.send(&heartbeat(1), T0);
    assert_eq!(sent[0], ack(AckOf::Heartbeat, 1, Outcome::Held));
    assert_eq!(state_of(&sent[1]), Some(ControllerState::Idle));
    let mut r = Rig::active();
    r.send(&stop(1, StopReason::Finished), T0);
    let sent = r.send(&heartbeat(2), T0);
    assert_eq!(sent[0], ack(AckOf::Heartbeat, 2, Outcome::Held));
    assert_eq!(state_of(&sent[1]), Some(ControllerState::Stopped));
    let mut r = Rig::active();
    r.raise(FaultCode::Hardware, T0);
    let sent = r.send(&heartbeat(1), T0);
    assert_eq!(sent[0], ack(AckOf::Heartbeat, 1, Outcome::Held));
    assert_eq!(state_of(&sent[1]), Some(ControllerState::Faulted));
}

// --- Watchdog ----------------------------------------------------------------------------

#[test]
fn the_watchdog_holds_after_more_than_watchdog_ms_of_silence_sending_fault_then_status() {
    let mut r = Rig::active();
    assert!(
        r.tick(T0 + 100_000).is_empty(),
        "exactly watchdog_ms is not late"
    );
    let sent = r.tick(T0 + 100_001);
    assert_eq!(
        sent,
        [fault(FaultCode::Watchdog, 1), r.status(T0 + 100_001)]
    );
    assert_eq!(r.c.state(), ControllerState::Holding);
    assert_eq!(r.c.faults() & fault_bits::WATCHDOG, fault_bits::WATCHDOG);
    assert!(r.tick(T0 + 900_000).is_empty(), "fires once per hold");
}

#[test]
fn the_watchdog_does_not_run_outside_active() {
    let mut r = Rig::new();
    assert!(r.tick(T0 + 10_000_000).is_empty());
    let mut r = Rig::active();
    r.send(&stop(1, StopReason::Operator), T0);
    assert!(r.tick(T0 + 10_000_000).is_empty());
}

#[test]
fn status_is_sent_every_status_period_while_active() {
    let mut r = Rig::with(ControllerConfig::default());
    r.send(&hello(SESSION), T0);
    assert_eq!(r.tick(T0), [r.status(T0)], "at once");
    assert!(r.tick(T0 + 49_999).is_empty());
    r.send(&heartbeat(1), T0 + 49_999);
    assert_eq!(r.tick(T0 + 50_000), [r.status(T0 + 50_000)]);
}

// --- Stop --------------------------------------------------------------------------------

#[test]
fn a_stop_from_any_state_but_faulted_goes_to_stopped_acked_applied_then_status() {
    let mut r = Rig::active();
    let sent = r.send(&stop(7, StopReason::Operator), T0);
    assert_eq!(sent[0], ack(AckOf::Stop, 7, Outcome::Applied));
    assert_eq!(state_of(&sent[1]), Some(ControllerState::Stopped));
    let mut r = Rig::new();
    let sent = r.send(&stop(1, StopReason::Finished), T0);
    assert_eq!(state_of(&sent[1]), Some(ControllerState::Stopped));
}

#[test]
fn a_stop_with_reason_estop_latches_fault_bit_4() {
    let mut r = Rig::active();
    r.send(&stop(1, StopReason::Estop), T0);
    assert_eq!(r.c.faults() & fault_bits::ESTOP, fault_bits::ESTOP);
}

// --- Faulted -----------------------------------------------------------------------------

#[test]
fn a_local_hardware_fault_sends_fault_hardware_then_status_faulted() {
    let mut r = Rig::active();
    let sent = r.raise(FaultCode::Hardware, T0);
    assert_eq!(sent[0], fault(FaultCode::Hardware, 0));
    assert_eq!(state_of(&sent[1]), Some(ControllerState::Faulted));
}

#[test]
fn the_e_stop_input_sends_fault_estop_then_status_faulted_and_latches_bit_4() {
    let mut r = Rig::active();
    let sent = r.raise(FaultCode::Estop, T0);
    assert_eq!(sent[0], fault(FaultCode::Estop, 0));
    match sent[1] {
        Message::Status(s) => {
            assert_eq!(s.state, ControllerState::Faulted);
            assert_eq!(s.faults & fault_bits::ESTOP, fault_bits::ESTOP);
        }
        ref m => panic!("{m:?}"),
    }
}

#[test]
fn a_stop_while_faulted_is_acked_applied_with_status_and_stays_faulted() {
    let mut r = Rig::active();
    r.raise(FaultCode::Hardware, T0);
    let sent = r.send(&stop(1, StopReason::HostFault), T0);
    assert_eq!(sent[0], ack(AckOf::Stop, 1, Outcome::Applied));
    assert_eq!(state_of(&sent[1]), Some(ControllerState::Faulted));
}

#[test]
fn a_hello_while_the_local_fault_persists_is_answered_with_the_fault_and_hello_ack_false() {
    let mut r = Rig::active();
    r.raise(FaultCode::Estop, T0);
    let sent = r.send(&hello(SESSION + 1), T0);
    assert_eq!(
        sent,
        [
            fault(FaultCode::Estop, 0),
            Message::HelloAck(HelloAck {
                protocol: 1,
                session: SESSION + 1,
                accepted: false
            })
        ]
    );
    assert_eq!(r.c.state(), ControllerState::Faulted);
}

#[test]
fn faulted_is_left_only_by_a_hello_after_the_fault_was_cleared_locally() {
    let mut r = Rig::active();
    r.raise(FaultCode::Hardware, T0);
    r.send(&heartbeat(1), T0);
    r.send(&stop(2, StopReason::Operator), T0);
    r.c.clear_fault(T0, &mut r.out);
    r.drain();
    assert_eq!(
        r.c.state(),
        ControllerState::Faulted,
        "clearing is not leaving"
    );
    assert!(r.tick(T0 + 10_000_000).is_empty());
    let sent = r.send(&hello(SESSION), T0 + 10_000_000);
    assert!(matches!(
        sent[..],
        [Message::HelloAck(HelloAck { accepted: true, .. })]
    ));
    assert_eq!(r.c.state(), ControllerState::Active);
}

// --- Receiving -----------------------------------------------------------------------------

#[test]
fn a_bad_frame_is_counted_sets_fault_bit_1_and_does_not_feed_the_watchdog() {
    let mut r = Rig::active();
    let mut buf = [0u8; MAX_FRAME];
    let n = encode(&heartbeat(1), &mut buf).unwrap();
    buf[3] ^= 0x40; // CRC mismatch
    assert!(r.bytes(&buf[..n], T0 + 90_000).is_empty(), "no reply");
    assert_eq!(r.c.bad_frames(), 1);
    assert_eq!(r.c.faults() & fault_bits::BAD_FRAME, fault_bits::BAD_FRAME);
    assert_eq!(r.tick(T0 + 100_001)[0], fault(FaultCode::Watchdog, 1));
}

#[test]
fn garbage_before_a_recovered_frame_counts_once_in_bad_frames_and_the_frame_is_handled() {
    let mut r = Rig::active();
    let mut buf = [0u8; MAX_FRAME];
    let n = encode(&heartbeat(1), &mut buf).unwrap();
    let mut bytes = vec![0x07, 0x33, 0x44];
    bytes.extend_from_slice(&buf[..n]);
    let sent = r.bytes(&bytes, T0);
    assert_eq!(sent[0], ack(AckOf::Heartbeat, 1, Outcome::Applied));
    assert_eq!(r.c.bad_frames(), 1);
    assert_eq!(r.c.decoder_counters().recovered, 1);
    assert!(r.events.contains(&Event::RecoveredAfterGarbage));
}

#[test]
fn controller_messages_received_by_the_controller_are_ignored() {
    let mut r = Rig::active();
    for m in [
        ack(AckOf::Action, 1, Outcome::Applied),
        fault(FaultCode::Watchdog, 0),
        r.status(T0),
    ] {
        assert!(r.send(&m, T0).is_empty());
    }
    assert_eq!(r.c.bad_frames(), 0);
}

#[test]
fn receive_stops_when_the_outbox_is_full_and_goes_on_after_it_is_emptied() {
    let mut c = Controller::new(ControllerConfig::default());
    let mut out = Outbox::new();
    let mut stream = Vec::new();
    let mut buf = [0u8; MAX_FRAME];
    let n = encode(&hello(SESSION), &mut buf).unwrap();
    stream.extend_from_slice(&buf[..n]);
    for seq in 1..=20 {
        let n = encode(&heartbeat(seq), &mut buf).unwrap();
        stream.extend_from_slice(&buf[..n]);
    }
    let mut acks = 0;
    let mut rest = &stream[..];
    let mut calls = 0;
    while !rest.is_empty() {
        let used = c.receive(rest, T0, &mut out);
        calls += 1;
        acks += out
            .frames()
            .filter(|f| matches!(decode_frame(&f[..f.len() - 1]), Ok(Message::Ack(_))))
            .count();
        out.clear();
        rest = &rest[used..];
    }
    assert!(calls > 1);
    assert_eq!(acks, 20);
    assert_eq!(out.lost(), 0);
}
