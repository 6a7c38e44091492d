//! The sample messages whose frames SPEC.md lists byte for byte.

use spatialbot_link::*;

pub fn samples() -> Vec<(&'static str, Message)> {
    vec![
        (
            "Hello",
            Message::Hello(Hello {
                protocol: 1,
                session: 0x1234_5678,
                layout: DEFAULT_LAYOUT,
                min: [-0.02, -0.02, -0.02, -0.1, -0.1, -0.1, 0.0, 0.0],
                max: [0.02, 0.02, 0.02, 0.1, 0.1, 0.1, 1.0, 1.0],
                max_step: [0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 0.5, 1.0],
                watchdog_ms: 100,
            }),
        ),
        (
            "Action",
            Message::Action(Action {
                seq: 1,
                chunk_id: 7,
                chunk_index: 2,
                capture_us: 1_000_000,
                send_us: 1_012_345,
                values: [0.01, -0.02, 0.0, 0.05, 0.0, -0.1, 1.0, 0.0],
            }),
        ),
        (
            "Heartbeat",
            Message::Heartbeat(Heartbeat {
                seq: 3,
                send_us: 1_020_000,
            }),
        ),
        (
            "Stop",
            Message::Stop(Stop {
                seq: 4,
                reason: StopReason::Operator,
            }),
        ),
        (
            "HelloAck",
            Message::HelloAck(HelloAck {
                protocol: 1,
                session: 0x1234_5678,
                accepted: true,
            }),
        ),
        (
            "Ack",
            Message::Ack(Ack {
                of: AckOf::Action,
                seq: 1,
                outcome: Outcome::Applied,
            }),
        ),
        (
            "Status",
            Message::Status(Status {
                state: ControllerState::Active,
                last_seq: 1,
                faults: 0,
                bad_frames: 0,
                controller_us: 2_000_000,
                pose: [0.01, -0.02, 0.0, 0.05, 0.0, -0.1, 1.0],
            }),
        ),
        (
            "Fault",
            Message::Fault(Fault {
                code: FaultCode::Watchdog,
                detail: 1,
            }),
        ),
    ]
}
