//! SIGINT/SIGTERM → a flag the control loop and the link check; the loop then sends `Stop` and
//! exits (0 when the controller acknowledges it, 5 when not).
//!
//! Signals never end the process while a session with the arm may be open: a second or third
//! signal only repeats the request, so the `Stop` always goes out. Before any `Hello` was sent
//! ([`mark_session_may_open`] not yet called) a second signal ends the process at once with
//! exit 130: nothing can have moved, and a model load that takes tens of seconds should not
//! make the operator wait.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// Signals received so far.
static RECEIVED: AtomicU32 = AtomicU32::new(0);
/// Set just before the first `Hello` is written: from then on a signal never exits directly.
static SESSION_MAY_BE_OPEN: AtomicBool = AtomicBool::new(false);

/// Exit code of a process ended by a repeated signal before any session was opened.
pub const EXIT_REPEATED_SIGNAL_BEFORE_SESSION: i32 = 130;

/// A flag raised by SIGINT or SIGTERM, installed once per process (call it first thing).
pub fn shutdown_flag() -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let f = flag.clone();
        // SAFETY: the handler only touches atomics and calls `_exit`, both async-signal-safe.
        unsafe {
            signal_hook::low_level::register(sig, move || {
                f.store(true, Ordering::SeqCst);
                let n = RECEIVED.fetch_add(1, Ordering::SeqCst) + 1;
                if n >= 2 && !SESSION_MAY_BE_OPEN.load(Ordering::SeqCst) {
                    libc::_exit(EXIT_REPEATED_SIGNAL_BEFORE_SESSION);
                }
            })?;
        }
    }
    Ok(flag)
}

/// Called before the first `Hello` is written: from now on signals only raise the flag.
pub fn mark_session_may_open() {
    SESSION_MAY_BE_OPEN.store(true, Ordering::SeqCst);
}

/// How many SIGINT/SIGTERM this process has received.
pub fn received() -> u32 {
    RECEIVED.load(Ordering::SeqCst)
}
