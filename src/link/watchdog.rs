//! Host-side deadline watchdog: each pipeline stage beats; a stage silent past its deadline
//! makes the monitor send `Stop(Watchdog)` and, if asked, end the process with
//! `exit::WATCHDOG_STOP` (the stuck stage may never return to let the loop exit by itself).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::clock::monotonic_us;
use super::{StopReason, Stopper};

struct Stage {
    name: String,
    deadline_us: u64,
    last_beat_us: AtomicU64,
    armed: AtomicBool,
}

#[derive(Default)]
struct Shared {
    stages: Mutex<Vec<Arc<Stage>>>,
    tripped: Mutex<Option<String>>,
    quit: AtomicBool,
}

/// What the monitor does after sending `Stop` on a missed deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTrip {
    /// Only record it: the loop checks [`StageWatchdog::tripped`].
    Flag,
    /// End the process with `exit::WATCHDOG_STOP` after writing `Stop`.
    ExitProcess,
}

pub struct StageWatchdog {
    shared: Arc<Shared>,
    monitor: Option<JoinHandle<()>>,
}

/// A stage's side of the watchdog.
#[derive(Clone)]
pub struct StageHandle {
    stage: Arc<Stage>,
}

impl StageHandle {
    /// The stage made progress; also arms its deadline.
    pub fn beat(&self) {
        self.stage
            .last_beat_us
            .store(monotonic_us(), Ordering::Relaxed);
        self.stage.armed.store(true, Ordering::Relaxed);
    }

    /// The stage waits on purpose (e.g. for input): no deadline until the next beat.
    pub fn disarm(&self) {
        self.stage.armed.store(false, Ordering::Relaxed);
    }
}

impl StageWatchdog {
    /// Starts the monitor, checking every `period`.
    pub fn spawn(stopper: Stopper, period: Duration, on_trip: OnTrip) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let monitor = std::thread::Builder::new()
            .name("stage-watchdog".into())
            .spawn(move || {
                while !s.quit.load(Ordering::Relaxed) {
                    std::thread::sleep(period);
                    let now = monotonic_us();
                    let late = s.stages.lock().ok().and_then(|stages| {
                        stages.iter().find_map(|st| {
                            let since = now.saturating_sub(st.last_beat_us.load(Ordering::Relaxed));
                            (st.armed.load(Ordering::Relaxed) && since > st.deadline_us).then(
                                || {
                                    format!(
                                        "stage `{}` silent for {} ms (deadline {} ms)",
                                        st.name,
                                        since / 1000,
                                        st.deadline_us / 1000
                                    )
                                },
                            )
                        })
                    });
                    if let Some(what) = late {
                        tracing::error!("{what}: stopping the arm");
                        let sent = stopper.send_stop(StopReason::Watchdog);
                        if let Ok(mut t) = s.tripped.lock() {
                            *t = Some(what.clone());
                        }
                        if on_trip == OnTrip::ExitProcess {
                            eprintln!(
                                "watchdog: {what}; Stop sent: {}",
                                if sent.is_ok() {
                                    "yes"
                                } else {
                                    "no (link failed)"
                                }
                            );
                            std::process::exit(i32::from(crate::exit::WATCHDOG_STOP));
                        }
                        return;
                    }
                }
            })?;
        Ok(Self {
            shared,
            monitor: Some(monitor),
        })
    }

    /// Registers a stage that must beat at least every `deadline` once armed.
    pub fn stage(&self, name: &str, deadline: Duration) -> StageHandle {
        let stage = Arc::new(Stage {
            name: name.to_string(),
            deadline_us: deadline.as_micros() as u64,
            last_beat_us: AtomicU64::new(monotonic_us()),
            armed: AtomicBool::new(false),
        });
        if let Ok(mut stages) = self.shared.stages.lock() {
            stages.push(stage.clone());
        }
        StageHandle { stage }
    }

    /// The missed deadline, if the watchdog tripped.
    pub fn tripped(&self) -> Option<String> {
        self.shared.tripped.lock().ok().and_then(|t| t.clone())
    }
}

impl Drop for StageWatchdog {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::Relaxed);
        if let Some(h) = self.monitor.take() {
            let _ = h.join();
        }
    }
}
