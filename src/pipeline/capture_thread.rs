//! The capture thread: the source's frames into the one-slot channel (newest wins), or each in
//! turn for `every_frame`.

use std::sync::Arc;

use crossbeam_channel::TrySendError;
use crossbeam_channel::{Receiver, Sender};

use super::shared::*;
use super::{error_chain, stats, FrameSource};

/// Puts `msg` in the one-slot channel, evicting the frame already there.
pub(super) fn send_newest(
    tx: &Sender<CaptureMsg>,
    evict: &Receiver<CaptureMsg>,
    mut msg: CaptureMsg,
    shared: &Shared,
) -> bool {
    loop {
        match tx.try_send(msg) {
            Ok(()) => return true,
            Err(TrySendError::Full(back)) => {
                msg = back;
                if let Ok(CaptureMsg::Frame(_)) = evict.try_recv() {
                    shared.stats().frames_dropped += 1;
                }
            }
            Err(TrySendError::Disconnected(_)) => return false,
        }
    }
}

pub(super) fn send_each(tx: &Sender<CaptureMsg>, mut msg: CaptureMsg, shared: &Shared) -> bool {
    loop {
        match tx.send_timeout(msg, TICK) {
            Ok(()) => return true,
            Err(crossbeam_channel::SendTimeoutError::Timeout(back)) if !shared.stop.is_set() => {
                msg = back
            }
            Err(_) => return false,
        }
    }
}

/// With `evict`, a new frame replaces one the loop has not taken yet (counted as dropped);
/// without, the source waits until the loop takes each frame.
pub(super) fn capture_thread<S: FrameSource>(
    mut source: S,
    tx: Sender<CaptureMsg>,
    evict: Option<Receiver<CaptureMsg>>,
    shared: Arc<Shared>,
    _done: DoneGuard,
) {
    while !shared.stop.is_set() {
        let msg = match source.next_frame() {
            Ok(Some(frame)) => {
                let register = source.last_registration();
                let mut st = shared.stats();
                st.frames_captured += 1;
                let assembly = frame.ready.saturating_duration_since(frame.arrival);
                st.record(
                    stats::stage::CAMERA,
                    assembly.saturating_sub(register.unwrap_or_default()),
                );
                if let Some(d) = register {
                    st.record(stats::stage::REGISTER, d);
                }
                CaptureMsg::Frame(frame)
            }
            Ok(None) => CaptureMsg::Ended,
            Err(e) => CaptureMsg::Failed(error_chain(&*e)),
        };
        let last = !matches!(msg, CaptureMsg::Frame(_));
        let delivered = match &evict {
            Some(evict) => send_newest(&tx, evict, msg, &shared),
            None => send_each(&tx, msg, &shared),
        };
        if !delivered || last {
            return;
        }
    }
}
