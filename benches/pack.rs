//! SpatialBot packing (from our u32 `DepthMm` and from 16-bit millimetres) against a plain
//! memcpy of the same bytes: `cargo bench --bench pack`.
//! The kernels are the ones `spatialbot_edge::cpu::Isa::detected()` picks (printed first);
//! `SBE_ISA=portable` (or another level this CPU runs) times that implementation instead.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spatialbot_edge::rgbd::pack::{pack_into, pack_u16_into};
use spatialbot_edge::rgbd::Encoding;

fn bench_pack(c: &mut Criterion) {
    eprintln!("kernels: {}", spatialbot_edge::cpu::Isa::detected().name());
    for (w, h) in [(640usize, 480usize), (1280, 720)] {
        let depth: Vec<u32> = (0..w * h)
            .map(|i| ((i % w) * 97 + (i / w) * 131) as u32 % 65536)
            .collect();
        let mut out = vec![0u8; w * h * 3];
        let mut group = c.benchmark_group(format!("pack_{w}x{h}"));
        group.throughput(Throughput::Elements((w * h) as u64));
        for enc in [Encoding::SpatialBot, Encoding::Paper] {
            group.bench_function(enc.name(), |b| {
                b.iter(|| pack_into(black_box(&depth), enc, &mut out))
            });
        }
        let depth_u16: Vec<u16> = depth.iter().map(|&d| d as u16).collect();
        group.bench_function("spatialbot_from_u16", |b| {
            b.iter(|| pack_u16_into(black_box(&depth_u16), Encoding::SpatialBot, &mut out))
        });
        let src = vec![7u8; w * h * 3];
        group.bench_function("memcpy_3_bytes_per_pixel", |b| {
            b.iter(|| out.copy_from_slice(black_box(&src)))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_pack);
criterion_main!(benches);
