//! RGB-D images: SpatialBot depth packing, preprocessing, and depth registration (geometry,
//! against librealsense, and the `register` command).
//!
//! One test binary per area (a module per former test file); `tests/support` is shared by all.

#[path = "../support/mod.rs"]
mod support;

mod preprocess;
mod register_cli;
mod register_geometry;
mod register_vs_librealsense;
mod rgbd_pack;
