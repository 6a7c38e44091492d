//! Progress bars for long-running commands (bench's warm-up and measure phases, an eval over
//! episodes), a thin wrapper over `indicatif`.
//!
//! A bar is drawn on stderr only when stderr is a terminal (and `TERM` is not `dumb`); otherwise
//! it is hidden and draws nothing, so stdout (JSON, tables) and redirected or piped stderr are
//! untouched. While shown it reads
//!
//! ```text
//! measure  [#############>----------------] 467/1000 frames, 31.2 frames/s, 15s
//! ```
//!
//! The rate is indicatif's smoothed estimate while the phase runs (an exponentially weighted
//! average, so one slow frame does not make it jump), and once [`Progress::finish`] is called, the
//! whole phase's mean: the line left on the terminal is the phase's count over its wall time. A
//! shown bar also redraws on its own a few times a second, so the elapsed time and the rate keep
//! moving when items are slow (an episode may take seconds).
//!
//! ```no_run
//! use spatialbot_edge::progress::Progress;
//!
//! let progress = Progress::new(1000, "measure").with_unit("frames");
//! for _ in 0..1000 {
//!     // ... one frame ...
//!     progress.inc();
//! }
//! progress.finish();
//! ```

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Redraws a second on a terminal, at most (indicatif's default for stderr is 20).
const REFRESH_HZ: u8 = 10;
/// How often a shown bar redraws without an [`Progress::inc`].
const STEADY_TICK: Duration = Duration::from_millis(250);
/// What is counted unless [`Progress::with_unit`] says otherwise.
const DEFAULT_UNIT: &str = "items";

/// One phase's progress bar: `total` items, labelled with the phase's name. Hidden when stderr is
/// not a terminal; dropping it without [`Progress::finish`] leaves the last line as drawn.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `total` items of `phase` (e.g. `"warm-up"`, `"measure"`), counting "items";
    /// drawn on stderr when stderr is a terminal, hidden otherwise.
    pub fn new(total: u64, phase: &str) -> Self {
        Self::with_target(total, phase, ProgressDrawTarget::stderr_with_hz(REFRESH_HZ))
    }

    fn with_target(total: u64, phase: &str, target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), target)
            .with_prefix(phase.to_string())
            .with_style(style(DEFAULT_UNIT));
        if !bar.is_hidden() {
            bar.enable_steady_tick(STEADY_TICK);
        }
        Self { bar }
    }

    /// What is counted, plural, as shown in the count and the rate: `"frames"`, `"episodes"`.
    pub fn with_unit(self, unit: &'static str) -> Self {
        self.bar.set_style(style(unit));
        self
    }

    /// One more item done.
    pub fn inc(&self) {
        self.bar.inc(1);
    }

    /// `n` more items done.
    pub fn inc_by(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Ends the phase: the bar is drawn one last time, full, with the phase's mean rate, and left
    /// on its line; later output starts on the next line.
    pub fn finish(&self) {
        self.bar.finish();
    }

    /// Whether nothing is drawn (stderr is not a terminal, or `TERM=dumb`). Callers can skip
    /// work that only feeds the display.
    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// Runs `f` with the bar cleared from the terminal, then redraws it: for writing other lines
    /// to stderr (warnings, logs) while a bar is shown without tearing it.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }
}

/// `phase    [bar] pos/len unit, rate unit/s, elapsed`.
fn style(unit: &'static str) -> ProgressStyle {
    ProgressStyle::with_template("{prefix:<8} [{bar:30}] {pos}/{len} {unit}, {rate}, {elapsed}")
        .expect("the progress template is valid")
        .progress_chars("#>-")
        .with_key(
            "unit",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(unit);
            },
        )
        .with_key(
            "rate",
            move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let rate = s.per_sec();
                if rate.is_finite() {
                    let _ = write!(w, "{rate:.1} {unit}/s");
                } else {
                    let _ = write!(w, "- {unit}/s");
                }
            },
        )
}

#[cfg(test)]
mod tests {
    use std::io::{self, IsTerminal};
    use std::sync::{Arc, Mutex};

    use indicatif::TermLike;

    use super::*;

    /// A terminal that keeps what is written, to read the drawn line back.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            let mut out = self.0.lock().unwrap();
            out.push_str(s);
            out.push('\n');
            Ok(())
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            self.0.lock().unwrap().push('\r');
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn hidden_when_stderr_is_not_a_terminal() {
        let p = Progress::new(10, "measure").with_unit("frames");
        // Under `cargo test` stderr is usually a pipe (CI, logs); run from a terminal it may not be.
        assert_eq!(p.is_hidden(), !io::stderr().is_terminal());
        p.inc();
        p.finish();
    }

    #[test]
    fn a_hidden_bar_counts_and_draws_nothing() {
        let p = Progress::with_target(3, "warm-up", ProgressDrawTarget::hidden());
        assert!(p.is_hidden());
        for _ in 0..3 {
            p.inc();
        }
        p.finish();
        assert_eq!(p.bar.position(), 3);
        assert!(p.bar.is_finished());
    }

    #[test]
    fn the_drawn_line_has_phase_count_and_rate() {
        let screen = Screen::default();
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let p = Progress::with_target(10, "measure", target).with_unit("frames");
        assert!(!p.is_hidden());
        p.inc_by(4);
        p.suspend(|| {});
        for _ in 0..6 {
            p.inc();
        }
        p.finish();
        let out = screen.0.lock().unwrap().clone();
        // Each draw clears the line ('\r' here) and writes it anew: the last one is the finished bar.
        let last = out
            .split(['\r', '\n'])
            .rfind(|l| !l.trim().is_empty())
            .unwrap();
        assert!(last.starts_with("measure  ["), "{out:?}");
        assert!(last.contains("10/10 frames, "), "{out:?}");
        assert!(last.contains(" frames/s, "), "{out:?}");
        let bar = &last[last.find('[').unwrap() + 1..last.find(']').unwrap()];
        assert_eq!(bar, "#".repeat(30), "a finished bar is full: {out:?}");
    }

    #[test]
    fn the_default_unit_is_items() {
        let screen = Screen::default();
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let p = Progress::with_target(2, "eval", target);
        p.inc_by(2);
        p.finish();
        let out = screen.0.lock().unwrap().clone();
        assert!(out.contains("2/2 items, "), "{out:?}");
        assert!(out.contains(" items/s"), "{out:?}");
    }
}
