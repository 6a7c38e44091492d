//! The x86_64 kernels: SSSE3, AVX2 and AVX-512 depth packing, and registration's portable
//! steps compiled for AVX2 and for AVX-512. `rgbd::kernels` calls them only with an `Isa` that
//! says the CPU has the instruction set each is compiled for.

use std::arch::x86_64::*;

/// Stores four groups of 12 packed bytes (the low 12 bytes of each vector) as 48 contiguous
/// bytes.
#[target_feature(enable = "ssse3")]
#[inline]
fn store_48(rgb: &[__m128i; 4], d: &mut [u8]) {
    assert!(d.len() >= 48);
    let o0 = _mm_or_si128(rgb[0], _mm_slli_si128(rgb[1], 12));
    let o1 = _mm_or_si128(_mm_srli_si128(rgb[1], 4), _mm_slli_si128(rgb[2], 8));
    let o2 = _mm_or_si128(_mm_srli_si128(rgb[2], 8), _mm_slli_si128(rgb[3], 4));
    // SAFETY: `d` holds at least 48 bytes (asserted); the three stores cover bytes 0..48.
    unsafe {
        _mm_storeu_si128(d.as_mut_ptr() as *mut __m128i, o0);
        _mm_storeu_si128(d.as_mut_ptr().add(16) as *mut __m128i, o1);
        _mm_storeu_si128(d.as_mut_ptr().add(32) as *mut __m128i, o2);
    }
}

/// 16 pixels per step: saturate, build `R | G << 8 | B << 16` per 32-bit lane, then drop
/// every fourth byte with `pshufb` and store 48 bytes. With `d <= MAX`:
/// `(d >> 10) << SHIFT == (d >> (10 - SHIFT)) & (0xFF << SHIFT)`,
/// `((d >> 5) & 31) << 3 << 8 == (d << 6) & 0xF800`, `(d & 31) << 3 << 16 == (d << 19) & 0xF8_0000`.
///
/// # Safety
/// The CPU must support SSSE3.
#[target_feature(enable = "ssse3")]
pub(super) unsafe fn pack_ssse3<const MAX: u32, const SHIFT: u32>(
    depth_mm: &[u32],
    out: &mut [u8],
) -> usize {
    let drop_fourth = _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
    let max = _mm_set1_epi32(MAX as i32);
    let sign = _mm_set1_epi32(i32::MIN);
    let max_flipped = _mm_set1_epi32((MAX ^ 0x8000_0000) as i32);
    let mask_r = _mm_set1_epi32((0xFFu32 << SHIFT & 0xFF) as i32);
    let mask_g = _mm_set1_epi32(0xF800);
    let mask_b = _mm_set1_epi32(0xF8_0000);
    let shift_r = _mm_cvtsi32_si128((10 - SHIFT) as i32);
    let mut saturated = _mm_setzero_si128();
    let mut src = depth_mm.chunks_exact(16);
    let mut dst = out.chunks_exact_mut(48);
    for (s, d) in (&mut src).zip(&mut dst) {
        let mut rgb = [_mm_setzero_si128(); 4];
        for (q, lane) in rgb.iter_mut().enumerate() {
            // SAFETY: `s` holds 16 u32, so 4 * q + 4 <= 16 values are read.
            let mm = unsafe { _mm_loadu_si128(s.as_ptr().add(4 * q) as *const __m128i) };
            // With the sign bits flipped the signed compare is the unsigned one (SSSE3 has no
            // unsigned compare or min).
            let over = _mm_cmpgt_epi32(_mm_xor_si128(mm, sign), max_flipped);
            saturated = _mm_sub_epi32(saturated, over);
            let mm = _mm_or_si128(_mm_andnot_si128(over, mm), _mm_and_si128(over, max));
            let r = _mm_and_si128(_mm_srl_epi32(mm, shift_r), mask_r);
            let g = _mm_and_si128(_mm_slli_epi32(mm, 6), mask_g);
            let b = _mm_and_si128(_mm_slli_epi32(mm, 19), mask_b);
            *lane = _mm_shuffle_epi8(_mm_or_si128(_mm_or_si128(r, g), b), drop_fourth);
        }
        store_48(&rgb, d);
    }
    let mut lanes = [0u32; 4];
    // SAFETY: `lanes` is 16 bytes.
    unsafe { _mm_storeu_si128(lanes.as_mut_ptr() as *mut __m128i, saturated) };
    lanes.iter().map(|&n| n as usize).sum::<usize>()
        + super::portable::pack::<MAX, SHIFT, u32>(src.remainder(), dst.into_remainder())
}

