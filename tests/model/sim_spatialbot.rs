//! models/sim-spatialbot (trained on SpatialQA from the simulated tabletop, docs/spatialqa.md):
//! `ask` on a frame of the `sim:` camera answers a point-depth question through a Depth API
//! call at the asked coordinates, and its answer carries the millimetres the frame's registered
//! depth holds there (read here through the library's own camera, independently of the model).

use std::process::Command;

use crate::support;
use spatialbot_edge::camera::{self, CameraSpec, OpenOptions};

/// The registered depth at (floor(x·W), floor(y·H)) of the first frame of `spec`.
fn depth_at(spec: &str, x: f64, y: f64) -> u32 {
    let parsed: CameraSpec = spec.parse().unwrap();
    let mut source = camera::open(&parsed, &OpenOptions::with_register(true)).unwrap();
    let frame = source.next_frame().unwrap().unwrap();
    let depth = frame.depth.registered().unwrap();
    let col = ((x * depth.width() as f64).floor() as usize).min(depth.width() - 1);
    let row = ((y * depth.height() as f64).floor() as usize).min(depth.height() - 1);
    depth.get(col, row).unwrap()
}

#[test]
fn ask_on_a_sim_frame_answers_depth_through_the_depth_api() {
    let model = support::repo_root().join("models/sim-spatialbot");
    for (seed, x_asked, y_asked) in [(300101u64, "0.50", "0.70"), (300102, "0.31", "0.44")] {
        let spec = format!("sim:reach,seed={seed},size=128x96,fast");
        let question = format!("What is the depth value of point <{x_asked},{y_asked}>?");
        let out = Command::new(support::bin())
            .args(["ask", "--json", "--threads", "1", "--model"])
            .arg(&model)
            .args(["--camera", &spec, &question])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let rounds = report["rounds"].as_array().unwrap();
        assert_eq!(
            rounds.len(),
            2,
            "one Depth API round, then the answer: {report}"
        );
        let calls = rounds[0]["calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "{report}");
        // The model calls the API at the asked point, and the API's value is the frame's
        // registered depth there (read independently of the model).
        assert_eq!(calls[0]["x"], x_asked, "{report}");
        assert_eq!(calls[0]["y"], y_asked, "{report}");
        let mm = depth_at(&spec, x_asked.parse().unwrap(), y_asked.parse().unwrap());
        assert_eq!(calls[0]["mm"], mm, "{report}");
        assert!(rounds[0]["reply"]
            .as_str()
            .unwrap()
            .starts_with("API: Depth("));
        // …and the answer reports those millimetres.
        assert!(
            report["answer"]
                .as_str()
                .unwrap()
                .ends_with(&format!(" {mm} mm.")),
            "{report}"
        );
    }
}
