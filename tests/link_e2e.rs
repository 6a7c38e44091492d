//! End to end over real pseudo-terminals: this process is the host, `arm-sim` is a child
//! process; optionally a relay thread between two ptys corrupts bytes on the line.

mod link_common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use link_common::*;
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
    assert!(events(&log, "hold").is_empty(), "the watchdog never fired");
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
                if actions % every == 0 {
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
    // controller → host bytes pass untouched.
    let back = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !back_stop.load(Ordering::Relaxed) {
            match back_reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => back_writer.write_all(&buf[..n]).unwrap(),
                Err(_) => continue,
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
}
