//! End to end over real pseudo-terminals: this process is the host, `arm-sim` is a child
//! process; optionally a relay thread between two ptys corrupts bytes on the line.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::link::*;
use spatialbot_edge::link::clock::monotonic_us;
use spatialbot_edge::link::transport::{create_pty, open_serial};
use spatialbot_edge::link::{ActionCommand, Link, LinkSpec, StopReason};
use spatialbot_link::{decode_frame, Message};

/// Sends `count` actions at `rate_hz` over `spec`, then `Stop`; returns the values sent.
fn stream_actions(spec: &LinkSpec, count: u32, rate_hz: f64) -> (Vec<[f32; 8]>, Link) {
    let mut link = Link::open(spec, test_config(200)).expect("open link");
    let mut gen = Values::new(0x5eed);
    let period = Duration::from_secs_f64(1.0 / rate_hz);
    let t0 = Instant::now();
    let mut sent = Vec::new();
    for i in 0..count {
        let values = gen.next();
        let seq = link
            .send_action(&ActionCommand {
                chunk_id: i / 8,
                chunk_index: (i % 8) as u16,
                capture_us: monotonic_us(),
                values,
            })
            .expect("send action");
        assert_eq!(seq, i + 1);
        sent.push(values);
        link.poll().expect("poll");
        let due = t0 + period * (i + 1);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    (sent, link)
}

fn check_delivery(count: u32, rate_hz: f64) {
    let dir = tempfile::tempdir().unwrap();
    let (child, link_path, log) = spawn_arm_sim(dir.path(), &["--exit-on-stop"]);
    let (sent, mut link) = stream_actions(&LinkSpec::Pty { path: link_path }, count, rate_hz);
    let ack = link.stop(StopReason::Finished).expect("stop acknowledged");
    assert_eq!(ack.status.map(|s| s.last_seq), Some(count));
    let out = child.wait_with_output().expect("arm-sim exits after Stop");
    assert!(
        out.status.success(),
        "arm-sim: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = read_log(&log);
    let applied = events(&log, "applied");
    assert_eq!(
        applied.len(),
        count as usize,
        "every action applied exactly once"
    );
    for (i, e) in applied.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "in order, no duplicate");
        let values: Vec<f32> = e["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(values, sent[i].to_vec(), "values of seq {}", i + 1);
    }
    // A host descheduled past the watchdog (a loaded test machine) makes the controller hold
    // and resume; no action may be lost either way.
    eprintln!(
        "controller watchdog holds during the run: {}",
        events(&log, "hold").len()
    );
    assert_eq!(events(&log, "stop")[0]["reason"], "Finished");
    let summary = summary_of(&out.stdout);
    assert_eq!(summary["bad_frames"], 0);
    let c = link.counters();
    assert_eq!(c.actions_sent, u64::from(count));
    assert_eq!(c.bad_frames, 0);
}

#[test]
fn thousand_actions_at_1khz_over_a_pty_arrive_in_order_once() {
    check_delivery(1_000, 1_000.0);
}

/// The full run: 100 s. `cargo test --test link_e2e -- --ignored ten_thousand`
#[test]
#[ignore]
fn ten_thousand_actions_at_100hz_over_a_pty_arrive_in_order_once() {
    check_delivery(10_000, 100.0);
}

#[test]
fn in_process_simulator_applies_actions_and_acknowledges_stop() {
    let (sent, mut link) = stream_actions(&LinkSpec::Sim, 200, 2_000.0);
    let ack = link.stop(StopReason::Operator).expect("stop acknowledged");
    let status = ack.status.expect("status after stop");
    assert_eq!(status.last_seq, 200);
    assert_eq!(status.state, spatialbot_link::ControllerState::Stopped);
    let mut x = 0f32;
    for v in &sent {
        x += v[0];
    }
    assert!(
        (status.pose[0] - x).abs() < 1e-4,
        "pose integrates Δx: {} vs {x}",
        status.pose[0]
    );
}

/// Relays host → controller bytes frame by frame, flipping one non-delimiter byte of every
/// `every`-th Action frame (never into 0x00). Records the seq of each corrupted action.
fn corrupting_relay(
    mut from_host: Box<dyn Read + Send>,
    mut to_controller: Box<dyn Write + Send>,
    every: u32,
    corrupted: Arc<Mutex<Vec<u32>>>,
    stop: Arc<AtomicBool>,
) {
    let mut frame = Vec::new();
    let mut buf = [0u8; 512];
    let mut actions = 0u32;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    while !stop.load(Ordering::Relaxed) {
        let n = match from_host.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(_) => continue,
        };
        for &b in &buf[..n] {
            frame.push(b);
            if b != 0 {
                continue;
            }
            if let Ok(Message::Action(a)) = decode_frame(&frame[..frame.len() - 1]) {
                actions += 1;
                if actions.is_multiple_of(every) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let at = (rng % (frame.len() as u64 - 1)) as usize;
                    let mut flip = (rng >> 32) as u8 | 1;
                    if frame[at] ^ flip == 0 {
                        flip ^= 0x80;
                    }
                    frame[at] ^= flip;
                    corrupted.lock().unwrap().push(a.seq);
                }
            }
            to_controller.write_all(&frame).unwrap();
            frame.clear();
        }
    }
}

