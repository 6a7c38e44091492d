//! The host listens to the arm: the real binary (`spatialbot-edge run`, tiny-policy on the
//! sample recording) against a scripted controller on a pseudo-terminal, written here from
//! SPEC.md with the wire crate's encoder and decoder only. Each scenario scripts what the
//! controller answers and checks what the host sent back, when, and how it exited.
//!
//! Times compare the host's `Action.send_us` (CLOCK_MONOTONIC µs) with this process's
//! CLOCK_MONOTONIC, the same clock.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support;
use spatialbot_edge::exit;
use spatialbot_edge::link::clock::monotonic_us;
use spatialbot_edge::link::transport::create_pty;
use spatialbot_link::{
    crc32, encode, fault_bits, Ack, AckOf, ControllerState, Decoder, Fault, FaultCode, HelloAck,
    Message, Outcome, Status, StopReason, MAX_FRAME, PROTOCOL_VERSION,
};

/// One message the host sent, with this process's clock reading when it was decoded.
#[derive(Clone, Debug)]
struct Seen {
    at_us: u64,
    message: Message,
}

/// The scripted controller's state, which the scenario's script may change.
struct Ctl {
    state: ControllerState,
    session: u32,
    last_seq: u32,
    faults: u32,
    applied: u32,
    /// Write nothing at all (a controller that died or whose TX line broke).
    silent: bool,
    /// When the controller last wrote a frame.
    last_write_us: u64,
    next_status_us: u64,
    out: Vec<Message>,
    raw_out: Vec<u8>,
}

impl Ctl {
    fn status(&self) -> Message {
        Message::Status(Status {
            state: self.state,
            last_seq: self.last_seq,
            faults: self.faults,
            bad_frames: 0,
            controller_us: monotonic_us(),
            pose: [0.0; 7],
        })
    }

    fn ack(&mut self, of: AckOf, seq: u32, outcome: Outcome) {
        self.out.push(Message::Ack(Ack { of, seq, outcome }));
    }

    /// What a controller following SPEC §6 does (the scripts deviate from it).
    fn default_reply(&mut self, m: &Message) {
        match *m {
            Message::Hello(h) => {
                let accepted = h.protocol == PROTOCOL_VERSION && h.watchdog_ms > 0;
                if accepted {
                    if h.session != self.session || self.state == ControllerState::Idle {
                        self.last_seq = 0;
                        self.faults = 0;
                    }
                    self.session = h.session;
                    self.state = ControllerState::Active;
                }
                self.out.push(Message::HelloAck(HelloAck {
                    protocol: PROTOCOL_VERSION,
                    session: h.session,
                    accepted,
                }));
            }
            Message::Action(a) => {
                let outcome = match self.state {
                    ControllerState::Active | ControllerState::Holding => {
                        if a.seq <= self.last_seq {
                            Outcome::Duplicate
                        } else {
                            self.last_seq = a.seq;
                            self.applied += 1;
                            Outcome::Applied
                        }
                    }
                    _ => Outcome::Held,
                };
                self.ack(AckOf::Action, a.seq, outcome);
            }
            Message::Heartbeat(h) => {
                let outcome = match self.state {
                    ControllerState::Active | ControllerState::Holding => Outcome::Applied,
                    _ => Outcome::Held,
                };
                self.ack(AckOf::Heartbeat, h.seq, outcome);
                let s = self.status();
                self.out.push(s);
            }
            Message::Stop(s) => {
                if self.state != ControllerState::Faulted {
                    self.state = ControllerState::Stopped;
                }
                self.ack(AckOf::Stop, s.seq, Outcome::Applied);
                let st = self.status();
                self.out.push(st);
            }
            _ => {}
        }
    }
}

/// What a scenario's script decides per host message.
enum Reply {
    /// The SPEC's default reply.
    Default,
    /// Exactly what the script put into `ctl.out` / `ctl.raw_out` (maybe nothing).
    Scripted,
}

struct Outcome_ {
    code: i32,
    json: serde_json::Value,
    seen: Vec<Seen>,
    stderr: String,
    pid: u32,
    /// This process's clock when each signal was sent.
    signals_us: Vec<u64>,
}

