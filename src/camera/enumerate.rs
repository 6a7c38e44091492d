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
    /// Anything the operator should know (USB 2 link, unsupported firmware).
    pub warnings: Vec<String>,
}

/// V4L2 capture nodes, read from sysfs (no driver calls, so it works without the `v4l2` feature).
pub fn v4l2_nodes() -> Vec<CameraInfo> {
    let Ok(entries) = std::fs::read_dir("/sys/class/video4linux") else {
        return Vec::new();
    };
    let mut nodes: Vec<CameraInfo> = entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let node = e.file_name().to_string_lossy().into_owned();
            let name = std::fs::read_to_string(e.path().join("name"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            CameraInfo {
                kind: "v4l2".into(),
                name,
                spec: format!("v4l2:/dev/{node}"),
                serial: None,
                firmware: None,
                usb_type: None,
                warnings: Vec::new(),
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.spec.cmp(&b.spec));
    nodes
}
