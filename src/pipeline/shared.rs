//! What the loop threads share: the stop request, counters, the log queue, and the messages
//! between threads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::stats::LoopStats;
use super::{Action, Hold, RgbdFrame, StopReason};

/// How often blocked threads look at the stop flag.
pub(super) const TICK: Duration = Duration::from_millis(10);
/// How long the supervisor waits for a thread stuck in a device or model call after a stop.
pub(super) const JOIN_GRACE: Duration = Duration::from_secs(5);
pub(super) const LOG_QUEUE: usize = 1024;

#[derive(Default)]
pub(super) struct StopCell {
    pub(super) flag: AtomicBool,
    pub(super) reason: Mutex<Option<(StopReason, String)>>,
}

impl StopCell {
    /// The first request wins.
    pub(super) fn request(&self, reason: StopReason, detail: impl Into<String>) {
        let mut r = lock(&self.reason);
        if r.is_none() {
            *r = Some((reason, detail.into()));
        }
        self.flag.store(true, Ordering::SeqCst);
    }
    pub(super) fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
    pub(super) fn reason(&self) -> Option<(StopReason, String)> {
        lock(&self.reason).clone()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Clone, Debug)]
pub(super) enum LogLevel {
    Info,
    Warn,
}

#[derive(Clone, Debug)]
pub(super) struct LogEvent {
    pub(super) level: LogLevel,
    pub(super) message: String,
}

/// What the loop threads share.
pub(super) struct Shared {
    pub(super) stop: StopCell,
    /// µs since the loop started when the model thread's current generation
    /// began; 0 while it is not in one. Read by the supervisor's stage watchdog.
    pub(super) busy_since_us: AtomicU64,
    pub(super) epoch: Instant,
    pub(super) stats: Mutex<LoopStats>,
    pub(super) log_tx: Sender<LogEvent>,
    pub(super) log_dropped: AtomicU64,
    /// The last step whose answer the model thread has (set before it asks for the next
    /// frame), and the last step whose action the link thread is done with (sent, or held by
    /// the governor; a step that holds before the link is done with at once). While the first
    /// is ahead, an action may be on its way to the arm.
    pub(super) answered_step: AtomicU64,
    pub(super) delivered_step: AtomicU64,
    /// µs since `epoch` when the link last finished sending an action the arm took (0: none).
    pub(super) last_action_us: AtomicU64,
}

impl Shared {
    pub(super) fn log(&self, level: LogLevel, message: String) {
        if self.log_tx.try_send(LogEvent { level, message }).is_err() {
            self.log_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub(super) fn stats(&self) -> MutexGuard<'_, LoopStats> {
        lock(&self.stats)
    }
    /// µs since `epoch` of `t` (0 for an instant before it).
    pub(super) fn micros(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_micros() as u64
    }
    /// The link thread is done with `step`'s action, or there is none to send.
    pub(super) fn delivered(&self, step: u64) {
        self.delivered_step.fetch_max(step, Ordering::SeqCst);
    }
}

pub(super) enum CaptureMsg {
    Frame(RgbdFrame),
    Ended,
    Failed(String),
}

pub(super) struct StepInput<E> {
    pub(super) frame: RgbdFrame,
    pub(super) frame_overhead: Duration,
    pub(super) embeddings: Vec<Arc<E>>,
}

pub(super) enum LinkMsg {
    Act {
        action: Action,
        overhead_before_link: Duration,
    },
    Hold(Hold),
}

/// Sends a thread's name when it ends, panics included.
pub(super) struct DoneGuard {
    pub(super) name: &'static str,
    pub(super) tx: Sender<(&'static str, bool)>,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.tx.send((self.name, std::thread::panicking()));
    }
}
