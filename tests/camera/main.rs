//! Camera sources: the synthetic, replay, recording, paired, RealSense (`realsense` feature) and
//! V4L2 (`v4l2` feature) cameras, and `devices`.
//!
//! One test binary per area (a module per former test file); `tests/support` is shared by all.

#[path = "../support/mod.rs"]
mod support;

mod camera_devices;
mod camera_live;
mod camera_pair;
mod camera_realsense;
mod camera_recording;
mod camera_v4l2;