#[test]
fn corrupted_frames_are_rejected_and_counted_and_intact_ones_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (child, controller_path, log) = spawn_arm_sim(dir.path(), &["--exit-on-stop"]);
    // host ↔ [pty "line"] ↔ relay ↔ [arm-sim's pty] ↔ arm-sim
    let line = create_pty(&dir.path().join("line"), Duration::from_millis(5)).unwrap();
    let to_controller = open_serial(&controller_path, 921_600, Duration::from_millis(5)).unwrap();
    let from_host = line.duplex().unwrap();
    let corrupted = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut back_reader = to_controller.reader;
    let mut back_writer = from_host.writer;
    let back_stop = stop.clone();
    // controller → host: every 3rd Status frame gets one byte flipped (never into 0x00).
    let statuses_corrupted = Arc::new(Mutex::new(0u32));
    let back_count = statuses_corrupted.clone();
    let back = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let mut frame = Vec::new();
        let mut statuses = 0u32;
        while !back_stop.load(Ordering::Relaxed) {
            let n = match back_reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(_) => continue,
            };
            for &b in &buf[..n] {
                frame.push(b);
                if b != 0 {
                    continue;
                }
                if let Ok(Message::Status(_)) = decode_frame(&frame[..frame.len() - 1]) {
                    statuses += 1;
                    if statuses.is_multiple_of(3) {
                        let at = frame.len() / 2;
                        frame[at] ^= if frame[at] == 0x5a { 0xa5 } else { 0x5a };
                        *back_count.lock().unwrap() += 1;
                    }
                }
                back_writer.write_all(&frame).unwrap();
                frame.clear();
            }
        }
    });
    let forward = {
        let (c, s) = (corrupted.clone(), stop.clone());
        let (r, w) = (from_host.reader, to_controller.writer);
        std::thread::spawn(move || corrupting_relay(r, w, 7, c, s))
    };
    let count = 700;
    let (sent, mut link) = stream_actions(
        &LinkSpec::Pty {
            path: dir.path().join("line"),
        },
        count,
        1_000.0,
    );
    link.stop(StopReason::Finished).expect("stop acknowledged");
    let out = child.wait_with_output().unwrap();
    stop.store(true, Ordering::Relaxed);
    forward.join().unwrap();
    back.join().unwrap();
    assert!(out.status.success());
    let corrupted: BTreeSet<u32> = corrupted.lock().unwrap().iter().copied().collect();
    assert_eq!(corrupted.len(), (count / 7) as usize);
    let log = read_log(&log);
    let applied: Vec<u64> = events(&log, "applied")
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = (1..=u64::from(count))
        .filter(|s| !corrupted.contains(&(*s as u32)))
        .collect();
    assert_eq!(
        applied, want,
        "every intact action delivered once, in order; no corrupted one"
    );
    for e in events(&log, "applied") {
        let seq = e["seq"].as_u64().unwrap() as usize;
        let values: Vec<f32> = e["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(values, sent[seq - 1].to_vec());
    }
    let summary = summary_of(&out.stdout);
    assert_eq!(
        summary["bad_frames"],
        corrupted.len() as u64,
        "each corrupted frame counted once"
    );
    assert_eq!(events(&log, "bad_frame").len(), corrupted.len());
    let statuses_corrupted = *statuses_corrupted.lock().unwrap();
    assert!(statuses_corrupted > 0);
    assert_eq!(
        link.counters().bad_frames,
        statuses_corrupted,
        "the host counts each corrupted Status once"
    );
}

#[test]
fn a_lost_controller_is_reconnected_then_reported_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, path, _) = spawn_arm_sim(dir.path(), &[]);
    let mut link = Link::open(&LinkSpec::Pty { path: path.clone() }, test_config(200)).unwrap();
    let cmd = ActionCommand {
        chunk_id: 0,
        chunk_index: 0,
        capture_us: monotonic_us(),
        values: [0.0; 8],
    };
    for _ in 0..5 {
        link.send_action(&cmd).unwrap();
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // A controller comes back on the same path (a USB re-enumeration, a firmware reset).
    let second_dir = dir.path().join("second");
    std::fs::create_dir(&second_dir).unwrap();
    let (mut second, second_path, second_log) = spawn_arm_sim(&second_dir, &["--exit-on-stop"]);
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(std::fs::read_link(&second_path).unwrap(), &path).unwrap();
    let t0 = Instant::now();
    while link.counters().reconnects == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "no reconnect");
        link.poll().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let seq = link.send_action(&cmd).unwrap();
    assert_eq!(seq, 6, "the sequence goes on across a reconnect");
    link.stop(StopReason::Finished)
        .expect("the new controller acknowledges Stop");
    assert!(second.wait().unwrap().success());
    let applied = events(&read_log(&second_log), "applied")
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(applied, [6]);
    // Now nothing comes back: the policy's attempts run out and the link reports it lost.
    let mut link_err = None;
    for _ in 0..200 {
        let r = link.poll().and_then(|_| link.send_action(&cmd).map(|_| ()));
        if let Err(e) = r {
            link_err = Some(e);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let e = link_err.expect("the link reports the controller lost");
    assert_eq!(e.exit_code(), spatialbot_edge::exit::LINK_LOST, "{e}");
}
