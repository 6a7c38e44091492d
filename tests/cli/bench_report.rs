//! The bench library: quantiles against numpy, reports round-trip through JSON, comparisons,
//! the SVG plot, and the `bench` command line.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support;
use spatialbot_edge::telemetry::{
    self, stage, FrameStamps, LatencyHistogram, Report, RunInfo, StageRecorder,
};

fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn quantiles_agree_with_numpy_inverted_cdf() {
    let Some(py) = support::reference_python() else {
        return;
    };
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for case in 0..5 {
        // Log-uniform latencies from 1 µs to 10 s, like a mix of fast and slow stages.
        let n = 1 + (xorshift(&mut seed) % 5000) as usize;
        let values: Vec<u64> = (0..n)
            .map(|_| {
                let u = (xorshift(&mut seed) >> 11) as f64 / (1u64 << 53) as f64;
                (1e3 * 10f64.powf(u * 7.0)) as u64
            })
            .collect();
        let mut h = LatencyHistogram::new();
        values.iter().for_each(|&v| h.record_ns(v));
        let text: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let code = "import sys, numpy as np\nv = np.array([int(x) for x in sys.stdin.read().split()], dtype=np.float64)\nprint(' '.join(repr(float(np.percentile(v, q, method='inverted_cdf'))) for q in (0, 50, 90, 99, 100)))";
        let mut child = Command::new(&py)
            .arg("-c")
            .arg(code)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.join(" ").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let want: Vec<f64> = String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        for (q, w) in [0.0, 0.5, 0.9, 0.99, 1.0].iter().zip(&want) {
            let got = h.quantile_ns(*q).unwrap() as f64;
            assert!(
                (got - w).abs() / w <= 1.0 / 128.0,
                "case {case} n {n} q {q}: {got} vs numpy {w}"
            );
        }
    }
}

fn sample_report(scale: f64) -> Report {
    let t0 = Instant::now();
    let mut rec = StageRecorder::with_epoch(t0, 500);
    for n in 0..200u64 {
        let origin = t0 + Duration::from_millis(n * 40);
        let mut f = FrameStamps::start_at(n, origin);
        f.mark_at(
            stage::CAMERA,
            origin + Duration::from_secs_f64(0.002 * scale),
        );
        f.mark_at(
            "pack",
            origin + Duration::from_secs_f64((0.002 + 0.001 * (1 + n % 5) as f64) * scale),
        );
        rec.record_frame(&f);
    }
    rec.record_dropped(stage::CAMERA, 3);
    rec.record_graph_backend("vision", "tract-cpu", "cpu");
    rec.record_startup(Duration::from_millis((1500.0 * scale) as u64));
    let mut r = rec.report(RunInfo {
        board: "dev-x86_64".into(),
        camera: "synthetic".into(),
        ..Default::default()
    });
    r.set_wall_s(8.0);
    r
}

#[test]
fn report_round_trips_through_json_and_rejects_other_schemas() {
    let r = sample_report(1.0);
    assert_eq!(r.frames.measured, 200);
    assert_eq!(r.frames.dropped, 3);
    assert_eq!(r.fps, 25.0);
    assert!(r.peak_rss_mb.is_some());
    let text = serde_json::to_string(&r).unwrap();
    let back = Report::from_json(&text, "r.json").unwrap();
    assert_eq!(
        (&back.frames, &back.board, &back.graphs, back.stages.len()),
        (&r.frames, &r.board, &r.graphs, r.stages.len())
    );
    for (x, y) in back.all_stages().zip(r.all_stages()) {
        assert_eq!(
            (&x.name, x.count, x.series.len()),
            (&y.name, y.count, y.series.len())
        );
        assert!((x.p99_ms - y.p99_ms).abs() <= 1e-12 * y.p99_ms.abs().max(1.0));
    }

    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["schema"] = "something-else/9".into();
    v["a_future_field"] = 1.into();
    let err = Report::from_json(&v.to_string(), "old.json")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("old.json") && err.contains("something-else/9"),
        "{err}"
    );
    v["schema"] = telemetry::SCHEMA.into();
    assert!(
        Report::from_json(&v.to_string(), "new.json").is_ok(),
        "unknown fields must be ignored"
    );
}