/// The SSSE3 kernel with the arithmetic on 8 lanes; `pshufb` works per 128-bit half, so the
/// halves are split before the 48-byte store.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pack_avx2<const MAX: u32, const SHIFT: u32>(
    depth_mm: &[u32],
    out: &mut [u8],
) -> usize {
    let drop_fourth = _mm256_setr_epi8(
        0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1, 0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13,
        14, -1, -1, -1, -1,
    );
    let max = _mm256_set1_epi32(MAX as i32);
    let sign = _mm256_set1_epi32(i32::MIN);
    let max_flipped = _mm256_set1_epi32((MAX ^ 0x8000_0000) as i32);
    let mask_r = _mm256_set1_epi32((0xFFu32 << SHIFT & 0xFF) as i32);
    let mask_g = _mm256_set1_epi32(0xF800);
    let mask_b = _mm256_set1_epi32(0xF8_0000);
    let shift_r = _mm_cvtsi32_si128((10 - SHIFT) as i32);
    let mut saturated = _mm256_setzero_si256();
    let mut src = depth_mm.chunks_exact(16);
    let mut dst = out.chunks_exact_mut(48);
    for (s, d) in (&mut src).zip(&mut dst) {
        let mut rgb = [_mm_setzero_si128(); 4];
        for half in 0..2 {
            // SAFETY: `s` holds 16 u32, so 8 * half + 8 <= 16 values are read.
            let mm = unsafe { _mm256_loadu_si256(s.as_ptr().add(8 * half) as *const __m256i) };
            // With the sign bits flipped the signed compare is the unsigned one.
            let over = _mm256_cmpgt_epi32(_mm256_xor_si256(mm, sign), max_flipped);
            saturated = _mm256_sub_epi32(saturated, over);
            let mm = _mm256_min_epu32(mm, max);
            let r = _mm256_and_si256(_mm256_srl_epi32(mm, shift_r), mask_r);
            let g = _mm256_and_si256(_mm256_slli_epi32(mm, 6), mask_g);
            let b = _mm256_and_si256(_mm256_slli_epi32(mm, 19), mask_b);
            let packed =
                _mm256_shuffle_epi8(_mm256_or_si256(_mm256_or_si256(r, g), b), drop_fourth);
            rgb[2 * half] = _mm256_castsi256_si128(packed);
            rgb[2 * half + 1] = _mm256_extracti128_si256(packed, 1);
        }
        store_48(&rgb, d);
    }
    let mut lanes = [0u32; 8];
    // SAFETY: `lanes` is 32 bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, saturated) };
    lanes.iter().map(|&n| n as usize).sum::<usize>()
        + super::portable::pack::<MAX, SHIFT, u32>(src.remainder(), dst.into_remainder())
}
/// Where each output byte comes from, for 16 pixels: `words_lo` holds pixels 0..8 and
/// `words_hi` pixels 8..16 as one `G | R << 8` word each, `blues` their 16 B bytes. Output
/// vector `k` (bytes 16k..16k+16) is the OR of `pshufb`s of those sources by
/// `SOURCES[k]`'s tables (-1 = zero).
const fn byte_sources() -> [[i8; 16]; 7] {
    let mut tables = [[-1i8; 16]; 7];
    let mut k = 0;
    while k < 48 {
        let (pixel, channel, vector) = (k / 3, k % 3, k / 16);
        let (table, byte) = match (channel, pixel < 8) {
            (2, _) => ([1, 4, 6][vector], pixel),
            // R is the high byte of the word, G the low one.
            (_, true) => ([0, 2, usize::MAX][vector], 2 * pixel + 1 - channel),
            (_, false) => ([usize::MAX, 3, 5][vector], 2 * (pixel - 8) + 1 - channel),
        };
        tables[table][k % 16] = byte as i8;
        k += 1;
    }
    tables
}
const BYTE_SOURCES: [[i8; 16]; 7] = byte_sources();

