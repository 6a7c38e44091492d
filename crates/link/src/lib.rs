//! The wire protocol shared by the host (`spatialbot-edge`) and arm-controller firmware.
//!
//! A frame is `COBS(version ‖ postcard(Message) ‖ CRC32-LE) ‖ 0x00`; `SPEC.md` in this crate
//! describes every byte. [`encode`] writes one frame into a caller's buffer, [`Decoder`] takes
//! bytes in any chunking and yields messages, and [`controller::Controller`] is the reference
//! controller (SPEC.md §6) that firmware can run as it is. Nothing here allocates or panics.
#![no_std]

mod codec;
pub mod controller;
mod message;

pub use codec::{
    cobs_decode, cobs_encode, crc32, decode_frame, encode, Decoder, DecoderCounters, EncodeError,
    FrameError, MAX_BODY, MAX_FRAME, PROTOCOL_VERSION,
};
pub use message::*;