#[test]
fn compare_gives_per_stage_ratios() {
    let a = sample_report(1.0);
    let b = sample_report(2.0);
    let c = telemetry::compare(&a, "a.json", &b, "b.json");
    let names: Vec<_> = c.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["camera", "pack", "end_to_end"]);
    for s in &c.stages {
        let r = s.ratio_p50.unwrap();
        assert!((r - 2.0).abs() < 0.03, "{}: {r}", s.name);
    }
    assert!((c.ratio_startup.unwrap() - 2.0).abs() < 1e-9);
    assert!(c.to_text().contains("p50 B/A"));
}

#[test]
fn svg_plot_is_well_formed_with_one_line_per_stage() {
    let r = sample_report(1.0);
    let svg = telemetry::svg::latency_plot(&r);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 3);
    if let Some(py) = support::reference_python() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plot.svg");
        std::fs::write(&p, &svg).unwrap();
        let out = support::run_python(
            &py,
            "import sys, xml.etree.ElementTree as ET\nroot = ET.parse(sys.argv[1]).getroot()\nprint(len(root.findall('{http://www.w3.org/2000/svg}polyline')))",
            &[p.to_str().unwrap()],
        );
        assert_eq!(String::from_utf8(out).unwrap().trim(), "3");
    }
}

#[test]
fn bench_compare_command_prints_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    std::fs::write(&a, serde_json::to_string(&sample_report(1.0)).unwrap()).unwrap();
    std::fs::write(&b, serde_json::to_string(&sample_report(0.5)).unwrap()).unwrap();
    let out = Command::new(support::bin())
        .args(["bench", "--compare"])
        .arg(&a)
        .arg(&b)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ratio = v["stages"][0]["ratio_p50"].as_f64().unwrap();
    assert!((ratio - 0.5).abs() < 0.02, "{v}");

    let out = Command::new(support::bin())
        .args(["bench", "--compare"])
        .arg(&a)
        .arg(dir.path().join("missing.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
}

fn stage<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
}

fn bench_json(args: &[&str]) -> (std::process::Output, serde_json::Value) {
    let out = Command::new(support::bin())
        .arg("bench")
        .args(args)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, v)
}