/// The shuffle tables, the same in both 128-bit halves.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn shuffle_tables() -> [__m256i; 7] {
    BYTE_SOURCES.map(|t| {
        // SAFETY: `t` is 16 bytes.
        _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(t.as_ptr() as *const __m128i) })
    })
}

/// Packs 32 pixels of 16-bit millimetres into 96 bytes at `dst`. The 128-bit halves of
/// `first` and `second` hold pixels (0..8, 16..24) and (8..16, 24..32): `pshufb` works
/// within halves, so each half is one group of 16 pixels. With 16-bit `d`:
/// `R << 8 == (d >> (2 - SHIFT)) & (R mask << 8)`, `G == (d >> 2) & 0xF8`, and
/// `B == (d & 31) << 3`, shifted after narrowing to bytes (no carry between bytes).
///
/// # Safety
/// The CPU must support AVX2 and `dst` must be valid for 96 bytes of writes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn pack_32_words<const SHIFT: u32>(
    first: __m256i,
    second: __m256i,
    tables: &[__m256i; 7],
    dst: *mut u8,
) {
    let mask_r = _mm256_set1_epi16((((0xFFu16 << SHIFT) & 0xFF) << 8) as i16);
    let mask_g = _mm256_set1_epi16(0xF8);
    let mask_b = _mm256_set1_epi16(31);
    let shift_r = _mm_cvtsi32_si128((2 - SHIFT) as i32);
    let gr = |d: __m256i| {
        _mm256_or_si256(
            _mm256_and_si256(_mm256_srl_epi16(d, shift_r), mask_r),
            _mm256_and_si256(_mm256_srli_epi16(d, 2), mask_g),
        )
    };
    let (lo, hi) = (gr(first), gr(second));
    let blues = _mm256_slli_epi16(
        _mm256_packus_epi16(
            _mm256_and_si256(first, mask_b),
            _mm256_and_si256(second, mask_b),
        ),
        3,
    );
    let t = tables;
    let o0 = _mm256_or_si256(
        _mm256_shuffle_epi8(lo, t[0]),
        _mm256_shuffle_epi8(blues, t[1]),
    );
    let o1 = _mm256_or_si256(
        _mm256_or_si256(_mm256_shuffle_epi8(lo, t[2]), _mm256_shuffle_epi8(hi, t[3])),
        _mm256_shuffle_epi8(blues, t[4]),
    );
    let o2 = _mm256_or_si256(
        _mm256_shuffle_epi8(hi, t[5]),
        _mm256_shuffle_epi8(blues, t[6]),
    );
    // SAFETY: the caller guarantees 96 writable bytes at `dst`.
    unsafe {
        _mm256_storeu_si256(dst as *mut __m256i, _mm256_permute2x128_si256(o0, o1, 0x20));
        _mm256_storeu_si256(
            dst.add(32) as *mut __m256i,
            _mm256_permute2x128_si256(o2, o0, 0x30),
        );
        _mm256_storeu_si256(
            dst.add(64) as *mut __m256i,
            _mm256_permute2x128_si256(o1, o2, 0x31),
        );
    }
}

