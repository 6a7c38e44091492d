//! What cameras this machine has, for `devices`.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct CameraInfo {
    /// "realsense" or "v4l2".
    pub kind: String,
    pub name: String,
    /// The SPEC that opens it.
    pub spec: String,
    pub serial: Option<String>,
    pub firmware: Option<String>,
    pub usb_type: Option<String>,
    /// Stream modes it offers, one line each (e.g. `YUYV 640x480 @ 30, 15 fps`).
    pub modes: Vec<String>,
    /// Anything the operator should know (USB 2 link, unsupported firmware).
    pub warnings: Vec<String>,
}

/// The SPEC of the first RealSense camera attached, for `auto`; `None` without one (or without
/// the `realsense` feature).
pub fn first_realsense() -> Option<String> {
    #[cfg(feature = "realsense")]
    {
        let found = super::realsense::enumerate().ok()?;
        found.into_iter().next().map(|c| c.spec)
    }
    #[cfg(not(feature = "realsense"))]
    None
}

/// V4L2 video nodes, read from sysfs. With the `v4l2` feature each node is also asked what it
/// offers (formats, sizes, rates) and nodes that do not capture video are left out; without it
/// every node is listed by name.
pub fn v4l2_nodes() -> Vec<CameraInfo> {
    let Ok(entries) = std::fs::read_dir("/sys/class/video4linux") else {
        return Vec::new();
    };
    let mut nodes: Vec<CameraInfo> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let node = e.file_name().to_string_lossy().into_owned();
            let name = std::fs::read_to_string(e.path().join("name"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            let info = CameraInfo {
                kind: "v4l2".into(),
                name,
                spec: format!("v4l2:/dev/{node}"),
                serial: None,
                firmware: None,
                usb_type: None,
                modes: Vec::new(),
                warnings: Vec::new(),
            };
            #[cfg(feature = "v4l2")]
            let info = with_offered_modes(info, &node)?;
            Some(info)
        })
        .collect();
    nodes.sort_by(|a, b| a.spec.cmp(&b.spec));
    nodes
}

/// Asks the node what it offers; `None` for a node that does not capture video.
#[cfg(feature = "v4l2")]
fn with_offered_modes(mut info: CameraInfo, node: &str) -> Option<CameraInfo> {
    use super::v4l2::{describe_modes, offered_modes, PixelFormat};
    match offered_modes(std::path::Path::new(&format!("/dev/{node}"))) {
        Ok(Some(modes)) => {
            info.modes = describe_modes(&modes);
            let decodable = modes.iter().any(|m| {
                <[u8; 4]>::try_from(m.fourcc.as_bytes())
                    .ok()
                    .and_then(PixelFormat::from_fourcc)
                    .is_some()
            });
            if !decodable {
                info.warnings
                    .push("offers neither YUYV nor MJPEG: spatialbot-edge cannot decode it".into());
            }
        }
        Ok(None) => return None,
        Err(e) => info.warnings.push(format!(
            "cannot query it: {e} (is this user in group `video`?)"
        )),
    }
    Some(info)
}
