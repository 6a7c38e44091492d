//! Pad + Pillow-exact bicubic resize + normalise, 640×480 → 384×384 (SigLIP) and CLIP 336.
//! The kernels are the ones `spatialbot_edge::cpu::Isa::detected()` picks (printed first);
//! `SBE_ISA=portable` (or another level this CPU runs) times that implementation instead.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use spatialbot_edge::preprocess::{BicubicResize, Preprocessor, Tower};
use spatialbot_edge::rgbd::RgbImage;

fn frame(w: usize, h: usize) -> RgbImage {
    let data: Vec<u8> = (0..h)
        .flat_map(|y| {
            (0..w).flat_map(move |x| {
                [
                    (x * 3 % 256) as u8,
                    (y * 5 % 256) as u8,
                    ((x + y) * 7 % 256) as u8,
                ]
            })
        })
        .collect();
    RgbImage::new(w, h, data).expect("w * h * 3 bytes")
}

fn bench_preprocess(c: &mut Criterion) {
    eprintln!("kernels: {}", spatialbot_edge::cpu::Isa::detected().name());
    let rgb = frame(640, 480);
    let mut group = c.benchmark_group("preprocess_640x480");
    for (name, tower, pad) in [
        ("siglip_pad", Tower::Siglip, true),
        ("siglip_squash", Tower::Siglip, false),
        ("clip", Tower::Clip, false),
    ] {
        let mut pre = Preprocessor::new(tower, tower.default_size(), pad).expect("valid size");
        group.bench_function(name, |b| b.iter(|| pre.tensor(black_box(&rgb))));
        let mut out = Vec::new();
        group.bench_function(format!("{name}_into_reused_buffer"), |b| {
            b.iter(|| pre.tensor_into(black_box(&rgb), &mut out))
        });
    }
    let portrait = frame(480, 640);
    let mut pre = Preprocessor::new(Tower::Clip, 336, false).expect("valid size");
    let mut out = Vec::new();
    group.bench_function("clip_portrait_480x640_into", |b| {
        b.iter(|| pre.tensor_into(black_box(&portrait), &mut out))
    });
    let square = frame(640, 640);
    let resize = BicubicResize::new(640, 640, 384, 384).expect("valid sizes");
    let mut scratch = Vec::new();
    group.bench_function("resize_only_640sq_to_384", |b| {
        b.iter(|| resize.apply_with(black_box(&square), &mut scratch))
    });
    group.finish();
}

criterion_group!(benches, bench_preprocess);
criterion_main!(benches);
