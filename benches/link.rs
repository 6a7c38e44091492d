//! Per-frame cost of the action link on a real pseudo-terminal:
//! - encode: `Action` → frame bytes; decode: frame bytes → `Action` (streaming decoder);
//! - encode+write: encode and `write(2)` to the pty master;
//! - write→decoded: from before encoding to the message decoded by a reader on the slave
//!   (one frame in flight at a time, so no queueing).
//!
//! Prints p50/p99/max in µs. `cargo bench --bench link` (add `-- N` for N frames).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use spatialbot_edge::link::transport::{create_pty, open_serial};
use spatialbot_link::{encode, Action, Decoder, Message, MAX_FRAME};

fn percentiles(name: &str, mut ns: Vec<u64>) {
    ns.sort_unstable();
    let p = |q: f64| ns[((ns.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
    println!(
        "{name:<16} n={:<6} p50 {:>8.2} µs  p99 {:>8.2} µs  max {:>8.2} µs",
        ns.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
}

fn action(seq: u32) -> Message {
    Message::Action(Action {
        seq,
        chunk_id: seq / 8,
        chunk_index: (seq % 8) as u16,
        capture_us: 3_000_000_000 + u64::from(seq) * 1000,
        send_us: 3_000_000_500 + u64::from(seq) * 1000,
        values: [0.011, -0.004, 0.02, 0.05, -0.03, 0.001, 0.8, 0.0],
    })
}

fn main() {
    let n: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let mut frame = [0u8; MAX_FRAME];

    let mut enc = Vec::with_capacity(n as usize);
    for seq in 1..=n {
        let m = action(seq);
        let t = Instant::now();
        let len = encode(std::hint::black_box(&m), &mut frame).unwrap();
        enc.push(t.elapsed().as_nanos() as u64);
        std::hint::black_box(len);
    }
    let frame_len = encode(&action(n), &mut frame).unwrap();
    println!("Action frame: {frame_len} bytes");
    percentiles("encode", enc);

    let mut dec = Vec::with_capacity(n as usize);
    let mut decoder = Decoder::new();
    for _ in 0..n {
        let t = Instant::now();
        let mut got = None;
        decoder.feed(std::hint::black_box(&frame[..frame_len]), |r| got = Some(r));
        dec.push(t.elapsed().as_nanos() as u64);
        assert!(matches!(got, Some(Ok(_))));
    }
    percentiles("decode", dec);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench-pty");
    let pty = create_pty(&path, Duration::from_millis(100)).unwrap();
    let mut master = pty.duplex().unwrap();
    let mut slave = open_serial(&path, 921_600, Duration::from_millis(100)).unwrap();

    let mut write_ns = Vec::with_capacity(n as usize);
    let mut one_way_ns = Vec::with_capacity(n as usize);
    let mut decoder = Decoder::new();
    let mut buf = [0u8; 256];
    for seq in 1..=n {
        let m = action(seq);
        let t0 = Instant::now();
        let len = encode(&m, &mut frame).unwrap();
        master.writer.write_all(&frame[..len]).unwrap();
        write_ns.push(t0.elapsed().as_nanos() as u64);
        let mut got = None;
        while got.is_none() {
            let k = slave.reader.read(&mut buf).unwrap();
            decoder.feed(&buf[..k], |r| got = Some(r.unwrap()));
        }
        one_way_ns.push(t0.elapsed().as_nanos() as u64);
        assert_eq!(got, Some(m));
    }
    percentiles("encode+write", write_ns);
    percentiles("write→decoded", one_way_ns);
    for baud in [115_200u32, 921_600, 1_000_000] {
        println!(
            "wire time of this frame at {baud:>9} baud (8N1): {:>7.1} µs",
            frame_len as f64 * 10.0 / baud as f64 * 1e6
        );
    }
}
