//! Property tests of the streaming decoder: frames survive any chunking, garbage between them
//! and corruption of other frames.

use proptest::prelude::*;
use spatialbot_link::*;

fn f32_any() -> impl Strategy<Value = f32> {
    any::<u32>().prop_map(f32::from_bits)
}

fn values8() -> impl Strategy<Value = [f32; 8]> {
    proptest::array::uniform8(f32_any())
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
            any::<u64>(),
            any::<u64>(),
            values8()
        )
            .prop_map(
                |(seq, chunk_id, chunk_index, capture_us, send_us, values)| Message::Action(
                    Action {
                        seq,
                        chunk_id,
                        chunk_index,
                        capture_us,
                        send_us,
                        values
                    }
                )
            ),
        (any::<u32>(), any::<u64>())
            .prop_map(|(seq, send_us)| Message::Heartbeat(Heartbeat { seq, send_us })),
        (any::<u32>(), 0u8..5).prop_map(|(seq, r)| Message::Stop(Stop {
            seq,
            reason: [
                StopReason::Operator,
                StopReason::Finished,
                StopReason::Watchdog,
                StopReason::Estop,
                StopReason::HostFault
            ][r as usize]
        })),
        (any::<u32>(), values8(), values8(), values8(), any::<u16>()).prop_map(
            |(session, min, max, max_step, watchdog_ms)| {
                Message::Hello(Hello {
                    protocol: 1,
                    session,
                    layout: DEFAULT_LAYOUT,
                    min,
                    max,
                    max_step,
                    watchdog_ms,
                })
            }
        ),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            proptest::array::uniform7(f32_any())
        )
            .prop_map(|(last_seq, faults, bad_frames, controller_us, pose)| {
                Message::Status(Status {
                    state: ControllerState::Holding,
                    last_seq,
                    faults,
                    bad_frames,
                    controller_us,
                    pose,
                })
            }),
        (any::<u32>(),).prop_map(|(seq,)| Message::Ack(Ack {
            of: AckOf::Stop,
            seq,
            outcome: Outcome::Duplicate
        })),
    ]
}

fn frame_of(m: &Message) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME];
    let n = encode(m, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// Splits `stream` at the given cut points and feeds the pieces; returns the re-encoded frames.
fn decode_chunked(stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let mut last = 0;
    for c in cuts.into_iter().chain([stream.len()]) {
        d.feed(&stream[last..c], |r| {
            if let Ok(m) = r {
                out.push(frame_of(&m));
            }
        });
        last = c;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn frames_survive_chunking_and_garbage(
        msgs in proptest::collection::vec(message(), 1..12),
        garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 12),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for (m, g) in msgs.iter().zip(&garbage) {
            stream.extend_from_slice(g);
            let f = frame_of(m);
            stream.extend_from_slice(&f);
            want.push(f);
        }
        prop_assert_eq!(decode_chunked(&stream, &cuts), want);
    }

    #[test]
    fn a_corrupted_frame_is_dropped_and_the_others_delivered(
        msgs in proptest::collection::vec(message(), 2..10),
        which in any::<usize>(),
        at in any::<usize>(),
        flip in 1u8..=255,
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let frames: Vec<Vec<u8>> = msgs.iter().map(frame_of).collect();
        let which = which % frames.len();
        let mut stream = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let mut f = f.clone();
            if i == which {
                let at = at % f.len();
                f[at] ^= flip;
            }
            stream.extend_from_slice(&f);
        }
        let want: Vec<Vec<u8>> = frames.iter().enumerate().filter(|(i, _)| *i != which).map(|(_, f)| f.clone()).collect();
        prop_assert_eq!(decode_chunked(&stream, &cuts), want);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut d = Decoder::new();
        d.feed(&bytes, |_| {});
    }
}
