//! `spatialqa` (question sets from the simulated tabletop) and `qa-eval` (a SpatialBot model on
//! a set, ours or SpatialBench's layout), driven through the real binary on the committed
//! held-out set (tests/data/spatialqa-test), a SpatialBench-layout set
//! (tests/data/spatialbench-mini) and broken copies of them.

use std::path::Path;
use std::process::{Command, Output};

use crate::support;
use spatialbot_edge::imageio;

fn run(args: &[&str]) -> Output {
    Command::new(support::bin())
        .args(args)
        .current_dir(support::repo_root())
        .env("NO_COLOR", "1")
        .output()
        .expect("spawn")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json_out(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

/// Checks a generated set: every question's images exist, its first turn has the RGB-D
/// placeholders, and every Depth API reply is the registered depth at (floor(x·W), floor(y·H)).
/// Returns the categories asked and the number of API replies.
fn check_set(dir: &Path) -> (std::collections::BTreeSet<String>, usize) {
    let qa = std::fs::read_to_string(dir.join("questions.jsonl")).unwrap();
    let mut categories = std::collections::BTreeSet::new();
    let mut api_turns = 0;
    for line in qa.lines() {
        let q: serde_json::Value = serde_json::from_str(line).unwrap();
        categories.insert(q["category"].as_str().unwrap().to_string());
        let depth = imageio::read_depth_png(&dir.join(q["depth"].as_str().unwrap())).unwrap();
        assert!(dir.join(q["image"].as_str().unwrap()).is_file());
        let turns = q["conversation"].as_array().unwrap();
        assert!(turns[0]["value"]
            .as_str()
            .unwrap()
            .starts_with("<image 1>\n<image 2>\n"));
        for t in turns.iter().skip(1).filter(|t| t["from"] == "human") {
            for reply in t["value"].as_str().unwrap().lines() {
                let rest = reply.strip_prefix("API: Depth(").unwrap();
                let (xy, value) = rest.split_once(")=").unwrap();
                let (x, y) = xy.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                let col = ((x * depth.width() as f64).floor() as usize).min(depth.width() - 1);
                let row = ((y * depth.height() as f64).floor() as usize).min(depth.height() - 1);
                assert_eq!(
                    depth.get(col, row).unwrap().to_string(),
                    value,
                    "{}",
                    q["id"]
                );
                api_turns += 1;
            }
        }
        if q["category"] == "proximity" {
            check_proximity_reply(&q);
        }
    }
    (categories, api_turns)
}

/// A proximity reply restates the API's two values in the order they were asked, compares them
/// and names the answer: "Since 843 < 904, the red box is closer to the camera."
fn check_proximity_reply(q: &serde_json::Value) {
    let turns = q["conversation"].as_array().unwrap();
    let values: Vec<i64> = turns[2]["value"]
        .as_str()
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once('=').unwrap().1.parse().unwrap())
        .collect();
    let (a, b) = (values[0], values[1]);
    let op = if a < b { '<' } else { '>' };
    let reply = turns[3]["value"].as_str().unwrap();
    let answer = q["answer"].as_str().unwrap();
    assert!(
        reply.starts_with(&format!("Since {a} {op} {b}, {answer} is ")),
        "{reply} ({a}, {b}, {answer})"
    );
    let closer = q["question"].as_str().unwrap().contains("closer");
    let first = q["choices"][0].as_str().unwrap();
    assert_eq!((answer == first), (closer == (a < b)), "{}", q["id"]);
}

/// `--labels`: one scenes.jsonl line per scene, its label map the colour image's size, every
/// value an object index of that scene, the gripper (254) or background (255), and objects seen.
fn check_labels(dir: &Path) {
    let scenes = std::fs::read_to_string(dir.join("scenes.jsonl")).unwrap();
    assert_eq!(scenes.lines().count(), 3);
    let mut object_pixels = 0;
    for line in scenes.lines() {
        let scene: serde_json::Value = serde_json::from_str(line).unwrap();
        let objects = scene["objects"].as_array().unwrap().len();
        assert!(objects >= 2, "{scene}");
        let rgb = imageio::read_rgb_png(&dir.join(scene["image"].as_str().unwrap())).unwrap();
        let file = std::fs::File::open(dir.join(scene["labels"].as_str().unwrap())).unwrap();
        let mut reader = png::Decoder::new(std::io::BufReader::new(file))
            .read_info()
            .unwrap();
        let mut data = vec![0u8; reader.output_buffer_size()];
        let info = reader.next_frame(&mut data).unwrap();
        assert_eq!(
            (info.width as usize, info.height as usize),
            (rgb.width, rgb.height)
        );
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        for &v in &data[..info.buffer_size()] {
            assert!((v as usize) < objects || v >= 254, "label {v} in {scene}");
            object_pixels += usize::from((v as usize) < objects);
        }
        let image = dir.join(scene["image"].as_str().unwrap());
        let twin = dir
            .parent()
            .unwrap()
            .join("a")
            .join(scene["image"].as_str().unwrap());
        assert_eq!(std::fs::read(image).unwrap(), std::fs::read(twin).unwrap());
    }
    assert!(object_pixels > 100, "{object_pixels}");
}

#[test]
fn generation_is_deterministic_and_the_depth_api_values_are_the_depth_images() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    // b also writes the label maps: the questions and images must not change.
    for (out, labels) in [(&a, false), (&b, true)] {
        let mut args = vec![
            "spatialqa",
            "--json",
            "--seeds",
            "7..10",
            "--split",
            "val",
            "--out",
            s(out),
        ];
        if labels {
            args.push("--labels");
        }
        let summary = json_out(&run(&args));
        assert_eq!(summary["scenes"], 3);
    }
    let qa = std::fs::read_to_string(a.join("questions.jsonl")).unwrap();
    assert_eq!(
        qa,
        std::fs::read_to_string(b.join("questions.jsonl")).unwrap()
    );
    assert!(!a.join("scenes.jsonl").exists() && !a.join("labels").exists());
    check_labels(&b);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["schema"], "spatialbot-edge.spatialqa/1");
    assert_eq!(meta["seeds"], serde_json::json!([7, 10]));
    let (categories, api_turns) = check_set(&a);
    assert!(api_turns >= 6, "{api_turns}");
    // The committed held-out set is in the generator's current form too.
    check_set(&support::repo_root().join("tests/data/spatialqa-test"));
    for c in [
        "point_depth",
        "proximity",
        "reaching",
        "counting",
        "existence",
    ] {
        assert!(categories.contains(c), "{c} missing: {categories:?}");
    }
}