impl Outcome_ {
    fn actions(&self) -> Vec<&spatialbot_link::Action> {
        self.seen
            .iter()
            .filter_map(|s| match &s.message {
                Message::Action(a) => Some(a),
                _ => None,
            })
            .collect()
    }
    fn stops(&self) -> Vec<StopReason> {
        self.seen
            .iter()
            .filter_map(|s| match &s.message {
                Message::Stop(s) => Some(s.reason),
                _ => None,
            })
            .collect()
    }
    fn hellos(&self) -> Vec<spatialbot_link::Hello> {
        self.seen
            .iter()
            .filter_map(|s| match &s.message {
                Message::Hello(h) => Some(*h),
                _ => None,
            })
            .collect()
    }
    fn link(&self, key: &str) -> u64 {
        self.json["link"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("no link.{key} in {}\nstderr: {}", self.json, self.stderr))
    }
    /// Asserts the host's exit code, showing everything it did when it differs.
    fn expect_exit(&self, code: u8) {
        assert_eq!(self.code, i32::from(code), "{}", self.context());
    }

    fn context(&self) -> String {
        format!(
            "exit {}\nstderr:\n{}\njson: {}\nhost sent: {:?}",
            self.code,
            self.stderr,
            self.json,
            self.seen
                .iter()
                .map(|s| format!("{:?}", s.message))
                .collect::<Vec<_>>()
        )
    }
}

/// When to send signals: after this long from spawn, or once this many Actions were seen.
#[derive(Clone, Copy)]
enum SignalAt {
    None,
    After(Duration),
    AfterActions(usize),
}

struct Scenario<'a> {
    name: &'a str,
    extra: Vec<String>,
    signal_at: SignalAt,
    signals: &'a [i32],
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("sbe-link-scenarios-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn spawn_host(link: &std::path::Path, extra: &[String]) -> Child {
    let root = support::repo_root();
    Command::new(support::bin())
        .current_dir(&root)
        .args(["--json", "run", "--board", "boards/dev-x86_64.toml"])
        .args(["--model", "models/tiny-policy"])
        .args(["--camera", "replay,loop:tests/data/sample"])
        .arg("--link")
        .arg(format!("pty:{}", link.display()))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spatialbot-edge")
}

/// Runs the host against the scripted controller until the host exits (at most 60 s).
fn run_scenario(
    sc: Scenario,
    mut script: impl FnMut(&Message, &mut Ctl, &[Seen]) -> Reply,
    mut tick: impl FnMut(&mut Ctl, &[Seen]),
) -> Outcome_ {
    let dir = scratch(sc.name);
    let link = dir.join("arm");
    let pty = create_pty(&link, Duration::from_millis(2)).expect("create pty");
    let duplex = pty.duplex().expect("pty duplex");
    let (mut reader, mut writer) = (duplex.reader, duplex.writer);
    let mut child = spawn_host(&link, &sc.extra);
    let pid = child.id();
    let started = Instant::now();
    let mut ctl = Ctl {
        state: ControllerState::Idle,
        session: 0,
        last_seq: 0,
        faults: 0,
        applied: 0,
        silent: false,
        last_write_us: monotonic_us(),
        next_status_us: 0,
        out: Vec::new(),
        raw_out: Vec::new(),
    };
    let mut decoder = Decoder::new();
    let mut seen: Vec<Seen> = Vec::new();
    let mut signals_us = Vec::new();
    let mut buf = [0u8; 512];
    let mut frame = [0u8; MAX_FRAME];
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code().unwrap_or(-1);
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{}: the host did not exit within 60 s", sc.name);
        }
        let due = signals_us.is_empty()
            && match sc.signal_at {
                SignalAt::None => false,
                SignalAt::After(d) => started.elapsed() >= d,
                SignalAt::AfterActions(n) => {
                    seen.iter()
                        .filter(|s| matches!(s.message, Message::Action(_)))
                        .count()
                        >= n
                }
            };
        if due {
            for &sig in sc.signals {
                signals_us.push(monotonic_us());
                // SAFETY: plain kill(2) on our own child's pid.
                unsafe {
                    libc::kill(pid as i32, sig);
                }
            }
        }
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                0
            }
            // The host closed its end (it is exiting).
            Err(_) => 0,
        };
        for &b in &buf[..n] {
            if let Some(Ok(m)) = decoder.push(b) {
                let now = monotonic_us();
                if let Reply::Default = script(&m, &mut ctl, &seen) {
                    ctl.default_reply(&m);
                }
                seen.push(Seen {
                    at_us: now,
                    message: m,
                });
            }
        }
        tick(&mut ctl, &seen);
        let now = monotonic_us();
        if ctl.state == ControllerState::Active && now >= ctl.next_status_us {
            let s = ctl.status();
            ctl.out.push(s);
            ctl.next_status_us = now + 50_000;
        }
        if ctl.silent {
            ctl.out.clear();
            ctl.raw_out.clear();
        }
        let mut bytes = std::mem::take(&mut ctl.raw_out);
        for m in ctl.out.drain(..) {
            let len = encode(&m, &mut frame).expect("encode");
            bytes.extend_from_slice(&frame[..len]);
        }
        if !bytes.is_empty() {
            let _ = writer.write_all(&bytes);
            ctl.last_write_us = monotonic_us();
        }
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut stdout);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut stderr);
    }
    drop(pty);
    let _ = std::fs::remove_dir_all(&dir);
    Outcome_ {
        code,
        json: serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
        seen,
        stderr,
        pid,
        signals_us,
    }
}

