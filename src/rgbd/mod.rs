//! PURE RGB-D core: frame types, uint24 depth, unit conversion, registration, SpatialBot packing.
//! Nothing in here touches files, clocks, threads or devices.

pub mod calibration;
pub mod frame;
pub mod register;

pub use calibration::{Calibration, DistortionModel, Extrinsics, Intrinsics};
pub use frame::{DepthMm, RgbImage, DEPTH_MM_MAX};
pub mod distortion;
pub use register::{register_depth_to_color, RegisterError, Registrar};