/// 16-bit millimetres, 32 pixels per step. Nothing saturates: every u16 is in range.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pack_u16_avx2<const SHIFT: u32>(depth_mm: &[u16], out: &mut [u8]) {
    let tables = shuffle_tables();
    let mut src = depth_mm.chunks_exact(32);
    let mut dst = out.chunks_exact_mut(96);
    for (s, d) in (&mut src).zip(&mut dst) {
        let p = s.as_ptr() as *const __m128i;
        // SAFETY: `s` holds 32 u16 (four 16-byte blocks), `d` 96 bytes.
        unsafe {
            let first = _mm256_loadu2_m128i(p.add(2), p);
            let second = _mm256_loadu2_m128i(p.add(3), p.add(1));
            pack_32_words::<SHIFT>(first, second, &tables, d.as_mut_ptr());
        }
    }
    super::portable::pack::<{ u16::MAX as u32 }, SHIFT, u16>(src.remainder(), dst.into_remainder());
}

/// The SpatialBot encoding from 32-bit millimetres: `pminud` + `packusdw` narrow to u16
/// saturating at 65535, which is exactly the encoding's saturation, then as `pack_u16_avx2`.
/// Saturated pixels are rare: an OR of all inputs says whether any exists, and only then
/// are they counted.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pack_u32_narrowing_avx2<const SHIFT: u32>(
    depth_mm: &[u32],
    out: &mut [u8],
) -> usize {
    let tables = shuffle_tables();
    let u16_max = _mm256_set1_epi32(0xFFFF);
    let mut any = _mm256_setzero_si256();
    let mut src = depth_mm.chunks_exact(32);
    let mut dst = out.chunks_exact_mut(96);
    for (s, d) in (&mut src).zip(&mut dst) {
        let p = s.as_ptr() as *const __m128i;
        // SAFETY: `s` holds 32 u32 (eight 16-byte blocks), `d` 96 bytes.
        unsafe {
            let pair = |lo: usize| _mm256_loadu2_m128i(p.add(lo + 4), p.add(lo));
            let (q0, q1, q2, q3) = (pair(0), pair(1), pair(2), pair(3));
            any = _mm256_or_si256(
                any,
                _mm256_or_si256(_mm256_or_si256(q0, q1), _mm256_or_si256(q2, q3)),
            );
            // Lanes: (0..4, 4..8 | 16..20, 20..24) and (8..12, 12..16 | 24..28, 28..32).
            // `packusdw` saturates signed values: clamp to 65535 first so that depths of
            // 2^31 and above saturate too.
            let clamp = |q| _mm256_min_epu32(q, u16_max);
            let first = _mm256_packus_epi32(clamp(q0), clamp(q1));
            let second = _mm256_packus_epi32(clamp(q2), clamp(q3));
            pack_32_words::<SHIFT>(first, second, &tables, d.as_mut_ptr());
        }
    }
    let above_u16 = _mm256_srli_epi32(any, 16);
    let saturated = if _mm256_testz_si256(above_u16, above_u16) == 1 {
        0
    } else {
        depth_mm[..depth_mm.len() - src.remainder().len()]
            .iter()
            .filter(|&&d| d > u16::MAX as u32)
            .count()
    };
    saturated
        + super::portable::pack::<{ u16::MAX as u32 }, SHIFT, u32>(
            src.remainder(),
            dst.into_remainder(),
        )
}

