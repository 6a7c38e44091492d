//! The messages carried in frames. Field order is wire order (postcard serialises fields in
//! declaration order); SPEC.md lists the byte layout of each.

use serde::{Deserialize, Serialize};

/// Number of values in an action.
pub const ACTION_LEN: usize = 8;

/// What one action value means. The variant index is the wire code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Axis {
    /// Translation of the end effector along x, metres per step.
    Dx,
    Dy,
    Dz,
    /// Rotation about x, radians per step.
    Droll,
    Dpitch,
    Dyaw,
    /// Absolute gripper command, 0 = closed … 1 = open.
    Gripper,
    /// 1 ends the episode, 0 continues.
    Terminate,
    /// The slot is not used; its value must be 0.
    Unused,
}

impl Axis {
    /// Whether the value is a per-step change (as opposed to an absolute command).
    pub fn is_delta(self) -> bool {
        matches!(
            self,
            Axis::Dx | Axis::Dy | Axis::Dz | Axis::Droll | Axis::Dpitch | Axis::Dyaw
        )
    }

    /// The lower-case name used in logs and configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Axis::Dx => "dx",
            Axis::Dy => "dy",
            Axis::Dz => "dz",
            Axis::Droll => "droll",
            Axis::Dpitch => "dpitch",
            Axis::Dyaw => "dyaw",
            Axis::Gripper => "gripper",
            Axis::Terminate => "terminate",
            Axis::Unused => "unused",
        }
    }

    /// The axis with this name, as written by [`Axis::name`].
    pub fn from_name(name: &str) -> Option<Axis> {
        ALL_AXES.iter().copied().find(|a| a.name() == name)
    }
}

const ALL_AXES: [Axis; 9] = [
    Axis::Dx,
    Axis::Dy,
    Axis::Dz,
    Axis::Droll,
    Axis::Dpitch,
    Axis::Dyaw,
    Axis::Gripper,
    Axis::Terminate,
    Axis::Unused,
];

/// The default action layout: Δx, Δy, Δz, Δroll, Δpitch, Δyaw, gripper, terminate.
pub const DEFAULT_LAYOUT: [Axis; ACTION_LEN] = [
    Axis::Dx,
    Axis::Dy,
    Axis::Dz,
    Axis::Droll,
    Axis::Dpitch,
    Axis::Dyaw,
    Axis::Gripper,
    Axis::Terminate,
];

/// Opens a session: the host tells the controller the layout and the limits it will enforce.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u8,
    pub session: u32,
    pub layout: [Axis; ACTION_LEN],
    pub min: [f32; ACTION_LEN],
    pub max: [f32; ACTION_LEN],
    pub max_step: [f32; ACTION_LEN],
    pub watchdog_ms: u16,
}

/// One action of a chunk the policy produced.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Increases by one per action within a session, starting at 1.
    pub seq: u32,
    pub chunk_id: u32,
    pub chunk_index: u16,
    /// When the camera frame the action was computed from was captured, host clock, µs.
    pub capture_us: u64,
    /// When the host wrote the frame, host clock, µs.
    pub send_us: u64,
    pub values: [f32; ACTION_LEN],
}

/// Keeps the controller's watchdog fed while no action is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub seq: u32,
    pub send_us: u64,
}

/// Why the host stops the arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// The operator asked (SIGINT, SIGTERM).
    Operator,
    /// The episode ended (terminate action, step budget reached).
    Finished,
    /// A host pipeline stage missed its deadline.
    Watchdog,
    /// An emergency stop.
    Estop,
    /// The host hit an error it cannot recover from.
    HostFault,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    pub seq: u32,
    pub reason: StopReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAck {
    pub protocol: u8,
    pub session: u32,
    pub accepted: bool,
}

/// Which host message an [`Ack`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckOf {
    Action,
    Heartbeat,
    Stop,
}

/// What the controller did with the acknowledged message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Applied,
    /// Received but not acted on: the controller holds (watchdog, stopped, not in session).
    Held,
    /// A sequence number at or below the last one applied: ignored.
    Duplicate,
    /// Values outside the session's limits or not finite: ignored.
    Rejected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub of: AckOf,
    pub seq: u32,
    pub outcome: Outcome,
}

/// The controller's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerState {
    /// No session: waiting for `Hello`.
    Idle,
    /// Applying actions.
    Active,
    /// In session but holding position (watchdog expired); resumes on the next valid message.
    Holding,
    /// Stopped by `Stop`; a new `Hello` starts a new session.
    Stopped,
    /// A fault the controller will not leave by itself.
    Faulted,
}

/// Bits of [`Status::faults`].
pub mod fault_bits {
    /// The watchdog expired at least once in this session.
    pub const WATCHDOG: u32 = 1 << 0;
    /// A frame failed COBS, CRC or message decoding.
    pub const BAD_FRAME: u32 = 1 << 1;
    /// An action was outside the limits or not finite.
    pub const LIMIT: u32 = 1 << 2;
    /// A duplicate or out-of-order action sequence number arrived.
    pub const SEQUENCE: u32 = 1 << 3;
    /// An emergency stop is latched.
    pub const ESTOP: u32 = 1 << 4;
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: ControllerState,
    /// Sequence number of the last action applied, 0 if none.
    pub last_seq: u32,
    /// [`fault_bits`] seen in this session.
    pub faults: u32,
    /// Frames the controller discarded (bad COBS, CRC, version or message).
    pub bad_frames: u32,
    /// Controller clock, µs.
    pub controller_us: u64,
    /// End-effector pose x, y, z (m), roll, pitch, yaw (rad) and gripper.
    pub pose: [f32; 7],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultCode {
    Watchdog,
    Estop,
    LimitViolation,
    ProtocolMismatch,
    Hardware,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub code: FaultCode,
    pub detail: u32,
}

/// Every message. The variant index is the message's wire tag.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    Hello(Hello),
    Action(Action),
    Heartbeat(Heartbeat),
    Stop(Stop),
    HelloAck(HelloAck),
    Ack(Ack),
    Status(Status),
    Fault(Fault),
}

impl Message {
    /// The message's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::Action(_) => "Action",
            Message::Heartbeat(_) => "Heartbeat",
            Message::Stop(_) => "Stop",
            Message::HelloAck(_) => "HelloAck",
            Message::Ack(_) => "Ack",
            Message::Status(_) => "Status",
            Message::Fault(_) => "Fault",
        }
    }
}
