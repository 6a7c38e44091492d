//! Intel RealSense through librealsense's C API (feature `realsense`): live cameras and `.bag`
//! playback as a [`DeviceLayer`], device enumeration, factory calibration, and (in
//! [`software`]) a software device + recorder that writes `.bag` files for tests and fixtures.
//!
//! Streams are started per sensor with callbacks, not through `rs2_pipeline`: the pipeline's
//! syncer drops and repeats framesets, while [`LiveSource`] pairs by timestamp and counts
//! every frame it cannot pair.

pub mod software;

use std::ffi::{CStr, CString};
use std::os::raw::{c_int, c_void};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use realsense_sys as rs;

use super::enumerate::CameraInfo;
use super::live::{DeviceError, DeviceLayer, LiveOptions, LiveSource, Payload, RawFrame};
use super::{DepthNeed, SourceError, StreamMode};
use crate::rgbd::{Calibration, DepthMm, DistortionModel, Extrinsics, Intrinsics, RgbImage};

/// Turns an `rs2_error` out-parameter into a message, freeing it.
fn take_error(err: *mut rs::rs2_error) -> Option<String> {
    if err.is_null() {
        return None;
    }
    // SAFETY: `err` came from librealsense and is freed exactly once here.
    unsafe {
        let msg = rs::rs2_get_error_message(err);
        let text = if msg.is_null() {
            "unknown librealsense error".into()
        } else {
            CStr::from_ptr(msg).to_string_lossy().into_owned()
        };
        rs::rs2_free_error(err);
        Some(text)
    }
}

/// Calls a librealsense function that takes a trailing `rs2_error**`.
macro_rules! rs_call {
    ($f:ident($($arg:expr),* $(,)?)) => {{
        let mut err: *mut rs::rs2_error = std::ptr::null_mut();
        // SAFETY: arguments are live librealsense handles owned by the caller.
        let out = unsafe { rs::$f($($arg,)* &mut err) };
        match take_error(err) {
            None => Ok(out),
            Some(m) => Err(format!("{}: {m}", stringify!($f))),
        }
    }};
}
pub(crate) use rs_call;

/// Serialises the calls that add extrinsics to librealsense's process-wide extrinsics graph:
/// registering explicit extrinsics appends to a vector outside the graph's own mutex
/// (librealsense 2.56 `extrinsics_graph::register_extrinsics`), so a software device and a bag
/// opened on two threads at once could corrupt it and crash. Hold this around
/// `rs2_register_extrinsics`, recorder creation and `rs2_context_add_device`.
static EXTRINSICS_GRAPH: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn extrinsics_graph_lock() -> std::sync::MutexGuard<'static, ()> {
    EXTRINSICS_GRAPH
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An owned `rs2_context`.
pub struct Context(*mut rs::rs2_context);

// SAFETY: librealsense contexts are thread-safe handles.
unsafe impl Send for Context {}

impl Context {
    pub fn new() -> Result<Self, String> {
        let ctx = rs_call!(rs2_create_context(rs::RS2_API_VERSION as c_int)).map_err(|m| {
            format!(
                "{m} (this build needs librealsense 2.{} or newer)",
                rs::RS2_API_MINOR_VERSION
            )
        })?;
        if ctx.is_null() {
            return Err("rs2_create_context returned nothing".into());
        }
        Ok(Self(ctx))
    }
    pub fn raw(&self) -> *mut rs::rs2_context {
        self.0
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: created by rs2_create_context and dropped once.
        unsafe { rs::rs2_delete_context(self.0) }
    }
}

