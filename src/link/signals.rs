//! SIGINT/SIGTERM → a flag the control loop checks; it then sends `Stop` and exits 0.

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A flag raised by SIGINT or SIGTERM. A second signal of either kind while the flag is
/// already up ends the process at once (exit 130), in case the loop itself is stuck.
pub fn shutdown_flag() -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}
