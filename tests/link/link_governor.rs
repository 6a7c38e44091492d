//! The safety governor and the controller logic: pure, driven with values and clock readings.

use spatialbot_edge::link::controller::{Controller, ControllerConfig, Event, Outbox};
use spatialbot_edge::link::governor::{
    Decision, Governor, HoldReason, Limits, LimitsError, Proposal,
};
use spatialbot_link::*;

const T0: u64 = 1_000_000_000;

fn act(values: [f32; 8], capture_us: u64) -> Proposal {
    Proposal::Values { values, capture_us }
}

fn unlimited_rate() -> Limits {
    Limits {
        min_interval_ms: 0,
        ..Limits::default()
    }
}

#[test]
fn values_inside_limits_pass_unchanged() {
    let mut g = Governor::new(unlimited_rate()).unwrap();
    let v = [0.005, -0.005, 0.0, 0.02, -0.02, 0.0, 0.4, 0.0];
    assert_eq!(
        g.decide(&act(v, T0), T0),
        Decision::Act {
            values: v,
            clamped: 0,
            step_limited: 0
        }
    );
}

#[test]
fn each_axis_is_clamped_to_its_limits_then_to_its_step() {
    let mut g = Governor::new(unlimited_rate()).unwrap();
    // Δx 0.5 → clamp 0.02 → step from rest (0) limits to 0.01. Gripper: first value, no step.
    let d = g.decide(&act([0.5, -0.5, 0.0, 0.0, 0.0, 0.0, 7.0, 0.0], T0), T0);
    assert_eq!(
        d,
        Decision::Act {
            values: [0.01, -0.01, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            clamped: 0b0100_0011,
            step_limited: 0b11
        }
    );
    // Next step: Δx may rise by 0.01 more, to the 0.02 limit; gripper 1 → 0 limited to 0.5.
    let d = g.decide(
        &act([0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], T0 + 10_000),
        T0 + 10_000,
    );
    assert_eq!(
        d,
        Decision::Act {
            values: [0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0],
            clamped: 0b1,
            step_limited: 0b0100_0000
        }
    );
    let c = g.counters();
    assert_eq!(
        (c.proposals, c.acted, c.clamped, c.step_limited),
        (2, 2, 2, 2)
    );
}

#[test]
fn non_finite_stale_parse_failure_and_rate_hold() {
    let mut g = Governor::new(Limits {
        min_interval_ms: 10,
        max_age_ms: 100,
        ..Limits::default()
    })
    .unwrap();
    let ok = [0.0; 8];
    let mut nan = ok;
    nan[3] = f32::NAN;
    let mut inf = ok;
    inf[0] = f32::INFINITY;
    assert_eq!(
        g.decide(&act(nan, T0), T0),
        Decision::Hold(HoldReason::NonFinite)
    );
    assert_eq!(
        g.decide(&act(inf, T0), T0),
        Decision::Hold(HoldReason::NonFinite)
    );
    assert_eq!(
        g.decide(&Proposal::ParseFailure, T0),
        Decision::Hold(HoldReason::ParseFailure)
    );
    assert_eq!(
        g.decide(&act(ok, T0 - 100_001), T0),
        Decision::Hold(HoldReason::Stale)
    );
    assert!(
        matches!(g.decide(&act(ok, T0 - 100_000), T0), Decision::Act { .. }),
        "exactly max_age is still fresh"
    );
    assert_eq!(
        g.decide(&act(ok, T0 + 5_000), T0 + 9_999),
        Decision::Hold(HoldReason::RateLimited)
    );
    assert!(matches!(
        g.decide(&act(ok, T0 + 5_000), T0 + 10_000),
        Decision::Act { .. }
    ));
    let c = g.counters();
    assert_eq!(
        (
            c.held_non_finite,
            c.held_parse_failure,
            c.held_stale,
            c.held_rate_limited,
            c.acted
        ),
        (2, 1, 1, 1, 2)
    );
    assert_eq!(c.held(), 5);
    assert!(c.summary().contains("held 5"));
}

#[test]
fn after_a_hold_delta_axes_restart_from_rest() {
    let mut g = Governor::new(unlimited_rate()).unwrap();
    g.decide(&act([0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0], T0), T0);
    g.decide(&act([0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0], T0), T0);
    g.decide(&Proposal::ParseFailure, T0);
    let d = g.decide(&act([0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0], T0), T0);
    assert_eq!(
        d,
        Decision::Act {
            values: [0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0],
            clamped: 0,
            step_limited: 1
        }
    );
}

#[test]
fn random_proposals_never_leave_the_limits() {
    let limits = unlimited_rate();
    let mut g = Governor::new(limits).unwrap();
    let mut s = 0x1234_5678_9abc_def0u64;
    let mut prev: Option<[f32; 8]> = None;
    for i in 0..20_000u64 {
        let values: [f32; 8] = std::array::from_fn(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            match s % 16 {
                0 => f32::from_bits((s >> 32) as u32),
                _ => ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0,
            }
        });
        match g.decide(&act(values, T0 + i), T0 + i) {
            Decision::Act { values: out, .. } => {
                for k in 0..8 {
                    assert!(
                        out[k].is_finite() && out[k] >= limits.min[k] && out[k] <= limits.max[k]
                    );
                    if let Some(p) = prev {
                        assert!(
                            (out[k] - p[k]).abs() <= limits.max_step[k] * 1.0001,
                            "axis {k}: {} → {}",
                            p[k],
                            out[k]
                        );
                    }
                }
                prev = Some(out);
            }
            Decision::Hold(r) => {
                assert_eq!(r, HoldReason::NonFinite);
                prev = prev.map(|mut p| {
                    p[..6].iter_mut().for_each(|v| *v = 0.0);
                    p
                });
            }
        }
    }
}

