//! The host clock the link stamps with: CLOCK_MONOTONIC in µs (V4L2 buffer timestamps and
//! librealsense's system-time domain are on it too).

/// Microseconds of CLOCK_MONOTONIC.
pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into; CLOCK_MONOTONIC always exists on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}