fn plain<'a>(name: &'a str, extra: &[&str]) -> Scenario<'a> {
    Scenario {
        name,
        extra: extra.iter().map(|s| s.to_string()).collect(),
        signal_at: SignalAt::None,
        signals: &[],
    }
}

fn no_tick(_: &mut Ctl, _: &[Seen]) {}

fn actions_seen(seen: &[Seen]) -> usize {
    seen.iter()
        .filter(|s| matches!(s.message, Message::Action(_)))
        .count()
}

#[test]
fn a_controller_that_applies_everything_ends_the_run_with_exit_0_and_every_action_applied() {
    let o = run_scenario(
        plain("applies", &["--steps", "4"]),
        |_, _, _| Reply::Default,
        no_tick,
    );
    o.expect_exit(exit::OK);
    let sent = o.link("actions_sent");
    assert!(sent >= 1, "{}", o.context());
    assert_eq!(o.link("applied"), sent, "{}", o.context());
    assert_eq!(o.link("unacknowledged"), 0, "{}", o.context());
    assert_eq!(o.stops(), vec![StopReason::Finished], "{}", o.context());
    assert_eq!(o.actions().len() as u64, sent);
}

#[test]
fn rejected_actions_three_in_a_row_stop_the_arm_with_host_fault_and_exit_6() {
    let o = run_scenario(
        plain("rejected", &["--steps", "40"]),
        |m, ctl, _| match m {
            Message::Action(a) => {
                ctl.ack(AckOf::Action, a.seq, Outcome::Rejected);
                ctl.out.push(Message::Fault(Fault {
                    code: FaultCode::LimitViolation,
                    detail: 1,
                }));
                Reply::Scripted
            }
            _ => Reply::Default,
        },
        no_tick,
    );
    o.expect_exit(exit::CONTROLLER_REFUSED);
    assert_eq!(o.actions().len(), 3, "{}", o.context());
    assert_eq!(o.stops(), vec![StopReason::HostFault], "{}", o.context());
    assert_eq!(o.link("rejected"), 3);
    assert_eq!(o.link("applied"), 0);
    assert_eq!(o.link("limit_violations"), 3);
    assert_eq!(o.json["stop_reason"], "controller_refused");
}

#[test]
fn duplicate_acks_open_a_new_random_session_numbered_from_1_and_the_run_goes_on() {
    let mut first_session = None;
    let o = run_scenario(
        plain("duplicate-once", &["--steps", "4"]),
        |m, ctl, _| match m {
            Message::Hello(h) => {
                first_session.get_or_insert(h.session);
                Reply::Default
            }
            // A controller still holding a stale session's sequence: everything is old to it.
            Message::Action(a) if Some(ctl.session) == first_session => {
                ctl.ack(AckOf::Action, a.seq, Outcome::Duplicate);
                Reply::Scripted
            }
            _ => Reply::Default,
        },
        no_tick,
    );
    o.expect_exit(exit::OK);
    let hellos = o.hellos();
    assert!(hellos.len() >= 2, "{}", o.context());
    assert_ne!(hellos[0].session, hellos[hellos.len() - 1].session);
    assert_eq!(o.link("new_sessions"), 1);
    assert!(o.link("applied") >= 1, "{}", o.context());
    // The new session's first action is seq 1 again.
    let after: Vec<u32> = o
        .seen
        .iter()
        .skip_while(|s| !matches!(&s.message, Message::Hello(h) if h.session != hellos[0].session))
        .filter_map(|s| match &s.message {
            Message::Action(a) => Some(a.seq),
            _ => None,
        })
        .collect();
    assert_eq!(after.first(), Some(&1), "{}", o.context());
}