#[test]
fn qa_eval_scores_our_set_the_same_every_run_and_writes_results() {
    let tmp = tempfile::tempdir().unwrap();
    let set = support::repo_root().join("tests/data/spatialqa-test");
    let mut runs = Vec::new();
    for k in 0..2 {
        let out = tmp.path().join(format!("run{k}"));
        let o = run(&[
            "qa-eval",
            "--json",
            "--model",
            "models/tiny-spatialbot",
            "--set",
            s(&set),
            "--limit",
            "20",
            "--threads",
            "1",
            "--out",
            s(&out),
        ]);
        let report = json_out(&o);
        assert_eq!(report["layout"], "spatialqa");
        assert_eq!(report["questions"], 20);
        assert_eq!(report["answered"], 20);
        let results = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
        assert_eq!(results.lines().count(), 20);
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(written["per_category"], report["per_category"]);
        let answers: Vec<serde_json::Value> = results
            .lines()
            .map(|l| {
                let r: serde_json::Value = serde_json::from_str(l).unwrap();
                serde_json::json!([r["id"], r["response"], r["correct"], r["depth_calls"]])
            })
            .collect();
        runs.push(answers);
    }
    assert_eq!(runs[0], runs[1], "greedy answers differ between runs");
    // RGB only: one image, Depth API answered "unknown".
    let o = run(&[
        "qa-eval",
        "--json",
        "--no-depth",
        "--model",
        "models/tiny-spatialbot",
        "--set",
        s(&set),
        "--limit",
        "5",
        "--threads",
        "1",
    ]);
    assert_eq!(json_out(&o)["input"], "rgb");
}

