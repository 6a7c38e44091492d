//! Times `Registrar::register_into` on the benchmark scenes and writes each scene's calibration
//! and depth (uint16 .npy) so scripts/bench-register.sh can time librealsense on the same frames.
//!
//!     cargo run --release --example register_timing -- OUT_DIR [ITERATIONS] [CASE]
//!
//! CASE keeps only the cases whose name contains it. Prints one line per case: `name median_ms`, the median of this thread's CPU time per call
//! (wall time where thread CPU time is unavailable), so that a busy shared machine slows the
//! numbers less.

#[path = "../tests/support/register_scene.rs"]
mod register_scene;

use std::time::Instant;

#[cfg(target_os = "linux")]
fn thread_cpu_seconds() -> Option<f64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_seconds() -> Option<f64> {
    None
}

/// Seconds `f` took: thread CPU time where available, else wall time.
fn time(mut f: impl FnMut()) -> f64 {
    let (c0, t0) = (thread_cpu_seconds(), Instant::now());
    f();
    match (c0, thread_cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => t0.elapsed().as_secs_f64(),
    }
}

use spatialbot_edge::rgbd::{DepthMm, Registrar};

fn npy_u16(d: &DepthMm) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<u2', 'fortran_order': False, 'shape': ({}, {}), }}",
        d.height(),
        d.width()
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for &v in d.as_slice() {
        bytes.extend_from_slice(&(v.min(65535) as u16).to_le_bytes());
    }
    bytes
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let iterations: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let only = args.next();
    std::fs::create_dir_all(&dir)?;
    for (name, calib) in register_scene::reference_cases() {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let depth = register_scene::scene(calib.depth.width, calib.depth.height, 7);
        std::fs::write(dir.join(format!("{name}.toml")), calib.to_toml_string())?;
        std::fs::write(dir.join(format!("{name}.npy")), npy_u16(&depth))?;
        let Ok(registrar) = Registrar::new(&calib) else {
            continue;
        };
        let mut out = DepthMm::zeros(calib.color.width, calib.color.height);
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            times.push(time(|| {
                let _ = registrar.register_into(&depth, &mut out);
            }));
        }
        times.sort_by(f64::total_cmp);
        println!("{name} {:.4}", 1000.0 * times[times.len() / 2]);
    }
    Ok(())
}
