//! A librealsense software device wrapped in librealsense's recorder: writes real `.bag` files
//! from frames we supply. For tests and fixtures; the `rs2_software_*` calls (rs_internal.h)
//! are exported by librealsense but missing from realsense-sys, so they are declared here.

use std::ffi::CString;
use std::os::raw::{c_char, c_int, c_void};
use std::path::Path;

use realsense_sys as rs;

use super::{extrinsics_to_rs, intrinsics_to_rs, rs_call, take_error};
use crate::rgbd::{Calibration, DepthMm, RgbImage};

#[repr(C)]
#[allow(non_camel_case_types)]
struct rs2_video_stream {
    stream: rs::rs2_stream,
    index: c_int,
    uid: c_int,
    width: c_int,
    height: c_int,
    fps: c_int,
    bpp: c_int,
    format: rs::rs2_format,
    intrinsics: rs::rs2_intrinsics,
}

#[repr(C)]
#[allow(non_camel_case_types)]
struct rs2_software_video_frame {
    pixels: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut c_void)>,
    stride: c_int,
    bpp: c_int,
    timestamp: rs::rs2_time_t,
    domain: rs::rs2_timestamp_domain,
    frame_number: c_int,
    profile: *const rs::rs2_stream_profile,
    depth_units: f32,
}

unsafe extern "C" {
    fn rs2_create_software_device(error: *mut *mut rs::rs2_error) -> *mut rs::rs2_device;
    fn rs2_software_device_add_sensor(
        dev: *mut rs::rs2_device,
        name: *const c_char,
        error: *mut *mut rs::rs2_error,
    ) -> *mut rs::rs2_sensor;
    fn rs2_software_sensor_add_video_stream(
        sensor: *mut rs::rs2_sensor,
        stream: rs2_video_stream,
        error: *mut *mut rs::rs2_error,
    ) -> *mut rs::rs2_stream_profile;
    fn rs2_software_sensor_on_video_frame(
        sensor: *mut rs::rs2_sensor,
        frame: rs2_software_video_frame,
        error: *mut *mut rs::rs2_error,
    );
    fn rs2_software_sensor_add_read_only_option(
        sensor: *mut rs::rs2_sensor,
        option: rs::rs2_option,
        value: f32,
        error: *mut *mut rs::rs2_error,
    );
    fn rs2_software_device_register_info(
        dev: *mut rs::rs2_device,
        info: rs::rs2_camera_info,
        value: *const c_char,
        error: *mut *mut rs::rs2_error,
    );
}

fn call<T>(what: &str, f: impl FnOnce(*mut *mut rs::rs2_error) -> T) -> Result<T, String> {
    let mut err = std::ptr::null_mut();
    let out = f(&mut err);
    match take_error(err) {
        None => Ok(out),
        Some(m) => Err(format!("{what}: {m}")),
    }
}

/// Pixel buffers handed to librealsense carry their length in front so the deleter can free them.
fn leak_pixels(bytes: &[u8]) -> *mut c_void {
    let mut buf = Vec::with_capacity(bytes.len() + 8);
    buf.extend_from_slice(&(bytes.len() as u64).to_ne_bytes());
    buf.extend_from_slice(bytes);
    let boxed = buf.into_boxed_slice();
    let base = Box::into_raw(boxed) as *mut u8;
    // SAFETY: the allocation is at least 8 bytes long.
    unsafe { base.add(8) as *mut c_void }
}

unsafe extern "C" fn free_pixels(pixels: *mut c_void) {
    // SAFETY: `pixels` came from `leak_pixels`: 8 bytes of length precede it.
    unsafe {
        let base = (pixels as *mut u8).sub(8);
        let mut len = [0u8; 8];
        std::ptr::copy_nonoverlapping(base, len.as_mut_ptr(), 8);
        let len = u64::from_ne_bytes(len) as usize + 8;
        drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(base, len)));
    }
}

unsafe extern "C" fn ignore_frame(frame: *mut rs::rs2_frame, _user: *mut c_void) {
    // SAFETY: the callback owns the frame it is given.
    unsafe { rs::rs2_release_frame(frame) };
}

/// Writes a `.bag` holding a Z16 depth stream and an RGB8 colour stream. librealsense's
/// recorder stamps each message with the wall time the frame reached it, and real-time playback
/// sleeps by those stamps: a bag meant to play at its frame rate must be written at that rate.
pub struct BagWriter {
    device: *mut rs::rs2_device,
    recorder: *mut rs::rs2_device,
    depth_sensor: *mut rs::rs2_sensor,
    color_sensor: *mut rs::rs2_sensor,
    depth_profile: *mut rs::rs2_stream_profile,
    color_profile: *mut rs::rs2_stream_profile,
    depth_scale: f64,
}