/// Byte permutations for 64 pixels: `gr0`/`gr1` hold pixels 0..32 / 32..64 as `G | R << 8`
/// words, `blues` the 64 B bytes. Output vector 0 (pixels 0..21⅓) permutes `gr0 ‖ blues`,
/// vector 2 (42⅔..64) `gr1 ‖ blues`, vector 1 `gr0 ‖ gr1` and then merges its B bytes from
/// `blues` under `B_LANES`. In a two-source table index 64 + i is byte i of the second.
const fn vbmi_tables() -> ([[u8; 64]; 4], u64) {
    let mut t = [[0u8; 64]; 4];
    let mut b_lanes = 0u64;
    let mut k = 0;
    while k < 192 {
        let (pixel, channel, vector, lane) = (k / 3, k % 3, k / 64, k % 64);
        // R is the high byte of a pixel's word, G the low one.
        let r_or_g = if channel == 0 { 1 } else { 0 };
        match (vector, channel) {
            (0, 2) | (2, 2) => t[vector][lane] = (64 + pixel) as u8,
            (0, _) => t[0][lane] = (2 * pixel + r_or_g) as u8,
            (2, _) => t[2][lane] = (2 * (pixel - 32) + r_or_g) as u8,
            (_, 2) => {
                t[3][lane] = pixel as u8;
                b_lanes |= 1 << lane;
            }
            // gr0 ‖ gr1 is 128 contiguous bytes, two per pixel.
            _ => t[1][lane] = (2 * pixel + r_or_g) as u8,
        }
        k += 1;
    }
    (t, b_lanes)
}
const VBMI_TABLES: ([[u8; 64]; 4], u64) = vbmi_tables();

/// As `pack_32_words`, on 64 pixels with AVX-512 VBMI byte permutes (`vpermt2b`): 5
/// permutes and 3 full-width stores per 64 pixels instead of 14 `pshufb`s and 6 stores.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VBMI and `dst` must be valid for 192 bytes of writes.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
#[inline]
unsafe fn pack_64_words<const SHIFT: u32>(
    d0: __m512i,
    d1: __m512i,
    tables: &[__m512i; 4],
    b_lanes: __mmask64,
    dst: *mut u8,
) {
    let mask_r = _mm512_set1_epi16((((0xFFu16 << SHIFT) & 0xFF) << 8) as i16);
    let mask_g = _mm512_set1_epi16(0xF8);
    let mask_b = _mm512_set1_epi16(31);
    let shift_r = _mm_cvtsi32_si128((2 - SHIFT) as i32);
    let gr = |d: __m512i| {
        _mm512_or_si512(
            _mm512_and_si512(_mm512_srl_epi16(d, shift_r), mask_r),
            _mm512_and_si512(_mm512_srli_epi16::<2>(d), mask_g),
        )
    };
    let blue_words = |d: __m512i| _mm512_slli_epi16::<3>(_mm512_and_si512(d, mask_b));
    let (gr0, gr1) = (gr(d0), gr(d1));
    // Even bytes of the two word vectors: the 64 B values in pixel order.
    let evens = _mm512_set_epi64(
        0x7E7C7A7876747270,
        0x6E6C6A6866646260,
        0x5E5C5A5856545250,
        0x4E4C4A4846444240,
        0x3E3C3A3836343230,
        0x2E2C2A2826242220,
        0x1E1C1A1816141210,
        0x0E0C0A0806040200,
    );
    let blues = _mm512_permutex2var_epi8(blue_words(d0), evens, blue_words(d1));
    let o0 = _mm512_permutex2var_epi8(gr0, tables[0], blues);
    let o1 = _mm512_mask_permutexvar_epi8(
        _mm512_permutex2var_epi8(gr0, tables[1], gr1),
        b_lanes,
        tables[3],
        blues,
    );
    let o2 = _mm512_permutex2var_epi8(gr1, tables[2], blues);
    // SAFETY: the caller guarantees 192 writable bytes at `dst`.
    unsafe {
        _mm512_storeu_si512(dst as *mut __m512i, o0);
        _mm512_storeu_si512(dst.add(64) as *mut __m512i, o1);
        _mm512_storeu_si512(dst.add(128) as *mut __m512i, o2);
    }
}

