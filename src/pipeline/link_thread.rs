//! The link thread: each action through the sink (governor + link), holds and heartbeats, and
//! the final Stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::shared::*;
use super::{stats, ActionSink, Delivery, SinkError, StopReason};

pub(super) fn link_thread<A: ActionSink>(
    mut sink: A,
    process_start: Instant,
    rx: Receiver<LinkMsg>,
    signal: &AtomicBool,
    shared: Arc<Shared>,
    _done: DoneGuard,
) {
    let failed = |e: SinkError| {
        shared.stop.request(e.stop_reason(), e.to_string());
    };
    loop {
        // The link thread sees a signal itself, not a supervisor tick later: the next thing
        // it writes is the Stop.
        if signal.load(Ordering::SeqCst) {
            shared
                .stop
                .request(StopReason::Signal, "interrupted; Stop sent to the arm");
        }
        let urgent_stop = shared.stop.reason().is_some_and(|(r, _)| !r.is_orderly());
        if urgent_stop {
            break;
        }
        match rx.recv_timeout(TICK) {
            Ok(LinkMsg::Act {
                action,
                overhead_before_link,
            }) => {
                let t0 = Instant::now();
                match sink.send(&action, t0) {
                    Ok(delivery) => {
                        let t1 = Instant::now();
                        if matches!(delivery, Delivery::Sent) {
                            shared
                                .last_action_us
                                .fetch_max(shared.micros(t1).max(1), Ordering::SeqCst);
                        }
                        shared.delivered(action.step);
                        let mut st = shared.stats();
                        st.record(stats::stage::LINK, t1 - t0);
                        match delivery {
                            Delivery::Sent => {
                                st.actions_sent += 1;
                                if st.actions_sent == 1 {
                                    st.record(
                                        stats::stage::STARTUP,
                                        t1.saturating_duration_since(process_start),
                                    );
                                }
                                st.record(
                                    stats::stage::END_TO_END,
                                    t1.saturating_duration_since(action.captured),
                                );
                                st.record(stats::stage::OVERHEAD, overhead_before_link + (t1 - t0));
                            }
                            Delivery::Held(hold) => st.hold(hold.name()),
                        }
                    }
                    Err(e) => {
                        failed(e);
                        break;
                    }
                }
            }
            Ok(LinkMsg::Hold(reason)) => {
                if let Err(e) = sink.hold(&reason, Instant::now()) {
                    failed(e);
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if shared.stop.is_set() {
                    break;
                }
                if let Err(e) = sink.idle(Instant::now()) {
                    failed(e);
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    shared.stop.request(
        StopReason::Internal,
        "the link thread ended without a stop request",
    );
    let why = shared
        .stop
        .reason()
        .map_or(StopReason::Internal, |(r, _)| r);
    let stopped = sink.stop(why);
    shared.stats().link = sink.outcomes();
    if let Err(e) = stopped {
        shared.log(LogLevel::Warn, format!("stopping the arm: {e}"));
        let keep = shared.stop.reason().is_some_and(|(r, _)| {
            matches!(
                r,
                StopReason::LinkLost
                    | StopReason::EStop
                    | StopReason::ControllerFault
                    | StopReason::ControllerRefused
                    | StopReason::ControllerStopped
            )
        });
        if !keep {
            // Stop was not acknowledged: the process must not report a clean end.
            let mut r = lock(&shared.stop.reason);
            *r = Some((StopReason::LinkLost, e.to_string()));
        }
    }
}
