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

/// One stream mode a camera offers: what (e.g. "depth Z16"), width, height, frame rate.
pub type OfferedStream = (String, u32, u32, u32);

/// Lines such as `depth Z16 848x480 @ 90, 60, 30 fps`: one per stream and size, largest first,
/// rates fastest first.
pub fn describe_stream_modes(offered: &[OfferedStream]) -> Vec<String> {
    let mut sizes: Vec<(String, u32, u32, Vec<u32>)> = Vec::new();
    for (what, w, h, fps) in offered {
        match sizes
            .iter_mut()
            .find(|(s, sw, sh, _)| s == what && sw == w && sh == h)
        {
            Some((_, _, _, rates)) => {
                if !rates.contains(fps) {
                    rates.push(*fps)
                }
            }
            None => sizes.push((what.clone(), *w, *h, vec![*fps])),
        }
    }
    sizes.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then((u64::from(b.1) * u64::from(b.2)).cmp(&(u64::from(a.1) * u64::from(a.2))))
            .then(b.1.cmp(&a.1))
    });
    sizes
        .into_iter()
        .map(|(what, w, h, mut rates)| {
            rates.sort_unstable_by(|a, b| b.cmp(a));
            let rates: Vec<String> = rates.iter().map(u32::to_string).collect();
            format!("{what} {w}x{h} @ {} fps", rates.join(", "))
        })
        .collect()
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

/// RealSense cameras on the USB bus as sysfs lists them (Intel's vendor id 8086 and a product
/// name that says RealSense), whether or not this build or librealsense can open them: one
/// `8086:PID NAME` each.
pub fn realsense_on_usb() -> Vec<String> {
    realsense_on_usb_in(std::path::Path::new("/sys/bus/usb/devices"))
}

/// `realsense_on_usb` over a sysfs USB device folder.
pub fn realsense_on_usb_in(devices: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(devices) else {
        return Vec::new();
    };
    let read = |dir: &std::path::Path, name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|dir| read(dir, "idVendor").eq_ignore_ascii_case("8086"))
        .filter_map(|dir| {
            let product = read(&dir, "product");
            product
                .contains("RealSense")
                .then(|| format!("8086:{} {product}", read(&dir, "idProduct")))
        })
        .collect();
    found.sort();
    found
}

/// V4L2 video nodes, read from sysfs. With the `v4l2` feature each node is also asked what it
/// offers (formats, sizes, rates) and nodes that do not capture video are left out; without it
/// every node is listed by name.
pub fn v4l2_nodes() -> Vec<CameraInfo> {
    let Ok(entries) = std::fs::read_dir("/sys/class/video4linux") else {
        return Vec::new();
    };
    // With the v4l2 feature a node whose modes cannot be read is left out (the `?` below).
    #[cfg_attr(not(feature = "v4l2"), allow(clippy::unnecessary_filter_map))]
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

#[cfg(test)]
mod tests {
    #[test]
    fn stream_modes_group_by_size_largest_and_fastest_first() {
        let offered: Vec<super::OfferedStream> = [
            ("depth Z16", 640, 480, 30),
            ("colour RGB8", 640, 480, 30),
            ("depth Z16", 848, 480, 30),
            ("depth Z16", 848, 480, 90),
            ("depth Z16", 640, 480, 6),
            ("depth Z16", 848, 480, 30),
            ("colour RGB8", 1280, 720, 15),
        ]
        .into_iter()
        .map(|(s, w, h, f)| (s.to_string(), w, h, f))
        .collect();
        assert_eq!(
            super::describe_stream_modes(&offered),
            vec![
                "colour RGB8 1280x720 @ 15 fps",
                "colour RGB8 640x480 @ 30 fps",
                "depth Z16 848x480 @ 90, 30 fps",
                "depth Z16 640x480 @ 30, 6 fps",
            ]
        );
    }
}

#[cfg(test)]
mod usb_tests {
    use super::*;

    #[test]
    fn realsense_cameras_are_found_by_vendor_and_product_name() {
        let sys = tempfile::tempdir().unwrap();
        let device = |node: &str, vendor: &str, id: &str, product: &str| {
            let dir = sys.path().join(node);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("idVendor"), format!("{vendor}\n")).unwrap();
            std::fs::write(dir.join("idProduct"), format!("{id}\n")).unwrap();
            std::fs::write(dir.join("product"), format!("{product}\n")).unwrap();
        };
        device(
            "2-1",
            "8086",
            "0b3a",
            "Intel(R) RealSense(TM) Depth Camera 435i",
        );
        device("1-4", "8086", "0aaa", "Intel(R) Wireless Bluetooth(R)");
        device("1-2", "046d", "0825", "Webcam C270");
        // An interface folder: no idVendor.
        std::fs::create_dir_all(sys.path().join("2-1:1.0")).unwrap();
        assert_eq!(
            realsense_on_usb_in(sys.path()),
            vec!["8086:0b3a Intel(R) RealSense(TM) Depth Camera 435i".to_string()]
        );
        assert!(realsense_on_usb_in(&sys.path().join("missing")).is_empty());
    }
}