#[test]
fn bad_limits_are_refused_with_the_axis_named() {
    let mut l = Limits::default();
    l.min[2] = 1.0;
    let e = Governor::new(l).err().unwrap();
    assert!(matches!(e, LimitsError::Inverted { index: 2, .. }));
    assert!(e.to_string().contains("dz"));
    let mut l = Limits::default();
    l.max_step[6] = 0.0;
    assert!(matches!(
        Governor::new(l).err().unwrap(),
        LimitsError::Step { index: 6, .. }
    ));
}

/// The reference controller behind the message-level calls these tests are written with:
/// replies decoded from its outbox, no periodic Status.
struct Ctl {
    c: Controller,
    out: Outbox,
}

impl Ctl {
    fn new() -> Self {
        Self {
            c: Controller::new(ControllerConfig {
                status_period_us: 0,
            }),
            out: Outbox::new(),
        }
    }
    fn drain(&mut self, replies: &mut Vec<Message>, events: &mut Vec<Event>) {
        for f in self.out.frames() {
            replies.push(decode_frame(&f[..f.len() - 1]).unwrap());
        }
        events.extend(self.out.events().copied());
        self.out.clear();
    }
    fn handle(&mut self, m: &Message, now: u64, r: &mut Vec<Message>, e: &mut Vec<Event>) {
        self.c.handle(m, now, &mut self.out);
        self.drain(r, e);
    }
    /// The watchdog's Fault if it fired (checking that a Status follows it).
    fn tick(&mut self, now: u64, e: &mut Vec<Event>) -> Option<Message> {
        self.c.tick(now, &mut self.out);
        let mut r = Vec::new();
        self.drain(&mut r, e);
        match r.as_slice() {
            [] => None,
            [f @ Message::Fault(_), Message::Status(_)] => Some(*f),
            other => panic!("tick sent {other:?}"),
        }
    }
    fn state(&self) -> ControllerState {
        self.c.state()
    }
    fn status(&self, now: u64) -> Status {
        self.c.status(now)
    }
}