#[test]
fn bench_reports_what_it_ran_and_what_it_did_not() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let (out, v) = bench_json(&[
        "--json",
        "--frames",
        "3",
        "--warmup",
        "1",
        "--max-new-tokens",
        "3",
        "--out",
        out_dir,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v["schema"], telemetry::SCHEMA);
    assert_eq!(v["board"], "dev-x86_64");
    let ran: Vec<&str> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let skipped: Vec<&str> = v["stages_not_run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for name in [
        "camera",
        "register",
        "preprocess",
        "vision",
        "prefill",
        "decode",
        "generate",
        "action",
        "link",
    ] {
        assert!(
            ran.contains(&name) != skipped.contains(&name),
            "{name} must be either run or listed as not run"
        );
    }
    // The dev profile's policy is the shipped tiny policy, which takes colour only: the loop
    // registers no depth for it; every other stage runs (the packing of depth is part of
    // `preprocess` for a policy that takes depth).
    assert_eq!(
        ran,
        [
            "camera",
            "preprocess",
            "vision",
            "prefill",
            "decode",
            "generate",
            "action",
            "link",
            "end_to_end"
        ],
        "{v}"
    );
    assert_eq!(skipped, ["register"], "{v}");
    // /proc gives the process start in 10 ms ticks: a number, possibly 0 on a fast machine.
    assert!(
        v["startup"]["first_action_ms"]
            .as_f64()
            .is_some_and(|ms| ms >= 0.0),
        "{v}"
    );
    assert!(v["peak_rss_mb"].as_f64().is_some_and(|mb| mb > 0.0), "{v}");
    assert_eq!(v["frames"]["measured"], 3);
    let model = &v["model"];
    assert_eq!(model["name"], "tiny-policy", "{v}");
    assert_eq!(model["kind"], "policy");
    // The tiny policy takes colour only: one image per frame, each through the vision graph
    // once (the embedding cache keeps the older frames of the prompt's history).
    assert_eq!(model["images_per_frame"], 1);
    for s in v["stages"].as_array().unwrap() {
        match s["per"].as_str().unwrap() {
            "frame" => assert_eq!(s["count"], 3, "{s}"),
            "image" => assert_eq!(s["count"], 3, "{s}"),
            "token" => assert!(s["count"].as_u64().unwrap() <= 3 * 2, "{s}"),
            other => panic!("unknown per {other}"),
        }
    }
    let prefill = stage(&v, "prefill").unwrap()["count"].as_u64().unwrap();
    let decode = stage(&v, "decode").unwrap()["count"].as_u64().unwrap();
    assert_eq!(prefill, 3);
    assert_eq!(model["generated_tokens"].as_u64(), Some(prefill + decode));
    assert!(model["prefill_positions"].as_u64().unwrap() > 0);
    let graphs: Vec<(&str, &str)> = v["graphs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["graph"].as_str().unwrap(),
                g["provider"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        graphs,
        [("vision", "cpu"), ("embed", "cpu"), ("decoder", "cpu")],
        "{v}"
    );
    assert!(dir.path().join("report.json").exists());
    let svg = std::fs::read_to_string(dir.path().join("latency.svg")).unwrap();
    assert!(svg.contains("decode/token"), "{svg}");

    // The written report compares with itself: every ratio 1.
    let json = dir.path().join("report.json");
    let out = Command::new(support::bin())
        .args(["bench", "--json", "--compare"])
        .arg(&json)
        .arg(&json)
        .output()
        .unwrap();
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = c["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"decode") && names.contains(&"vision"),
        "{c}"
    );
}

#[test]
fn bench_runs_a_spatialbot_model_with_two_images_per_frame() {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/tiny-spatialbot");
    let (out, v) = bench_json(&[
        "--json",
        "--frames",
        "2",
        "--warmup",
        "0",
        "--max-new-tokens",
        "2",
        "--model",
        model,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v["model"]["kind"], "spatialbot", "{v}");
    assert_eq!(v["model"]["images_per_frame"], 2);
    let vision = stage(&v, "vision").unwrap();
    assert_eq!(vision["per"], "image");
    assert_eq!(vision["count"], 4, "colour and packed depth per frame: {v}");
    assert!(stage(&v, "action").is_none());
    assert!(v["stages_not_run"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "action"));
}

#[test]
fn bench_without_a_model_lists_the_model_stages_as_not_run() {
    let (out, v) = bench_json(&["--json", "--frames", "2", "--warmup", "0", "--no-model"]);
    assert!(out.status.success());
    for name in ["vision", "prefill", "decode", "generate", "action"] {
        assert!(stage(&v, name).is_none(), "{name}: {v}");
    }
    // The model stages, and `register` (the dev profile's policy takes colour only).
    let skipped: Vec<&str> = v["stages_not_run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        skipped,
        ["register", "vision", "prefill", "decode", "generate", "action"],
        "{v}"
    );
    assert!(v["model"].is_null());
}

#[test]
fn bench_refuses_a_gpu_only_profile_this_build_cannot_run() {
    if cfg!(feature = "ort") {
        return;
    }
    let out = Command::new(support::bin())
        .args(["bench", "--frames", "1", "--board", "jetson-orin-nx-16gb"])
        .args(["--camera", "synthetic,fast"])
        .args([
            "--model",
            concat!(env!("CARGO_MANIFEST_DIR"), "/models/tiny-policy"),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("jetson-orin-nx-16gb.toml"), "{err}");
    assert!(err.contains("--features ort"), "{err}");
}
