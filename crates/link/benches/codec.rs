//! Throughput of the wire codec, public API only (so the same bench runs against any version of
//! the crate): CRC-32 of a largest body, COBS encode/decode of a body, `encode` of an Action
//! frame, the streaming `Decoder` on clean frames, and resynchronisation (garbage without a
//! delimiter running into a good frame).
//!
//! `cargo bench -p spatialbot-link --bench codec` (add `-- N` for N rounds of each).
//! Prints ns per operation and MB/s of input, the best of 5 rounds (least disturbed).

use std::hint::black_box;
use std::time::Instant;

use spatialbot_link::*;

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

/// Runs `f` `iters` times per round, 5 rounds; returns the best ns per call.
fn time(iters: u32, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .fold(f64::INFINITY, f64::min)
}

fn report(name: &str, bytes: usize, ns: f64) {
    println!(
        "{name:<34} {bytes:>4} B  {ns:>9.1} ns/op  {:>8.1} MB/s",
        bytes as f64 / ns * 1e3
    );
}

fn main() {
    let iters: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);

    // A largest body (MAX_BODY bytes, a few zeros like real payloads).
    let body: Vec<u8> = (0..MAX_BODY)
        .map(|i| if i % 23 == 0 { 0 } else { (i * 7 + 1) as u8 })
        .collect();
    report(
        "crc32(MAX_BODY)",
        body.len(),
        time(iters, || {
            black_box(crc32(black_box(&body)));
        }),
    );
    let mut enc = [0u8; 2 * MAX_FRAME];
    let n = cobs_encode(&body, &mut enc).unwrap();
    report(
        "cobs_encode(MAX_BODY)",
        body.len(),
        time(iters, || {
            black_box(cobs_encode(black_box(&body), &mut enc).unwrap());
        }),
    );
    let encoded = enc[..n].to_vec();
    let mut dec = [0u8; 2 * MAX_FRAME];
    report(
        "cobs_decode(MAX_BODY)",
        encoded.len(),
        time(iters, || {
            black_box(cobs_decode(black_box(&encoded), &mut dec).unwrap());
        }),
    );

    let m = action(123_456);
    let mut frame = [0u8; MAX_FRAME];
    let frame_len = encode(&m, &mut frame).unwrap();
    report(
        "encode(Action)",
        frame_len,
        time(iters, || {
            black_box(encode(black_box(&m), &mut frame).unwrap());
        }),
    );
    let mut decoder = Decoder::new();
    report(
        "Decoder::feed(Action frame)",
        frame_len,
        time(iters, || {
            decoder.feed(black_box(&frame[..frame_len]), |r| {
                black_box(r.unwrap());
            });
        }),
    );

    // 100 garbage bytes (no zero) run into a good frame: one bad run, one recovered frame.
    let mut stream: Vec<u8> = (0..100u32).map(|i| (i * 37 % 255 + 1) as u8).collect();
    stream.extend_from_slice(&frame[..frame_len]);
    let mut decoder = Decoder::new();
    report(
        "Decoder::feed(garbage+Action)",
        stream.len(),
        time(iters / 20, || {
            decoder.feed(black_box(&stream), |r| {
                black_box(r.unwrap());
            });
        }),
    );
    assert_eq!(decoder.counters().recovered, decoder.counters().frames);
}
