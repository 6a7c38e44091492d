//! Registration speed, one thread: `cargo bench --bench register`.
//! scripts/bench-register.sh times librealsense's `align` on the same frames for the ratio.
//! The kernels are the ones `spatialbot_edge::cpu::Isa::detected()` picks (printed first);
//! `SBE_ISA=portable` (or another level this CPU runs) times that implementation instead.

#[path = "../tests/support/register_scene.rs"]
mod register_scene;

use criterion::{criterion_group, criterion_main, Criterion};
use spatialbot_edge::rgbd::{DepthMm, Registrar};

fn bench_register(c: &mut Criterion) {
    eprintln!("kernels: {}", spatialbot_edge::cpu::Isa::detected().name());
    let mut group = c.benchmark_group("register");
    for (name, calib) in register_scene::reference_cases() {
        let registrar = Registrar::new(&calib).expect("valid calibration");
        let depth = register_scene::scene(calib.depth.width, calib.depth.height, 7);
        let mut out = DepthMm::zeros(calib.color.width, calib.color.height);
        group.bench_function(name, |b| {
            b.iter(|| {
                registrar
                    .register_into(&depth, &mut out)
                    .expect("sizes match")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_register);
criterion_main!(benches);
