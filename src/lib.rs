//! spatialbot-edge: RGB-D capture, SpatialBot depth packing, ONNX inference and a safe
//! serial action link for robot boards. README.md's module map says what each module is and
//! what it depends on; docs/architecture.md has the detail.

pub mod camera;
pub mod config;
pub mod cpu;
pub mod doctor;
pub mod exit;
pub mod fsutil;
pub mod imageio;
pub mod limits;
pub mod link;
pub mod memory;
pub mod model;
pub mod pipeline;
pub mod policy;
pub mod preprocess;
pub mod progress;
pub mod rgbd;
pub mod sim;
pub mod spatialqa;
pub mod telemetry;