#[test]
fn duplicate_acks_that_persist_in_a_fresh_session_stop_with_exit_6() {
    let o = run_scenario(
        plain("duplicate-always", &["--steps", "40"]),
        |m, ctl, _| match m {
            Message::Action(a) => {
                ctl.ack(AckOf::Action, a.seq, Outcome::Duplicate);
                Reply::Scripted
            }
            _ => Reply::Default,
        },
        no_tick,
    );
    o.expect_exit(exit::CONTROLLER_REFUSED);
    assert_eq!(o.hellos().len(), 2, "{}", o.context());
    assert_eq!(o.stops(), vec![StopReason::HostFault], "{}", o.context());
    assert_eq!(o.link("applied"), 0);
}

#[test]
fn a_controller_that_goes_silent_gets_no_actions_and_the_run_ends_link_lost() {
    let o = run_scenario(
        plain("silent", &["--steps", "200"]),
        |m, ctl, seen| {
            if matches!(m, Message::Action(_)) && actions_seen(seen) >= 2 {
                ctl.silent = true;
            }
            Reply::Default
        },
        no_tick,
    );
    o.expect_exit(exit::LINK_LOST);
    // Silence began after the third action's reply was withheld; the board's reply timeout
    // is 150 ms: no Action may be stamped later than that (plus scheduling slack).
    let third = o.actions()[2].send_us;
    for a in o.actions().iter().skip(3) {
        assert!(
            a.send_us <= third + 150_000 + 60_000,
            "an action went out {} ms into the silence\n{}",
            (a.send_us - third) / 1000,
            o.context()
        );
    }
    // Heartbeats kept probing the silence.
    let heartbeats = o
        .seen
        .iter()
        .filter(|s| matches!(s.message, Message::Heartbeat(_)) && s.at_us > third)
        .count();
    assert!(heartbeats >= 3, "{}", o.context());
    assert_eq!(o.json["stop_reason"], "link_lost", "{}", o.context());
}

#[test]
fn a_run_whose_actions_the_arm_applied_none_of_is_not_a_success() {
    let o = run_scenario(
        plain("nothing-applied", &["--steps", "1"]),
        |m, ctl, _| match m {
            // Alive and Active, but it does not act on the action.
            Message::Action(a) => {
                ctl.ack(AckOf::Action, a.seq, Outcome::Held);
                let s = ctl.status();
                ctl.out.push(s);
                Reply::Scripted
            }
            _ => Reply::Default,
        },
        no_tick,
    );
    o.expect_exit(exit::NOTHING_APPLIED);
    assert_eq!(o.json["stop_reason"], "nothing_applied");
    assert_eq!(o.link("applied"), 0);
    assert_eq!(o.link("held"), 1);
    assert_eq!(o.link("actions_sent"), 1);
}

#[test]
fn a_controller_that_never_acknowledges_actions_gets_no_more_and_the_link_is_lost() {
    let o = run_scenario(
        plain("unacknowledged", &["--steps", "200"]),
        |m, _, _| match m {
            // Alive (Status, heartbeat acks) but it never answers an Action.
            Message::Action(_) => Reply::Scripted,
            _ => Reply::Default,
        },
        no_tick,
    );
    o.expect_exit(exit::LINK_LOST);
    let first = o.actions()[0].send_us;
    for a in o.actions() {
        assert!(
            a.send_us <= first + 150_000 + 60_000,
            "an action went out {} ms after an unacknowledged one\n{}",
            (a.send_us - first) / 1000,
            o.context()
        );
    }
    assert_eq!(o.link("applied"), 0);
    assert_eq!(o.link("unacknowledged"), o.link("actions_sent"));
    assert!(o.link("unacknowledged_holds") >= 1, "{}", o.context());
    assert!(
        o.json["stop_detail"].to_string().contains("no Ack"),
        "{}",
        o.context()
    );
}

