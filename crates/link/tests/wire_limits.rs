//! The wire's edges, as SPEC.md v1.1 states them: each message's smallest and largest frame
//! (from extreme field values), the largest body and frame against `MAX_BODY`/`MAX_FRAME`,
//! and what the decoder does with varints that are too long, too large or not canonical.

use spatialbot_link::*;

fn frame_len(m: &Message) -> usize {
    let mut buf = [0u8; MAX_FRAME];
    encode(m, &mut buf).unwrap()
}

/// Every message with all varints at their shortest (0) and at their longest (the type's
/// maximum), enums at their first and last value.
fn extremes() -> Vec<(&'static str, Message, Message)> {
    let hello = |session, watchdog_ms| {
        Message::Hello(Hello {
            protocol: 1,
            session,
            layout: DEFAULT_LAYOUT,
            min: [0.0; 8],
            max: [0.0; 8],
            max_step: [0.0; 8],
            watchdog_ms,
        })
    };
    let action = |seq, chunk_id, chunk_index, t| {
        Message::Action(Action {
            seq,
            chunk_id,
            chunk_index,
            capture_us: t,
            send_us: t,
            values: [f32::MAX; 8],
        })
    };
    let status = |state, n: u32, t| {
        Message::Status(Status {
            state,
            last_seq: n,
            faults: n,
            bad_frames: n,
            controller_us: t,
            pose: [0.0; 7],
        })
    };
    vec![
        ("Hello", hello(0, 0), hello(u32::MAX, u16::MAX)),
        (
            "Action",
            action(0, 0, 0, 0),
            action(u32::MAX, u32::MAX, u16::MAX, u64::MAX),
        ),
        (
            "Heartbeat",
            Message::Heartbeat(Heartbeat { seq: 0, send_us: 0 }),
            Message::Heartbeat(Heartbeat {
                seq: u32::MAX,
                send_us: u64::MAX,
            }),
        ),
        (
            "Stop",
            Message::Stop(Stop {
                seq: 0,
                reason: StopReason::Operator,
            }),
            Message::Stop(Stop {
                seq: u32::MAX,
                reason: StopReason::HostFault,
            }),
        ),
        (
            "HelloAck",
            Message::HelloAck(HelloAck {
                protocol: 1,
                session: 0,
                accepted: false,
            }),
            Message::HelloAck(HelloAck {
                protocol: 1,
                session: u32::MAX,
                accepted: true,
            }),
        ),
        (
            "Ack",
            Message::Ack(Ack {
                of: AckOf::Action,
                seq: 0,
                outcome: Outcome::Applied,
            }),
            Message::Ack(Ack {
                of: AckOf::Stop,
                seq: u32::MAX,
                outcome: Outcome::Rejected,
            }),
        ),
        (
            "Status",
            status(ControllerState::Idle, 0, 0),
            status(ControllerState::Faulted, u32::MAX, u64::MAX),
        ),
        (
            "Fault",
            Message::Fault(Fault {
                code: FaultCode::Watchdog,
                detail: 0,
            }),
            Message::Fault(Fault {
                code: FaultCode::Hardware,
                detail: u32::MAX,
            }),
        ),
    ]
}

/// SPEC.md §8: (message, smallest frame, largest frame), delimiter included.
const SIZES: &[(&str, usize, usize)] = &[
    ("Hello", 115, 121),
    ("Action", 45, 73),
    ("Heartbeat", 10, 23),
    ("Stop", 10, 14),
    ("HelloAck", 11, 15),
    ("Ack", 11, 15),
    ("Status", 41, 62),
    ("Fault", 10, 14),
];

#[test]
fn each_message_has_the_smallest_and_largest_frame_spec_md_lists() {
    let got: Vec<(&str, usize, usize)> = extremes()
        .iter()
        .map(|(name, small, large)| (*name, frame_len(small), frame_len(large)))
        .collect();
    assert_eq!(got, SIZES);
}

#[test]
fn the_largest_frame_is_max_frame_and_its_body_max_body() {
    let largest = SIZES.iter().map(|s| s.2).max().unwrap();
    assert_eq!(largest, MAX_FRAME);
    // A body under 254 bytes costs one COBS code byte; then the delimiter.
    assert_eq!(MAX_BODY + 2, MAX_FRAME);
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SPEC.md")).unwrap();
    for (name, small, large) in SIZES {
        let row = format!("| {name} | {small} | {large} |");
        assert!(spec.contains(&row), "SPEC.md §8 lacks the row `{row}`");
    }
}