impl BagWriter {
    pub fn create(
        path: &Path,
        calib: &Calibration,
        fps: u32,
        serial: &str,
    ) -> Result<Self, String> {
        let c_path = CString::new(path.to_string_lossy().as_bytes())
            .map_err(|_| "path has a NUL byte".to_string())?;
        // SAFETY (all calls below): handles are created here and used only while alive.
        let device = call("rs2_create_software_device", |e| unsafe {
            rs2_create_software_device(e)
        })?;
        let name = CString::new("Synthetic RealSense").unwrap_or_default();
        let serial = CString::new(serial).unwrap_or_default();
        call("register name", |e| unsafe {
            rs2_software_device_register_info(
                device,
                rs::rs2_camera_info_RS2_CAMERA_INFO_NAME,
                name.as_ptr(),
                e,
            )
        })?;
        call("register serial", |e| unsafe {
            rs2_software_device_register_info(
                device,
                rs::rs2_camera_info_RS2_CAMERA_INFO_SERIAL_NUMBER,
                serial.as_ptr(),
                e,
            )
        })?;
        let depth_name = CString::new("Stereo Module").unwrap_or_default();
        let color_name = CString::new("RGB Camera").unwrap_or_default();
        let depth_sensor = call("add depth sensor", |e| unsafe {
            rs2_software_device_add_sensor(device, depth_name.as_ptr(), e)
        })?;
        let color_sensor = call("add colour sensor", |e| unsafe {
            rs2_software_device_add_sensor(device, color_name.as_ptr(), e)
        })?;
        let stream = |kind, uid, k: &crate::rgbd::Intrinsics, bpp, format| rs2_video_stream {
            stream: kind,
            index: 0,
            uid,
            width: k.width as c_int,
            height: k.height as c_int,
            fps: fps as c_int,
            bpp,
            format,
            intrinsics: intrinsics_to_rs(k),
        };
        let depth_profile = call("add depth stream", |e| unsafe {
            rs2_software_sensor_add_video_stream(
                depth_sensor,
                stream(
                    rs::rs2_stream_RS2_STREAM_DEPTH,
                    0,
                    &calib.depth,
                    2,
                    rs::rs2_format_RS2_FORMAT_Z16,
                ),
                e,
            )
        })?;
        let color_profile = call("add colour stream", |e| unsafe {
            rs2_software_sensor_add_video_stream(
                color_sensor,
                stream(
                    rs::rs2_stream_RS2_STREAM_COLOR,
                    1,
                    &calib.color,
                    3,
                    rs::rs2_format_RS2_FORMAT_RGB8,
                ),
                e,
            )
        })?;
        call("depth units", |e| unsafe {
            rs2_software_sensor_add_read_only_option(
                depth_sensor,
                rs::rs2_option_RS2_OPTION_DEPTH_UNITS,
                calib.depth_scale as f32,
                e,
            )
        })?;
        let recorder = {
            let _graph = super::extrinsics_graph_lock();
            rs_call!(rs2_register_extrinsics(
                depth_profile,
                color_profile,
                extrinsics_to_rs(&calib.depth_to_color)
            ))?;
            rs_call!(rs2_create_record_device_ex(device, c_path.as_ptr(), 0))?
        };
        for (sensor, profile) in [(depth_sensor, depth_profile), (color_sensor, color_profile)] {
            rs_call!(rs2_open(sensor, profile))?;
            rs_call!(rs2_start(sensor, Some(ignore_frame), std::ptr::null_mut()))?;
        }
        Ok(Self {
            device,
            recorder,
            depth_sensor,
            color_sensor,
            depth_profile,
            color_profile,
            depth_scale: calib.depth_scale,
        })
    }

    /// Adds one depth frame; `mm` is converted to Z16 units with the calibration's depth scale.
    pub fn depth(
        &mut self,
        depth: &DepthMm,
        frame_number: u64,
        timestamp_ms: f64,
    ) -> Result<(), String> {
        let z16: Vec<u8> = depth
            .as_slice()
            .iter()
            .flat_map(|&mm| {
                (((mm as f64 / 1000.0) / self.depth_scale)
                    .round()
                    .min(65535.0) as u16)
                    .to_le_bytes()
            })
            .collect();
        let frame = rs2_software_video_frame {
            pixels: leak_pixels(&z16),
            deleter: Some(free_pixels),
            stride: (depth.width() * 2) as c_int,
            bpp: 2,
            timestamp: timestamp_ms,
            domain: rs::rs2_timestamp_domain_RS2_TIMESTAMP_DOMAIN_HARDWARE_CLOCK,
            frame_number: frame_number as c_int,
            profile: self.depth_profile,
            depth_units: self.depth_scale as f32,
        };
        let sensor = self.depth_sensor;
        // SAFETY: sensor and profile are alive; librealsense frees the pixels with the deleter.
        call("depth frame", |e| unsafe {
            rs2_software_sensor_on_video_frame(sensor, frame, e)
        })
    }

    pub fn color(
        &mut self,
        color: &RgbImage,
        frame_number: u64,
        timestamp_ms: f64,
    ) -> Result<(), String> {
        let frame = rs2_software_video_frame {
            pixels: leak_pixels(&color.data),
            deleter: Some(free_pixels),
            stride: (color.width * 3) as c_int,
            bpp: 3,
            timestamp: timestamp_ms,
            domain: rs::rs2_timestamp_domain_RS2_TIMESTAMP_DOMAIN_HARDWARE_CLOCK,
            frame_number: frame_number as c_int,
            profile: self.color_profile,
            depth_units: 0.0,
        };
        let sensor = self.color_sensor;
        // SAFETY: as above.
        call("colour frame", |e| unsafe {
            rs2_software_sensor_on_video_frame(sensor, frame, e)
        })
    }

    /// Stops the sensors and closes the file (the recorder writes its index on deletion).
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for BagWriter {
    fn drop(&mut self) {
        // SAFETY: handles created in `create`, released once, recorder before device.
        unsafe {
            for s in [self.depth_sensor, self.color_sensor] {
                let mut err = std::ptr::null_mut();
                rs::rs2_stop(s, &mut err);
                take_error(err);
                let mut err = std::ptr::null_mut();
                rs::rs2_close(s, &mut err);
                take_error(err);
            }
            rs::rs2_delete_device(self.recorder);
            rs::rs2_delete_device(self.device);
        }
    }
}