#[test]
fn status_stopped_from_the_controller_ends_the_run_with_exit_8_and_no_more_actions() {
    let mut stopped_at = None;
    let o = run_scenario(
        plain("stopped", &["--steps", "200"]),
        |m, ctl, seen| {
            if matches!(m, Message::Action(_)) && actions_seen(seen) == 2 {
                ctl.default_reply(m);
                ctl.state = ControllerState::Stopped;
                let s = ctl.status();
                ctl.out.push(s);
                stopped_at = Some(monotonic_us());
                return Reply::Scripted;
            }
            Reply::Default
        },
        no_tick,
    );
    o.expect_exit(exit::CONTROLLER_STOPPED);
    let at = stopped_at.expect("the script stopped the controller");
    for a in o.actions() {
        assert!(
            a.send_us < at + 20_000,
            "action after Stopped\n{}",
            o.context()
        );
    }
    assert_eq!(o.json["stop_reason"], "controller_stopped");
}

fn fault_scenario(name: &str, code: FaultCode, faults: u32) -> (Outcome_, u64) {
    let mut fault_at = 0;
    let o = run_scenario(
        plain(name, &["--steps", "200"]),
        |m, ctl, seen| {
            if matches!(m, Message::Action(_)) && actions_seen(seen) == 2 {
                ctl.default_reply(m);
                ctl.state = ControllerState::Faulted;
                ctl.faults |= faults;
                ctl.out.push(Message::Fault(Fault { code, detail: 7 }));
                let s = ctl.status();
                ctl.out.push(s);
                fault_at = monotonic_us();
                return Reply::Scripted;
            }
            Reply::Default
        },
        no_tick,
    );
    (o, fault_at)
}

#[test]
fn a_hardware_fault_stops_the_arm_with_host_fault_and_exit_7() {
    let (o, at) = fault_scenario("hardware", FaultCode::Hardware, 0);
    o.expect_exit(exit::CONTROLLER_FAULT);
    assert_eq!(o.stops(), vec![StopReason::HostFault], "{}", o.context());
    for a in o.actions() {
        assert!(
            a.send_us < at + 20_000,
            "action after the fault\n{}",
            o.context()
        );
    }
}

#[test]
fn an_estop_reported_by_the_controller_exits_4() {
    let (o, at) = fault_scenario("estop", FaultCode::Estop, fault_bits::ESTOP);
    o.expect_exit(exit::ESTOP);
    assert_eq!(o.stops(), vec![StopReason::Estop], "{}", o.context());
    for a in o.actions() {
        assert!(
            a.send_us < at + 20_000,
            "action after the e-stop\n{}",
            o.context()
        );
    }
}

#[test]
fn a_controller_that_reset_to_idle_is_sent_a_new_hello_and_actions_resume() {
    let mut reset_done = false;
    let o = run_scenario(
        plain("reset", &["--steps", "8"]),
        |m, ctl, seen| {
            if !reset_done && matches!(m, Message::Action(_)) && actions_seen(seen) == 2 {
                // Power-cycled: the session is gone; this action is not applied.
                reset_done = true;
                ctl.state = ControllerState::Idle;
                ctl.session = 0;
                ctl.last_seq = 0;
            }
            Reply::Default
        },
        no_tick,
    );
    o.expect_exit(exit::OK);
    let hellos = o.hellos();
    assert!(hellos.len() >= 2, "{}", o.context());
    assert_eq!(
        hellos[0].session, hellos[1].session,
        "a re-Hello keeps its session"
    );
    assert!(o.link("rehellos") >= 1);
    assert!(o.link("held") >= 1, "{}", o.context());
    assert!(o.link("applied") >= 3, "actions resumed\n{}", o.context());
}