fn hello(watchdog_ms: u16) -> Message {
    let l = Limits::default();
    Message::Hello(Hello {
        protocol: 1,
        session: 9,
        layout: l.layout,
        min: l.min,
        max: l.max,
        max_step: l.max_step,
        watchdog_ms,
    })
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

#[test]
fn controller_applies_in_order_rejects_duplicates_and_out_of_limit_values() {
    let mut c = Ctl::new();
    let (mut r, mut e) = (Vec::new(), Vec::new());
    c.handle(&action(1, [0.0; 8]), T0, &mut r, &mut e);
    assert_eq!(
        r.pop(),
        Some(Message::Ack(Ack {
            of: AckOf::Action,
            seq: 1,
            outcome: Outcome::Held
        })),
        "no session yet"
    );
    c.handle(&hello(100), T0, &mut r, &mut e);
    assert!(r.contains(&Message::HelloAck(HelloAck {
        protocol: 1,
        session: 9,
        accepted: true
    })));
    c.handle(
        &action(1, [0.01, 0.0, -0.01, 0.0, 0.0, 0.1, 0.7, 0.0]),
        T0,
        &mut r,
        &mut e,
    );
    c.handle(&action(1, [0.01; 8]), T0, &mut r, &mut e);
    c.handle(
        &action(2, [0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
        T0,
        &mut r,
        &mut e,
    );
    let outcomes: Vec<Outcome> = r
        .iter()
        .filter_map(|m| match m {
            Message::Ack(a) => Some(a.outcome),
            _ => None,
        })
        .collect();
    assert_eq!(
        outcomes,
        [Outcome::Applied, Outcome::Duplicate, Outcome::Rejected]
    );
    let s = c.status(T0);
    assert_eq!(s.last_seq, 1);
    assert_eq!(s.pose, [0.01, 0.0, -0.01, 0.0, 0.0, 0.1, 0.7]);
    assert_eq!(s.faults, fault_bits::SEQUENCE | fault_bits::LIMIT);
}

#[test]
fn controller_watchdog_holds_after_silence_and_resumes() {
    let mut c = Ctl::new();
    let (mut r, mut e) = (Vec::new(), Vec::new());
    c.handle(&hello(100), T0, &mut r, &mut e);
    assert_eq!(
        c.tick(T0 + 100_000, &mut e),
        None,
        "exactly watchdog_ms is not late"
    );
    let fault = c.tick(T0 + 100_001, &mut e);
    assert_eq!(
        fault,
        Some(Message::Fault(Fault {
            code: FaultCode::Watchdog,
            detail: 0
        }))
    );
    assert_eq!(c.state(), ControllerState::Holding);
    assert!(e.contains(&Event::WatchdogHold {
        silence_us: 100_001,
        at_us: T0 + 100_001
    }));
    c.handle(
        &Message::Heartbeat(Heartbeat { seq: 1, send_us: 0 }),
        T0 + 200_000,
        &mut r,
        &mut e,
    );
    assert_eq!(c.state(), ControllerState::Active);
    c.handle(
        &Message::Stop(Stop {
            seq: 2,
            reason: StopReason::Estop,
        }),
        T0 + 200_001,
        &mut r,
        &mut e,
    );
    assert_eq!(c.state(), ControllerState::Stopped);
    assert!(r.contains(&Message::Ack(Ack {
        of: AckOf::Stop,
        seq: 2,
        outcome: Outcome::Applied
    })));
    assert_eq!(
        c.tick(T0 + 900_000, &mut e),
        None,
        "a stopped controller has nothing to hold"
    );
    c.handle(&action(1, [0.0; 8]), T0 + 900_000, &mut r, &mut e);
    assert_eq!(
        r.last(),
        Some(&Message::Ack(Ack {
            of: AckOf::Action,
            seq: 1,
            outcome: Outcome::Held
        }))
    );
}

#[test]
fn link_specs_parse_and_bad_ones_say_what_to_write() {
    use spatialbot_edge::link::LinkSpec;
    assert_eq!("sim".parse::<LinkSpec>().unwrap(), LinkSpec::Sim);
    assert_eq!(
        "serial:/dev/ttyACM0@115200".parse::<LinkSpec>().unwrap(),
        LinkSpec::Serial {
            path: "/dev/ttyACM0".into(),
            baud: 115_200
        }
    );
    assert_eq!(
        "serial:/dev/ttyUSB1".parse::<LinkSpec>().unwrap(),
        LinkSpec::Serial {
            path: "/dev/ttyUSB1".into(),
            baud: 921_600
        }
    );
    assert_eq!(
        "pty:/tmp/arm".parse::<LinkSpec>().unwrap(),
        LinkSpec::Pty {
            path: "/tmp/arm".into()
        }
    );
    for bad in ["serial:/dev/ttyACM0@fast", "serial:@9600", "usb:0", "pty:"] {
        let e = bad.parse::<LinkSpec>().unwrap_err().to_string();
        assert!(
            e.contains(bad) && e.contains("serial:/dev/ttyACM0@921600"),
            "{e}"
        );
    }
}