/// 16-bit millimetres, 64 pixels per step (AVX-512 VBMI); the tail goes to the AVX2 kernel.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VBMI (and so AVX2).
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx2")]
pub(super) unsafe fn pack_u16_avx512<const SHIFT: u32>(depth_mm: &[u16], out: &mut [u8]) {
    let (t, b_lanes) = VBMI_TABLES;
    // SAFETY: each table is 64 bytes.
    let tables = t.map(|t| unsafe { _mm512_loadu_si512(t.as_ptr() as *const __m512i) });
    let mut src = depth_mm.chunks_exact(64);
    let mut dst = out.chunks_exact_mut(192);
    for (s, d) in (&mut src).zip(&mut dst) {
        let p = s.as_ptr();
        // SAFETY: `s` holds 64 u16 (two 64-byte blocks), `d` 192 bytes.
        unsafe {
            let d0 = _mm512_loadu_si512(p as *const __m512i);
            let d1 = _mm512_loadu_si512(p.add(32) as *const __m512i);
            pack_64_words::<SHIFT>(d0, d1, &tables, b_lanes, d.as_mut_ptr());
        }
    }
    // SAFETY: AVX2 is implied by AVX-512 F (the caller checked it).
    unsafe { pack_u16_avx2::<SHIFT>(src.remainder(), dst.into_remainder()) }
}

/// The SpatialBot encoding from 32-bit millimetres with AVX-512: `vpmovusdw` narrows to u16
/// saturating at 65535 (the encoding's saturation) in pixel order, then as
/// `pack_u16_avx512`. Saturated pixels are counted only when an OR of all inputs has any.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VBMI (and so AVX2).
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx2")]
pub(super) unsafe fn pack_u32_narrowing_avx512<const SHIFT: u32>(
    depth_mm: &[u32],
    out: &mut [u8],
) -> usize {
    let (t, b_lanes) = VBMI_TABLES;
    // SAFETY: each table is 64 bytes.
    let tables = t.map(|t| unsafe { _mm512_loadu_si512(t.as_ptr() as *const __m512i) });
    let mut any = _mm512_setzero_si512();
    let mut src = depth_mm.chunks_exact(64);
    let mut dst = out.chunks_exact_mut(192);
    for (s, d) in (&mut src).zip(&mut dst) {
        let p = s.as_ptr() as *const __m512i;
        // SAFETY: `s` holds 64 u32 (four 64-byte blocks), `d` 192 bytes.
        unsafe {
            let q = [0, 1, 2, 3].map(|i| _mm512_loadu_si512(p.add(i)));
            any = _mm512_or_si512(
                any,
                _mm512_or_si512(_mm512_or_si512(q[0], q[1]), _mm512_or_si512(q[2], q[3])),
            );
            let narrow = |a: __m512i, b: __m512i| {
                _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm512_cvtusepi32_epi16(a)),
                    _mm512_cvtusepi32_epi16(b),
                )
            };
            pack_64_words::<SHIFT>(
                narrow(q[0], q[1]),
                narrow(q[2], q[3]),
                &tables,
                b_lanes,
                d.as_mut_ptr(),
            );
        }
    }
    let done = depth_mm.len() - src.remainder().len();
    let saturated = if _mm512_test_epi32_mask(any, _mm512_set1_epi32(!0xFFFF)) == 0 {
        0
    } else {
        depth_mm[..done]
            .iter()
            .filter(|&&d| d > u16::MAX as u32)
            .count()
    };
    // SAFETY: AVX2 is implied by AVX-512 F (the caller checked it).
    saturated + unsafe { pack_u32_narrowing_avx2::<SHIFT>(src.remainder(), dst.into_remainder()) }
}

/// Registration's portable splat compiled for AVX-512 (16 lanes, and mask registers for the
/// branch-free selects). Same arithmetic as the portable build: Rust never fuses a multiply and
/// an add, so FMA hardware cannot change a result.
///
/// # Safety
/// The CPU must support AVX-512 F/VL/DQ/BW, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
pub(super) unsafe fn splat_avx512(g: &super::SplatGeometry, src: &[u32], dst: &mut [u32]) {
    super::portable::splat(g, src, dst)
}

/// Registration's portable splat compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn splat_avx2(g: &super::SplatGeometry, src: &[u32], dst: &mut [u32]) {
    super::portable::splat(g, src, dst)
}