/// A CRC-valid frame with the given body payload (after the version byte).
fn valid_frame(payload: &[u8]) -> Vec<u8> {
    let mut body = vec![PROTOCOL_VERSION];
    body.extend_from_slice(payload);
    let crc = crc32(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    let mut out = vec![0u8; body.len() + body.len() / 254 + 2];
    let n = spatialbot_link::cobs_encode(&body, &mut out).expect("cobs");
    out.truncate(n);
    out.push(0);
    out
}

#[test]
fn garbage_and_malformed_frames_are_counted_and_never_acted_on() {
    let mut frame = [0u8; MAX_FRAME];
    let o = run_scenario(
        plain("garbage", &["--steps", "4"]),
        |m, ctl, _| {
            if let Message::Action(_) = m {
                // Line noise, a half frame, an unknown tag, an invalid enum value (Fault code
                // 9), trailing bytes after a Status, and an e-stop Fault with a broken CRC.
                ctl.raw_out.extend_from_slice(&[0x13, 0x37, 0xff, 0x00]);
                ctl.raw_out.extend_from_slice(&[0x05, 0x01, 0x07]);
                ctl.raw_out.push(0x00);
                ctl.raw_out.extend(valid_frame(&[0x2a, 0x01]));
                ctl.raw_out.extend(valid_frame(&[0x07, 0x09, 0x00]));
                let n = encode(
                    &Message::Fault(Fault {
                        code: FaultCode::Estop,
                        detail: 0,
                    }),
                    &mut frame,
                )
                .expect("encode");
                let mut broken = frame[..n].to_vec();
                let k = broken.len() - 3;
                broken[k] ^= 0x55;
                ctl.raw_out.extend(broken);
            }
            Reply::Default
        },
        no_tick,
    );
    assert_eq!(
        o.code,
        i32::from(exit::OK),
        "no false e-stop\n{}",
        o.context()
    );
    assert!(o.link("bad_frames") >= 4, "{}", o.context());
    assert_eq!(o.link("applied"), o.link("actions_sent"));
}

#[test]
fn a_controller_that_refuses_the_session_ends_start_up_with_exit_6_and_nothing_moves() {
    let o = run_scenario(
        plain("refused", &["--steps", "3"]),
        |m, ctl, _| match m {
            Message::Hello(h) => {
                ctl.out.push(Message::Fault(Fault {
                    code: FaultCode::ProtocolMismatch,
                    detail: u32::from(h.protocol),
                }));
                ctl.out.push(Message::HelloAck(HelloAck {
                    protocol: 2,
                    session: h.session,
                    accepted: false,
                }));
                Reply::Scripted
            }
            _ => Reply::Default,
        },
        no_tick,
    );
    o.expect_exit(exit::CONTROLLER_REFUSED);
    assert!(o.actions().is_empty(), "{}", o.context());
    assert!(o.stderr.contains("refused"), "{}", o.context());
}

#[test]
fn sessions_are_random_and_never_the_pid() {
    let a = run_scenario(
        plain("session-a", &["--steps", "1"]),
        |_, _, _| Reply::Default,
        no_tick,
    );
    let b = run_scenario(
        plain("session-b", &["--steps", "1"]),
        |_, _, _| Reply::Default,
        no_tick,
    );
    let (sa, sb) = (a.hellos()[0].session, b.hellos()[0].session);
    assert_ne!(sa, sb);
    assert_ne!(sa, a.pid);
    assert_ne!(sb, b.pid);
    assert_ne!(sa, 0);
}

#[test]
fn a_generation_past_its_deadline_sends_stop_watchdog_and_exits_3() {
    let o = run_scenario(
        plain(
            "deadline",
            &["--steps", "50", "--generate-deadline-ms", "1"],
        ),
        |_, _, _| Reply::Default,
        no_tick,
    );
    o.expect_exit(exit::WATCHDOG_STOP);
    assert_eq!(o.stops(), vec![StopReason::Watchdog], "{}", o.context());
    assert_eq!(o.json["stop_reason"], "stage_stuck");
}

/// Checks one signalled run: nothing after the signal; Stop{Operator} when a session was open.
fn check_signalled(o: &Outcome_, what: &str) {
    let Some(&sig_us) = o.signals_us.first() else {
        // The host finished before the signal was due.
        assert_eq!(o.code, i32::from(exit::OK), "{what}: {}", o.context());
        return;
    };
    for a in o.actions() {
        assert!(
            a.send_us <= sig_us + 20_000,
            "{what}: an action went out {} ms after the signal\n{}",
            (a.send_us.saturating_sub(sig_us)) / 1000,
            o.context()
        );
    }
    let hello_sent = !o.hellos().is_empty();
    eprintln!(
        "{what}: exit {}, {} actions before the signal, hello sent: {hello_sent}, stops {:?}",
        o.code,
        o.actions().len(),
        o.stops()
    );
    if hello_sent {
        assert_eq!(
            o.stops().last(),
            Some(&StopReason::Operator),
            "{what}: {}",
            o.context()
        );
        assert_eq!(o.code, i32::from(exit::OK), "{what}: {}", o.context());
    } else {
        // Signalled before the link opened: nothing was sent. A repeated signal before any
        // session may end the process at once (130); a single one ends start-up with 0.
        assert!(o.seen.is_empty(), "{what}: {}", o.context());
        let ok = if o.signals_us.len() > 1 {
            [0, 130]
        } else {
            [0, 0]
        };
        assert!(ok.contains(&o.code), "{what}: {}", o.context());
    }
}

#[test]
fn a_signal_at_a_random_instant_start_up_included_lets_no_action_out_and_stops_the_arm() {
    // A fixed-seed generator: the instants differ per trial and are the same every run.
    let mut x: u64 = 0x5eed_1234_abcd_0001;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Half the instants fall in start-up (process start → model loaded → link opened, about
    // 0.2–0.4 s here), half in the running loop.
    for trial in 0..10 {
        let delay_ms = if trial % 2 == 0 {
            next() % 350
        } else {
            350 + next() % 2000
        };
        let sig = if trial % 4 < 2 {
            libc::SIGINT
        } else {
            libc::SIGTERM
        };
        let name = format!("signal-{trial}");
        let o = run_scenario(
            Scenario {
                name: &name,
                extra: vec!["--steps".into(), "200".into()],
                signal_at: SignalAt::After(Duration::from_millis(delay_ms)),
                signals: &[sig],
            },
            |_, _, _| Reply::Default,
            no_tick,
        );
        check_signalled(&o, &format!("trial {trial}, signal {sig} at {delay_ms} ms"));
    }
}

#[test]
fn two_signals_less_than_a_millisecond_apart_still_stop_the_arm() {
    let o = run_scenario(
        Scenario {
            name: "double-signal",
            extra: vec!["--steps".into(), "200".into()],
            signal_at: SignalAt::AfterActions(2),
            signals: &[libc::SIGINT, libc::SIGINT],
        },
        |_, _, _| Reply::Default,
        no_tick,
    );
    assert!(o.signals_us[1] - o.signals_us[0] < 1000);
    check_signalled(&o, "double SIGINT");
    o.expect_exit(exit::OK);
}

#[test]
fn two_signals_during_start_up_send_nothing() {
    let o = run_scenario(
        Scenario {
            name: "double-signal-start-up",
            extra: vec!["--steps".into(), "200".into()],
            signal_at: SignalAt::After(Duration::from_millis(30)),
            signals: &[libc::SIGTERM, libc::SIGINT],
        },
        |_, _, _| Reply::Default,
        no_tick,
    );
    check_signalled(&o, "double signal in start-up");
}

#[test]
fn a_signal_with_no_acknowledgement_of_stop_exits_5() {
    let o = run_scenario(
        Scenario {
            name: "stop-unacked",
            extra: vec!["--steps".into(), "200".into()],
            signal_at: SignalAt::AfterActions(2),
            signals: &[libc::SIGTERM],
        },
        |m, _, _| match m {
            Message::Stop(_) => Reply::Scripted,
            _ => Reply::Default,
        },
        no_tick,
    );
    check_signalled_actions_only(&o);
    assert_eq!(
        o.stops().last(),
        Some(&StopReason::Operator),
        "{}",
        o.context()
    );
    o.expect_exit(exit::LINK_LOST);
}

fn check_signalled_actions_only(o: &Outcome_) {
    let sig_us = o.signals_us[0];
    for a in o.actions() {
        assert!(a.send_us <= sig_us + 20_000, "{}", o.context());
    }
}

#[test]
fn help_lists_the_exit_codes() {
    let out = Command::new(support::bin())
        .args(["run", "--help"])
        .output()
        .expect("run --help");
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Exit codes",
        "6  controller refused",
        "7  controller fault",
        "8  the controller stopped",
        "9  the run ended but the arm applied none",
        "exit 0 once acknowledged, 5 when not",
    ] {
        assert!(
            text.contains(needle),
            "{needle:?} missing from run --help:\n{text}"
        );
    }
}