/// A frame around a hand-written payload (tag + fields).
fn decode_payload(payload: &[u8]) -> Result<Message, FrameError> {
    let mut body = vec![PROTOCOL_VERSION];
    body.extend_from_slice(payload);
    body.extend_from_slice(&crc32(&body).to_le_bytes());
    let mut enc = [0u8; 2 * MAX_FRAME];
    let n = cobs_encode(&body, &mut enc).unwrap();
    decode_frame(&enc[..n])
}

fn heartbeat_seq(seq: &[u8]) -> Result<Message, FrameError> {
    let mut p = vec![2u8];
    p.extend_from_slice(seq);
    p.push(0);
    decode_payload(&p)
}

fn action_chunk_index(index: &[u8]) -> Result<u16, FrameError> {
    let mut p = vec![1u8, 1, 7];
    p.extend_from_slice(index);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&[0; 32]);
    decode_payload(&p).map(|m| match m {
        Message::Action(a) => a.chunk_index,
        other => panic!("{other:?}"),
    })
}

fn heartbeat(seq: u32, send_us: u64) -> Message {
    Message::Heartbeat(Heartbeat { seq, send_us })
}

#[test]
fn a_varint_longer_than_its_type_allows_makes_the_frame_bad() {
    assert_eq!(
        heartbeat_seq(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
        Err(FrameError::Message),
        "u32 in 6 bytes"
    );
    assert_eq!(
        action_chunk_index(&[0x80, 0x80, 0x80, 0x00]),
        Err(FrameError::Message),
        "u16 in 4 bytes"
    );
    let mut p = vec![2u8, 0];
    p.extend_from_slice(&[0x80; 10]);
    p.push(0);
    assert_eq!(
        decode_payload(&p),
        Err(FrameError::Message),
        "u64 in 11 bytes"
    );
}

#[test]
fn a_varint_above_its_type_range_makes_the_frame_bad() {
    assert_eq!(
        heartbeat_seq(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
        Ok(heartbeat(u32::MAX, 0))
    );
    assert_eq!(
        heartbeat_seq(&[0xff, 0xff, 0xff, 0xff, 0x1f]),
        Err(FrameError::Message)
    );
    assert_eq!(action_chunk_index(&[0xff, 0xff, 0x03]), Ok(u16::MAX));
    assert_eq!(
        action_chunk_index(&[0xff, 0xff, 0x04]),
        Err(FrameError::Message)
    );
    let mut p = vec![2u8, 0];
    p.extend_from_slice(&[0xff; 9]);
    p.push(0x01);
    assert_eq!(decode_payload(&p), Ok(heartbeat(0, u64::MAX)));
    *p.last_mut().unwrap() = 0x02;
    assert_eq!(decode_payload(&p), Err(FrameError::Message));
}

#[test]
fn a_non_canonical_varint_within_the_length_limit_is_accepted() {
    assert_eq!(heartbeat_seq(&[0x80, 0x00]), Ok(heartbeat(0, 0)));
    assert_eq!(
        heartbeat_seq(&[0x80, 0x80, 0x80, 0x80, 0x00]),
        Ok(heartbeat(0, 0))
    );
    assert_eq!(heartbeat_seq(&[0x81, 0x00]), Ok(heartbeat(1, 0)));
    assert_eq!(action_chunk_index(&[0x80, 0x80, 0x00]), Ok(0));
    // Tags and enum values are varints too.
    assert_eq!(
        decode_payload(&[0x82, 0x00, 0x00, 0x00]),
        Ok(heartbeat(0, 0))
    );
    assert_eq!(
        decode_payload(&[3, 4, 0x80, 0x00]),
        Ok(Message::Stop(Stop {
            seq: 4,
            reason: StopReason::Operator
        }))
    );
    // The encoder always writes the shortest form.
    let mut buf = [0u8; MAX_FRAME];
    let n = encode(&heartbeat(0, 0), &mut buf).unwrap();
    assert_eq!(n, 10);
}

#[test]
fn an_enum_or_bool_value_out_of_range_makes_the_frame_bad() {
    assert_eq!(decode_payload(&[3, 4, 5]), Err(FrameError::Message));
    assert_eq!(decode_payload(&[4, 1, 0, 2]), Err(FrameError::Message));
    assert_eq!(decode_payload(&[8]), Err(FrameError::Message), "tag 8");
    assert_eq!(
        decode_payload(&[2, 0, 0, 0]),
        Err(FrameError::Message),
        "trailing byte"
    );
}