fn device_info(dev: *const rs::rs2_device, info: rs::rs2_camera_info) -> Option<String> {
    let supported = rs_call!(rs2_supports_device_info(dev, info)).ok()?;
    if supported == 0 {
        return None;
    }
    let p = rs_call!(rs2_get_device_info(dev, info)).ok()?;
    if p.is_null() {
        return None;
    }
    // SAFETY: librealsense returns a NUL-terminated string owned by the device.
    Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

fn info_of(dev: *const rs::rs2_device) -> CameraInfo {
    let name = device_info(dev, rs::rs2_camera_info_RS2_CAMERA_INFO_NAME)
        .unwrap_or_else(|| "RealSense".into());
    let serial = device_info(dev, rs::rs2_camera_info_RS2_CAMERA_INFO_SERIAL_NUMBER);
    let usb_type = device_info(dev, rs::rs2_camera_info_RS2_CAMERA_INFO_USB_TYPE_DESCRIPTOR);
    let mut warnings = Vec::new();
    if usb_type
        .as_deref()
        .is_some_and(|u| u.starts_with('2') || u.starts_with('1'))
    {
        warnings.push(format!(
            "USB {} link: RealSense modes are limited (e.g. 640x480 @ 30, 1280x720 @ 6); use a USB 3 port and cable",
            usb_type.as_deref().unwrap_or("?")
        ));
    }
    CameraInfo {
        kind: "realsense".into(),
        spec: format!("realsense:{}", serial.clone().unwrap_or_default()),
        name,
        serial,
        firmware: device_info(dev, rs::rs2_camera_info_RS2_CAMERA_INFO_FIRMWARE_VERSION),
        usb_type,
        modes: super::enumerate::describe_stream_modes(&stream_modes(dev)),
        warnings,
    }
}

/// The depth Z16 and colour RGB8 modes a device offers (the formats this program streams).
fn stream_modes(dev: *const rs::rs2_device) -> Vec<super::enumerate::OfferedStream> {
    let mut offered = Vec::new();
    let Ok(sensor_list) = rs_call!(rs2_query_sensors(dev)) else {
        return offered;
    };
    let n = rs_call!(rs2_get_sensors_count(sensor_list)).unwrap_or(0);
    for i in 0..n {
        let Ok(sensor) = rs_call!(rs2_create_sensor(sensor_list, i)) else {
            continue;
        };
        if let Ok(profiles) = rs_call!(rs2_get_stream_profiles(sensor)) {
            let count = rs_call!(rs2_get_stream_profiles_count(profiles)).unwrap_or(0);
            for j in 0..count {
                let Ok(p) = rs_call!(rs2_get_stream_profile(profiles, j)) else {
                    continue;
                };
                let (mut stream, mut format, mut index, mut uid, mut fps) = (0, 0, 0, 0, 0);
                let (mut w, mut h) = (0, 0);
                if rs_call!(rs2_get_stream_profile_data(
                    p,
                    &mut stream,
                    &mut format,
                    &mut index,
                    &mut uid,
                    &mut fps
                ))
                .is_err()
                    || rs_call!(rs2_get_video_stream_resolution(p, &mut w, &mut h)).is_err()
                {
                    continue;
                }
                let what = if stream == rs::rs2_stream_RS2_STREAM_DEPTH
                    && format == rs::rs2_format_RS2_FORMAT_Z16
                {
                    "depth Z16"
                } else if stream == rs::rs2_stream_RS2_STREAM_COLOR
                    && format == rs::rs2_format_RS2_FORMAT_RGB8
                {
                    "colour RGB8"
                } else {
                    continue;
                };
                offered.push((
                    what.to_string(),
                    w.max(0) as u32,
                    h.max(0) as u32,
                    fps.max(0) as u32,
                ));
            }
            // SAFETY: created above, deleted once.
            unsafe { rs::rs2_delete_stream_profiles_list(profiles) };
        }
        // SAFETY: created above, deleted once.
        unsafe { rs::rs2_delete_sensor(sensor) };
    }
    // SAFETY: created above, deleted once.
    unsafe { rs::rs2_delete_sensor_list(sensor_list) };
    offered
}

/// Every attached RealSense camera.
pub fn enumerate() -> Result<Vec<CameraInfo>, SourceError> {
    let ctx = Context::new().map_err(SourceError::Device)?;
    let list = rs_call!(rs2_query_devices(ctx.raw())).map_err(SourceError::Device)?;
    let count = rs_call!(rs2_get_device_count(list)).unwrap_or(0);
    let mut out = Vec::new();
    for i in 0..count {
        if let Ok(dev) = rs_call!(rs2_create_device(list, i)) {
            out.push(info_of(dev));
            // SAFETY: created above, deleted once.
            unsafe { rs::rs2_delete_device(dev) };
        }
    }
    // SAFETY: created above, deleted once.
    unsafe { rs::rs2_delete_device_list(list) };
    Ok(out)
}

/// Writes `DIR/<serial>.toml` with each attached camera's factory calibration at `modes`
/// (intrinsics depend on the resolution: use the modes the camera will stream at).
pub fn write_calibrations(dir: &Path, modes: Modes) -> Result<Vec<String>, SourceError> {
    let mut written = Vec::new();
    for cam in enumerate()? {
        let Some(serial) = cam.serial.clone() else {
            continue;
        };
        let mut device = RsDevice::live(Some(serial.clone()), modes);
        device
            .open_only()
            .map_err(|e| SourceError::Device(e.to_string()))?;
        let path = dir.join(format!("{serial}.toml"));
        std::fs::create_dir_all(dir).map_err(|e| SourceError::Recording {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        crate::fsutil::write_atomic(&path, device.calibration().to_toml_string().as_bytes())
            .map_err(|e| SourceError::Recording {
                path: path.display().to_string(),
                message: format!("cannot write: {e}"),
            })?;
        device.stop();
        written.push(path.display().to_string());
    }
    Ok(written)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modes {
    pub depth: StreamMode,
    pub color: StreamMode,
}

impl Default for Modes {
    fn default() -> Self {
        let m = StreamMode {
            width: 640,
            height: 480,
            fps: 30,
        };
        Self { depth: m, color: m }
    }
}

enum Target {
    Live {
        serial: Option<String>,
        modes: Modes,
    },
    Bag {
        path: PathBuf,
        real_time: bool,
    },
}

/// What the sensor callbacks share with the polling side.
struct Shared {
    tx: crossbeam_channel::Sender<RawFrame>,
    /// Bag playback not in real time: wait for the consumer instead of dropping.
    block: bool,
    depth_scale_m: f64,
    /// [`DepthNeed::None`]: depth frames are passed on without their pixels (the consumer does
    /// not use them).
    depth: DepthNeed,
    dropped: std::sync::atomic::AtomicU64,
}

struct Open {
    device: *mut rs::rs2_device,
    sensors: Vec<*mut rs::rs2_sensor>,
    sensor_list: *mut rs::rs2_sensor_list,
    profile_lists: Vec<*mut rs::rs2_stream_profile_list>,
    shared: *mut Shared,
    rx: crossbeam_channel::Receiver<RawFrame>,
}

/// A RealSense camera or a `.bag` recording, one stream per sensor, frames through callbacks.
pub struct RsDevice {
    ctx: Option<Context>,
    target: Target,
    calib: Calibration,
    open: Option<Open>,
    description: String,
    usb_type: Option<String>,
    playback_seen: bool,
    stopped_since: Option<Instant>,
    depth: DepthNeed,
}

// SAFETY: the raw handles are only used from the thread that owns the RsDevice; librealsense
// handles may move between threads.
unsafe impl Send for RsDevice {}

impl RsDevice {
    pub fn live(serial: Option<String>, modes: Modes) -> Self {
        let description = format!("RealSense {}", serial.as_deref().unwrap_or("(first found)"));
        Self::with(Target::Live { serial, modes }, description)
    }

    pub fn bag(path: &Path, real_time: bool) -> Self {
        Self::with(
            Target::Bag {
                path: path.to_path_buf(),
                real_time,
            },
            path.display().to_string(),
        )
    }

    /// [`DepthNeed::None`]: depth frames keep their number and timestamp, for pairing, but not
    /// their pixels (a consumer that does not use depth); frames then carry [`super::Depth::None`].
    pub fn with_depth(mut self, need: DepthNeed) -> Self {
        self.depth = need;
        self
    }

    fn with(target: Target, description: String) -> Self {
        let placeholder = Intrinsics {
            width: 1,
            height: 1,
            fx: 1.0,
            fy: 1.0,
            ppx: 0.0,
            ppy: 0.0,
            model: DistortionModel::None,
            coeffs: [0.0; 5],
        };
        Self {
            ctx: None,
            target,
            calib: Calibration {
                depth_scale: 0.001,
                depth: placeholder.clone(),
                color: placeholder,
                depth_to_color: Extrinsics {
                    rotation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                    translation: [0.0; 3],
                },
            },
            open: None,
            description,
            usb_type: None,
            playback_seen: false,
            depth: DepthNeed::Raw,
            stopped_since: None,
        }
    }

    /// Frames the sensor callbacks had to drop because the consumer fell behind.
    pub fn dropped_in_callbacks(&self) -> u64 {
        self.open
            .as_ref()
            // SAFETY: `shared` lives as long as `open`.
            .map(|o| unsafe {
                (*o.shared)
                    .dropped
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .unwrap_or(0)
    }

    fn find_device(&mut self) -> Result<*mut rs::rs2_device, DeviceError> {
        if self.ctx.is_none() {
            self.ctx = Some(Context::new().map_err(DeviceError::Failed)?);
        }
        let ctx = self
            .ctx
            .as_ref()
            .map(Context::raw)
            .unwrap_or(std::ptr::null_mut());
        match &self.target {
            Target::Bag { path, real_time } => {
                let c_path = CString::new(path.to_string_lossy().as_bytes())
                    .map_err(|_| DeviceError::Failed("path contains a NUL byte".into()))?;
                if !path.exists() {
                    return Err(DeviceError::Failed("no such file".into()));
                }
                let added = {
                    let _graph = extrinsics_graph_lock();
                    rs_call!(rs2_context_add_device(ctx, c_path.as_ptr()))
                };
                let dev = added.map_err(|m| {
                    DeviceError::Failed(format!(
                        "not a readable RealSense bag, truncated or corrupt ({m})"
                    ))
                })?;
                rs_call!(rs2_playback_device_set_real_time(
                    dev,
                    if *real_time { 1 } else { 0 }
                ))
                .map_err(DeviceError::Failed)?;
                Ok(dev)
            }
            Target::Live { serial, .. } => {
                let list = rs_call!(rs2_query_devices(ctx)).map_err(DeviceError::Failed)?;
                let count = rs_call!(rs2_get_device_count(list)).unwrap_or(0);
                let mut found = std::ptr::null_mut();
                for i in 0..count {
                    let Ok(dev) = rs_call!(rs2_create_device(list, i)) else {
                        continue;
                    };
                    let info = info_of(dev);
                    if serial.is_none() || info.serial == *serial {
                        self.usb_type = info.usb_type.clone();
                        for w in &info.warnings {
                            tracing::error!(camera = %info.spec, "{w}");
                        }
                        self.description =
                            format!("{} {}", info.name, info.serial.unwrap_or_default());
                        found = dev;
                        break;
                    }
                    // SAFETY: created above, not kept.
                    unsafe { rs::rs2_delete_device(dev) };
                }
                // SAFETY: created above, deleted once.
                unsafe { rs::rs2_delete_device_list(list) };
                if found.is_null() {
                    let which = serial
                        .as_deref()
                        .map(|s| format!("serial {s}"))
                        .unwrap_or_else(|| "any".into());
                    return Err(DeviceError::NotFound(format!(
                        "no RealSense camera ({which}) attached"
                    )));
                }
                Ok(found)
            }
        }
    }

    /// Opens the device and its depth and colour sensors, reads the calibration, starts nothing.
    fn open_only(&mut self) -> Result<(), DeviceError> {
        self.close();
        self.playback_seen = false;
        self.stopped_since = None;
        let device = self.find_device()?;
        let sensor_list = rs_call!(rs2_query_sensors(device)).map_err(DeviceError::Failed)?;
        let n = rs_call!(rs2_get_sensors_count(sensor_list)).unwrap_or(0);
        let want = match &self.target {
            Target::Live { modes, .. } => Some(*modes),
            Target::Bag { .. } => None,
        };
        let mut depth: Option<(*mut rs::rs2_sensor, *const rs::rs2_stream_profile)> = None;
        let mut color: Option<(*mut rs::rs2_sensor, *const rs::rs2_stream_profile)> = None;
        let mut sensors = Vec::new();
        let mut profile_lists = Vec::new();
        for i in 0..n {
            let Ok(sensor) = rs_call!(rs2_create_sensor(sensor_list, i)) else {
                continue;
            };
            let Ok(profiles) = rs_call!(rs2_get_stream_profiles(sensor)) else {
                continue;
            };
            let count = rs_call!(rs2_get_stream_profiles_count(profiles)).unwrap_or(0);
            let mut used = false;
            for j in 0..count {
                let Ok(p) = rs_call!(rs2_get_stream_profile(profiles, j)) else {
                    continue;
                };
                let (mut stream, mut format, mut index, mut uid, mut fps) = (0, 0, 0, 0, 0);
                if rs_call!(rs2_get_stream_profile_data(
                    p,
                    &mut stream,
                    &mut format,
                    &mut index,
                    &mut uid,
                    &mut fps
                ))
                .is_err()
                {
                    continue;
                }
                let (mut w, mut h) = (0, 0);
                if rs_call!(rs2_get_video_stream_resolution(p, &mut w, &mut h)).is_err() {
                    continue;
                }
                let matches = |m: StreamMode| {
                    m.width == w as usize && m.height == h as usize && m.fps == fps as u32
                };
                if stream == rs::rs2_stream_RS2_STREAM_DEPTH
                    && format == rs::rs2_format_RS2_FORMAT_Z16
                    && depth.is_none()
                    && want.is_none_or(|m| matches(m.depth))
                {
                    depth = Some((sensor, p));
                    used = true;
                } else if stream == rs::rs2_stream_RS2_STREAM_COLOR
                    && format == rs::rs2_format_RS2_FORMAT_RGB8
                    && color.is_none()
                    && want.is_none_or(|m| matches(m.color))
                {
                    color = Some((sensor, p));
                    used = true;
                }
            }
            profile_lists.push(profiles);
            if used {
                sensors.push(sensor);
            }
        }
        let (Some((depth_sensor, depth_profile)), Some((_, color_profile))) = (depth, color) else {
            let what = match want {
                Some(m) => format!(
                    "depth Z16 {}x{}@{} and colour RGB8 {}x{}@{}",
                    m.depth.width,
                    m.depth.height,
                    m.depth.fps,
                    m.color.width,
                    m.color.height,
                    m.color.fps
                ),
                None => "a depth Z16 and a colour RGB8 stream".into(),
            };
            return Err(DeviceError::Failed(format!(
                "{}: does not offer {what}",
                self.description
            )));
        };
        let depth_scale = rs_call!(rs2_get_option(
            depth_sensor as *const rs::rs2_options,
            rs::rs2_option_RS2_OPTION_DEPTH_UNITS
        ))
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| s as f64)
        .unwrap_or(0.001);
        let intrinsics = |p| -> Result<Intrinsics, DeviceError> {
            let mut k: rs::rs2_intrinsics = unsafe { std::mem::zeroed() };
            rs_call!(rs2_get_video_stream_intrinsics(p, &mut k)).map_err(DeviceError::Failed)?;
            Ok(intrinsics_from_rs(&k))
        };
        let mut e: rs::rs2_extrinsics = unsafe { std::mem::zeroed() };
        rs_call!(rs2_get_extrinsics(depth_profile, color_profile, &mut e))
            .map_err(DeviceError::Failed)?;
        self.calib = Calibration {
            depth_scale: depth_scale as f32 as f64,
            depth: intrinsics(depth_profile)?,
            color: intrinsics(color_profile)?,
            depth_to_color: extrinsics_from_rs(&e),
        };
        // Open each used sensor with its chosen profile.
        for &(sensor, profile) in [depth, color].iter().flatten() {
            rs_call!(rs2_open(sensor, profile))
                .map_err(|m| DeviceError::Failed(format!("{}: {m}", self.description)))?;
        }
        let (tx, rx) = crossbeam_channel::bounded(16);
        let block = matches!(
            self.target,
            Target::Bag {
                real_time: false,
                ..
            }
        );
        let shared = Box::into_raw(Box::new(Shared {
            tx,
            block,
            depth_scale_m: depth_scale,
            depth: self.depth,
            dropped: Default::default(),
        }));
        self.open = Some(Open {
            device,
            sensors,
            sensor_list,
            profile_lists,
            shared,
            rx,
        });
        Ok(())
    }

    fn close(&mut self) {
        let Some(open) = self.open.take() else { return };
        // SAFETY: every handle below was created in `open_only` and is released once; sensors
        // are stopped before the shared callback state is freed.
        unsafe {
            for &s in &open.sensors {
                let mut err = std::ptr::null_mut();
                rs::rs2_stop(s, &mut err);
                take_error(err);
                let mut err = std::ptr::null_mut();
                rs::rs2_close(s, &mut err);
                take_error(err);
            }
            for &s in &open.sensors {
                rs::rs2_delete_sensor(s);
            }
            for &p in &open.profile_lists {
                rs::rs2_delete_stream_profiles_list(p);
            }
            rs::rs2_delete_sensor_list(open.sensor_list);
            rs::rs2_delete_device(open.device);
            drop(Box::from_raw(open.shared));
        }
    }

    /// Whether a bag's playback has finished: it played (a frame came or the status said so),
    /// is now stopped, and no frame arrived for a grace period (sensor callbacks run on their
    /// own dispatcher threads and may still hold the last frames when the reader stops).
    fn playback_finished(&mut self, frame_arrived: bool) -> bool {
        let (Target::Bag { .. }, Some(open)) = (&self.target, &self.open) else {
            return false;
        };
        let status = rs_call!(rs2_playback_device_get_current_status(open.device)).ok();
        if frame_arrived || status == Some(rs::rs2_playback_status_RS2_PLAYBACK_STATUS_PLAYING) {
            self.playback_seen = true;
        }
        if frame_arrived
            || status != Some(rs::rs2_playback_status_RS2_PLAYBACK_STATUS_STOPPED)
            || !self.playback_seen
        {
            self.stopped_since = None;
            return false;
        }
        let since = *self.stopped_since.get_or_insert_with(Instant::now);
        since.elapsed() >= Duration::from_millis(200)
    }
}

impl Drop for RsDevice {
    fn drop(&mut self) {
        self.close();
    }
}

pub(crate) fn intrinsics_from_rs(k: &rs::rs2_intrinsics) -> Intrinsics {
    let model = match k.model {
        rs::rs2_distortion_RS2_DISTORTION_MODIFIED_BROWN_CONRADY => {
            DistortionModel::ModifiedBrownConrady
        }
        rs::rs2_distortion_RS2_DISTORTION_INVERSE_BROWN_CONRADY => {
            DistortionModel::InverseBrownConrady
        }
        rs::rs2_distortion_RS2_DISTORTION_BROWN_CONRADY => DistortionModel::BrownConrady,
        _ => DistortionModel::None,
    };
    Intrinsics {
        width: k.width.max(0) as usize,
        height: k.height.max(0) as usize,
        fx: k.fx as f64,
        fy: k.fy as f64,
        ppx: k.ppx as f64,
        ppy: k.ppy as f64,
        model,
        coeffs: k.coeffs.map(|c| c as f64),
    }
}

pub(crate) fn intrinsics_to_rs(k: &Intrinsics) -> rs::rs2_intrinsics {
    rs::rs2_intrinsics {
        width: k.width as c_int,
        height: k.height as c_int,
        ppx: k.ppx as f32,
        ppy: k.ppy as f32,
        fx: k.fx as f32,
        fy: k.fy as f32,
        model: match k.model {
            DistortionModel::None => rs::rs2_distortion_RS2_DISTORTION_NONE,
            DistortionModel::BrownConrady => rs::rs2_distortion_RS2_DISTORTION_BROWN_CONRADY,
            DistortionModel::InverseBrownConrady => {
                rs::rs2_distortion_RS2_DISTORTION_INVERSE_BROWN_CONRADY
            }
            DistortionModel::ModifiedBrownConrady => {
                rs::rs2_distortion_RS2_DISTORTION_MODIFIED_BROWN_CONRADY
            }
        },
        coeffs: k.coeffs.map(|c| c as f32),
    }
}

/// librealsense stores rotation column-major; ours is row-major.
pub(crate) fn extrinsics_from_rs(e: &rs::rs2_extrinsics) -> Extrinsics {
    let r = e.rotation;
    Extrinsics {
        rotation: [r[0], r[3], r[6], r[1], r[4], r[7], r[2], r[5], r[8]].map(|v| v as f64),
        translation: e.translation.map(|v| v as f64),
    }
}

pub(crate) fn extrinsics_to_rs(e: &Extrinsics) -> rs::rs2_extrinsics {
    let r = e.rotation;
    rs::rs2_extrinsics {
        rotation: [r[0], r[3], r[6], r[1], r[4], r[7], r[2], r[5], r[8]].map(|v| v as f32),
        translation: e.translation.map(|v| v as f32),
    }
}

/// Copies one librealsense frame into a [`RawFrame`]. `None` for streams we don't use.
fn raw_frame(frame: *const rs::rs2_frame, shared: &Shared) -> Option<RawFrame> {
    let depth_scale_m = shared.depth_scale_m;
    let arrival = Instant::now();
    let profile = rs_call!(rs2_get_frame_stream_profile(frame)).ok()?;
    let (mut stream, mut format, mut index, mut uid, mut fps) = (0, 0, 0, 0, 0);
    rs_call!(rs2_get_stream_profile_data(
        profile,
        &mut stream,
        &mut format,
        &mut index,
        &mut uid,
        &mut fps
    ))
    .ok()?;
    let w = rs_call!(rs2_get_frame_width(frame)).ok()?.max(0) as usize;
    let h = rs_call!(rs2_get_frame_height(frame)).ok()?.max(0) as usize;
    let stride = rs_call!(rs2_get_frame_stride_in_bytes(frame)).ok()?.max(0) as usize;
    let data = rs_call!(rs2_get_frame_data(frame)).ok()? as *const u8;
    if data.is_null() || h == 0 {
        return None;
    }
    // SAFETY: librealsense guarantees `stride * height` readable bytes at `data` while the
    // frame is held (we are inside its callback).
    let bytes = unsafe { std::slice::from_raw_parts(data, stride * h) };
    let number = rs_call!(rs2_get_frame_number(frame)).ok()?;
    let timestamp = rs_call!(rs2_get_frame_timestamp(frame)).ok();
    let payload = if stream == rs::rs2_stream_RS2_STREAM_DEPTH
        && format == rs::rs2_format_RS2_FORMAT_Z16
        && shared.depth == DepthNeed::None
    {
        Payload::Depth(DepthMm::zeros(0, 0))
    } else if stream == rs::rs2_stream_RS2_STREAM_DEPTH && format == rs::rs2_format_RS2_FORMAT_Z16 {
        let rows = bytes.chunks_exact(stride).take(h).map(|row| &row[..w * 2]);
        if (depth_scale_m * 1000.0 - 1.0).abs() < 1e-6 {
            // One Z16 unit is one millimetre: widen straight into the frame, one pass.
            let mut mm = Vec::with_capacity(w * h);
            for row in rows {
                mm.extend(
                    row.chunks_exact(2)
                        .map(|px| u16::from_le_bytes([px[0], px[1]]) as u32),
                );
            }
            Payload::Depth(DepthMm::from_mm_in_range(w, h, mm)?)
        } else {
            let mut z16 = Vec::with_capacity(w * h);
            for row in rows {
                z16.extend(
                    row.chunks_exact(2)
                        .map(|px| u16::from_le_bytes([px[0], px[1]])),
                );
            }
            Payload::Depth(DepthMm::from_z16(w, h, &z16, depth_scale_m).ok()?)
        }
    } else if stream == rs::rs2_stream_RS2_STREAM_COLOR && format == rs::rs2_format_RS2_FORMAT_RGB8
    {
        let mut rgb = Vec::with_capacity(w * h * 3);
        for row in bytes.chunks_exact(stride).take(h) {
            rgb.extend_from_slice(&row[..w * 3]);
        }
        Payload::Color(RgbImage::new(w, h, rgb)?)
    } else {
        return None;
    };
    Some(RawFrame {
        payload,
        frame_number: number,
        device_timestamp_ms: timestamp,
        arrival,
    })
}

unsafe extern "C" fn on_frame(frame: *mut rs::rs2_frame, user: *mut c_void) {
    // SAFETY: `user` is the `Shared` that outlives the sensors it was registered with.
    let shared = unsafe { &*(user as *const Shared) };
    if let Some(raw) = raw_frame(frame, shared) {
        let sent = if shared.block {
            shared.tx.send(raw).is_ok()
        } else {
            shared.tx.try_send(raw).is_ok()
        };
        if !sent {
            shared
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    // SAFETY: the callback owns the frame reference it was given.
    unsafe { rs::rs2_release_frame(frame) };
}

impl DeviceLayer for RsDevice {
    fn start(&mut self) -> Result<(), DeviceError> {
        self.open_only()?;
        let Some(open) = &self.open else {
            return Err(DeviceError::Failed("not open".into()));
        };
        // A bag starts playing when its first sensor starts: frames of a sensor started a moment
        // later would be read past and lost (the first frames of a fast playback, seen under
        // load). Hold playback until every sensor listens.
        let bag = matches!(self.target, Target::Bag { .. });
        if bag {
            rs_call!(rs2_playback_device_pause(open.device)).map_err(DeviceError::Failed)?;
        }
        for &s in &open.sensors {
            rs_call!(rs2_start(s, Some(on_frame), open.shared as *mut c_void))
                .map_err(|m| DeviceError::Failed(format!("{}: {m}", self.description)))?;
        }
        if bag {
            rs_call!(rs2_playback_device_resume(open.device)).map_err(DeviceError::Failed)?;
        }
        Ok(())
    }

    fn poll(&mut self, timeout: Duration) -> Result<Option<RawFrame>, DeviceError> {
        let Some(open) = &self.open else {
            return Err(DeviceError::Disconnected("not streaming".into()));
        };
        let rx = open.rx.clone();
        let deadline = Instant::now() + timeout;
        loop {
            let slice =
                Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now()));
            match rx.recv_timeout(slice) {
                Ok(frame) => {
                    self.playback_finished(true);
                    return Ok(Some(frame));
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(DeviceError::Disconnected("frame callbacks stopped".into()))
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if self.playback_finished(false) && rx.is_empty() {
                        return Err(DeviceError::Ended);
                    }
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn stop(&mut self) {
        self.close();
    }

    fn hardware_reset(&mut self) -> Result<(), DeviceError> {
        if let Target::Live { .. } = self.target {
            let dev = self.find_device()?;
            let result = rs_call!(rs2_hardware_reset(dev)).map_err(DeviceError::Failed);
            // SAFETY: created by find_device, not kept.
            unsafe { rs::rs2_delete_device(dev) };
            result?;
            // The camera re-enumerates after a reset.
            std::thread::sleep(Duration::from_secs(2));
        }
        Ok(())
    }

    fn calibration(&self) -> &Calibration {
        &self.calib
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn usb_type(&self) -> Option<String> {
        self.usb_type.clone()
    }

    fn delivers_depth(&self) -> bool {
        self.depth != DepthNeed::None
    }
}

/// Opens `realsense[:SERIAL]` as a live source.
/// `depth`: see [`RsDevice::with_depth`].
pub fn open_live(
    serial: Option<String>,
    modes: Modes,
    options: LiveOptions,
    depth: DepthNeed,
) -> Result<LiveSource<RsDevice>, SourceError> {
    let options = LiveOptions {
        asked_fps: Some(f64::from(modes.depth.fps.min(modes.color.fps))),
        ..options
    };
    let device = RsDevice::live(serial, modes).with_depth(depth);
    let mut source = LiveSource::new(device, options);
    source.prime()?;
    Ok(source)
}

/// Opens a `.bag` as a source: every frame, paired by timestamp, in file order. `depth`: see
/// [`RsDevice::with_depth`].
pub fn open_bag(
    path: &Path,
    real_time: bool,
    depth: DepthNeed,
) -> Result<LiveSource<RsDevice>, SourceError> {
    let options = LiveOptions {
        frame_timeout: Duration::from_secs(5),
        reconnect_timeout: Duration::ZERO,
        ..LiveOptions::default()
    };
    let device = RsDevice::bag(path, real_time).with_depth(depth);
    let mut source = LiveSource::new(device, options);
    source.prime().map_err(|e| match e {
        SourceError::Device(message) => SourceError::Recording {
            path: path.display().to_string(),
            message,
        },
        other => other,
    })?;
    Ok(source)
}
