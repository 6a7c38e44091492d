//! PURE RGB-D core: frame types, uint24 depth, unit conversion, registration, SpatialBot packing.
//! Nothing in here touches files, clocks, threads or devices.

pub mod calibration;
pub mod depth;
pub mod distortion;
pub mod frame;
mod kernels;
pub mod pack;
pub mod register;
pub mod rgbd_frame;

pub use calibration::{Calibration, DistortionModel, Extrinsics, Intrinsics};
pub use depth::DepthError;
pub use frame::{DepthMm, RgbImage, DEPTH_MM_MAX};
pub use pack::{Encoding, PackReport};
pub use register::{register_depth_to_color, RegisterError, Registrar};
pub use rgbd_frame::{Depth, DepthNeed, DepthRegistration, RgbdFrame};