#[test]
fn qa_eval_reads_spatialbench_layout_and_counts_what_it_skips() {
    let set = support::repo_root().join("tests/data/spatialbench-mini");
    let o = run(&[
        "qa-eval",
        "--json",
        "--model",
        "models/tiny-spatialbot",
        "--set",
        s(&set),
        "--threads",
        "1",
    ]);
    let report = json_out(&o);
    assert_eq!(report["layout"], "spatialbench");
    assert_eq!(report["questions"], 10);
    assert_eq!(report["answered"], 9);
    assert_eq!(
        report["skipped"]["2 images; the model takes one RGB image and its depth"],
        1
    );
    for file in ["positional", "existence", "counting", "reach"] {
        assert!(report["spatialbench"][file].is_number(), "{file}");
    }
    // One task file alone.
    let o = run(&[
        "qa-eval",
        "--json",
        "--model",
        "models/tiny-spatialbot",
        "--set",
        s(&set.join("counting.json")),
        "--threads",
        "1",
    ]);
    assert_eq!(json_out(&o)["per_category"]["counting"]["answered"], 2);
}

#[test]
fn an_annotated_recording_and_the_synthetic_tabletop_are_sources_too() {
    let tmp = tempfile::tempdir().unwrap();
    // The committed sample recording annotates frames 0, 10 and 45 (objects.json).
    let rec = tmp.path().join("rec");
    let o = run(&[
        "spatialqa",
        "--json",
        "--source",
        "recording:tests/data/sample",
        "--split",
        "test",
        "--out",
        s(&rec),
    ]);
    assert_eq!(json_out(&o)["scenes"], 3);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rec.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["seeds"], serde_json::json!([0, 46]));
    assert_eq!(meta["size"], serde_json::json!([640, 480]));
    let (categories, api_turns) = check_set(&rec);
    assert!(api_turns >= 3, "{api_turns}");
    for c in [
        "point_depth",
        "object_depth",
        "proximity",
        "counting",
        "existence",
        "size",
    ] {
        assert!(categories.contains(c), "{c} missing: {categories:?}");
    }
    assert!(
        !categories.contains("reaching"),
        "no gripper state in an annotation"
    );
    let qa = std::fs::read_to_string(rec.join("questions.jsonl")).unwrap();
    for line in qa.lines() {
        let q: serde_json::Value = serde_json::from_str(line).unwrap();
        if q["category"] == "existence" && q["answer"] == "No" {
            let text = q["question"].as_str().unwrap();
            assert!(
                text.contains("purple box") || text.contains("orange ball"),
                "a No is asked about a name annotated absent: {text}"
            );
        }
    }

    let syn = tmp.path().join("syn");
    let o = run(&[
        "spatialqa",
        "--json",
        "--source",
        "synthetic",
        "--seeds",
        "0..4",
        "--size",
        "160x120",
        "--split",
        "train",
        "--out",
        s(&syn),
    ]);
    assert_eq!(json_out(&o)["scenes"], 4);
    let (categories, _) = check_set(&syn);
    for c in ["point_depth", "object_depth", "counting", "existence"] {
        assert!(categories.contains(c), "{c} missing: {categories:?}");
    }
    assert!(!categories.contains("reaching"));

    // Nonsense: exit 2 naming the file and the field.
    let bad = tmp.path().join("bad");
    copy_dir(&support::repo_root().join("tests/data/sample"), &bad);
    let source = format!("--source=recording:{}", s(&bad));
    for (annotation, field) in [
        (
            r#"{"schema": "spatialbot-edge.objects/1", "frames": [{"frame": 0, "objects": [{"name": "the red box", "bbox": [10, 10, 700, 20]}]}]}"#,
            "frames[0].objects[0].bbox",
        ),
        (
            r#"{"schema": "spatialbot-edge.objects/1", "frames": [{"frame": 99, "objects": []}]}"#,
            "frame 99",
        ),
        (
            r#"{"schema": "spatialbot-edge.objects/1", "frames": [{"frame": 0, "objects": [{"name": "x", "bbox": [1, 1, 2, 2], "mass": 1}]}]}"#,
            "mass",
        ),
    ] {
        std::fs::write(bad.join("objects.json"), annotation).unwrap();
        let o = run(&[
            "spatialqa",
            &source,
            "--split",
            "test",
            "--out",
            s(&tmp.path().join("x")),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{annotation}: {err}");
        assert!(err.contains("objects.json") && err.contains(field), "{err}");
    }
    std::fs::remove_file(bad.join("objects.json")).unwrap();
    let o = run(&[
        "spatialqa",
        &source,
        "--split",
        "test",
        "--out",
        s(&tmp.path().join("x")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("objects.json"));
    let o = run(&[
        "spatialqa",
        "--source",
        "synthetic",
        "--split",
        "test",
        "--out",
        s(&tmp.path().join("x")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--seeds"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn qa_eval_bad_input_exits_2_or_skips_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let src = support::repo_root().join("tests/data/spatialqa-test");
    let text = std::fs::read_to_string(src.join("questions.jsonl")).unwrap();
    let first: Vec<&str> = text.lines().take(3).collect();
    let mk = |name: &str, lines: &[String]| -> std::path::PathBuf {
        let d = tmp.path().join(name);
        copy_dir(&src.join("images"), &d.join("images"));
        copy_dir(&src.join("depth"), &d.join("depth"));
        std::fs::write(d.join("questions.jsonl"), lines.join("\n") + "\n").unwrap();
        let meta = serde_json::json!({
            "schema": "spatialbot-edge.spatialqa/1", "split": "test", "source": "sim",
            "seeds": [300000, 300030], "count": lines.len()
        });
        std::fs::write(d.join("meta.json"), meta.to_string()).unwrap();
        d
    };
    let model = ["--model", "models/tiny-spatialbot", "--threads", "1"];

    // A malformed line: exit 2 naming the file and the line.
    let mut lines: Vec<String> = first.iter().map(|l| l.to_string()).collect();
    lines[1] = "{\"id\": 3".into();
    let d = mk("malformed", &lines);
    let o = run(&[&["qa-eval", "--set", s(&d)][..], &model[..]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("questions.jsonl") && err.contains("line 2"),
        "{err}"
    );

    // An unknown category and a path leaving the set: exit 2 naming the field.
    for (field, value) in [("category", "\"depthish\""), ("image", "\"../x.png\"")] {
        let mut q: serde_json::Value = serde_json::from_str(first[0]).unwrap();
        q[field] = serde_json::from_str(value).unwrap();
        let d = mk(&format!("bad-{field}"), &[q.to_string()]);
        let o = run(&[&["qa-eval", "--set", s(&d)][..], &model[..]].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(field), "{err}");
    }

    // A missing image and a question over the context limit: answered around, counted.
    let mut missing: serde_json::Value = serde_json::from_str(first[0]).unwrap();
    missing["id"] = "missing".into();
    missing["image"] = "images/none.png".into();
    let mut long: serde_json::Value = serde_json::from_str(first[1]).unwrap();
    long["id"] = "long".into();
    long["question"] = "Which is closer? ".repeat(1500).into();
    let d = mk(
        "skips",
        &[missing.to_string(), long.to_string(), first[2].to_string()],
    );
    let o = run(&[&["qa-eval", "--json", "--set", s(&d)][..], &model[..]].concat());
    let report = json_out(&o);
    assert_eq!(report["answered"], 1);
    assert_eq!(report["skipped"]["image"], 1, "{report}");
    assert_eq!(report["skipped"]["over the context limit"], 1, "{report}");

    // Not a set at all.
    let o = run(&[&["qa-eval", "--set", s(tmp.path())][..], &model[..]].concat());
    assert_eq!(o.status.code(), Some(2));
}
