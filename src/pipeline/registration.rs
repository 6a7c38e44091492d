//! Depth registration beside the vision thread: one long-lived thread, so its caches and its
//! allocator arena stay warm, registering into buffers the loop has finished with.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use super::UnregisteredDepth;
use crate::rgbd::DepthMm;

/// Registered frames handed out and not yet seen back; more than the loop holds at once.
const LENT: usize = 4;

struct Job {
    raw: UnregisteredDepth,
    buffer: Vec<u32>,
}

type Outcome = (Result<DepthMm, String>, Duration);

pub(super) struct RegistrationWorker {
    jobs: Option<Sender<Job>>,
    results: Option<Receiver<Outcome>>,
    handle: Option<JoinHandle<()>>,
    /// The thread was started, or refused.
    tried: bool,
    in_flight: bool,
    lent: VecDeque<Arc<DepthMm>>,
}

/// A frame's depth on its way to the colour camera's frame.
pub(super) enum Pending {
    OnWorker,
    /// The worker is gone: register on the calling thread.
    Here(UnregisteredDepth),
}

impl RegistrationWorker {
    /// No thread yet: the first frame with depth to register starts it.
    pub fn new() -> Self {
        Self {
            jobs: None,
            results: None,
            handle: None,
            tried: false,
            in_flight: false,
            lent: VecDeque::with_capacity(LENT),
        }
    }

    /// Without a thread (the system refused one) registration runs on the caller's thread.
    fn start_thread(&mut self) {
        self.tried = true;
        let (jobs, job_rx) = bounded::<Job>(1);
        let (result_tx, results) = bounded::<Outcome>(1);
        let spawned = std::thread::Builder::new()
            .name("sbe-register".into())
            .spawn(move || {
                for job in job_rx {
                    let t0 = Instant::now();
                    let registered = register_into_buffer(&job.raw, job.buffer);
                    if result_tx.send((registered, t0.elapsed())).is_err() {
                        return;
                    }
                }
            });
        if let Ok(handle) = spawned {
            self.jobs = Some(jobs);
            self.results = Some(results);
            self.handle = Some(handle);
        }
    }

    /// Starts registering `raw`; [`RegistrationWorker::finish`] collects it.
    pub fn start(&mut self, raw: UnregisteredDepth) -> Pending {
        if !self.tried {
            self.start_thread();
        }
        if self.in_flight {
            // A job whose frame was abandoned (a vision error): drop its result.
            if let Some(results) = &self.results {
                let _ = results.recv();
            }
            self.in_flight = false;
        }
        let buffer = self.reclaim();
        let Some(jobs) = &self.jobs else {
            return Pending::Here(raw);
        };
        match jobs.send(Job { raw, buffer }) {
            Ok(()) => {
                self.in_flight = true;
                Pending::OnWorker
            }
            Err(back) => {
                self.jobs = None;
                Pending::Here(back.into_inner().raw)
            }
        }
    }

    /// The registered depth of `pending` and how long registering took.
    pub fn finish(&mut self, pending: Pending) -> Result<(Arc<DepthMm>, Duration), String> {
        let (registered, took) = match pending {
            Pending::Here(raw) => {
                let t0 = Instant::now();
                (register_into_buffer(&raw, self.reclaim()), t0.elapsed())
            }
            Pending::OnWorker => {
                self.in_flight = false;
                self.results
                    .as_ref()
                    .and_then(|r| r.recv().ok())
                    .ok_or_else(|| "the registration thread ended".to_string())?
            }
        };
        let depth = Arc::new(registered?);
        if self.lent.len() == LENT {
            self.lent.pop_front();
        }
        self.lent.push_back(depth.clone());
        Ok((depth, took))
    }

    /// The buffer of a registered frame nobody else holds any more, else an empty one.
    fn reclaim(&mut self) -> Vec<u32> {
        let free = self.lent.iter().position(|d| Arc::strong_count(d) == 1);
        free.and_then(|i| self.lent.remove(i))
            .and_then(|d| Arc::try_unwrap(d).ok())
            .map(DepthMm::into_vec)
            .unwrap_or_default()
    }
}

fn register_into_buffer(raw: &UnregisteredDepth, mut buffer: Vec<u32>) -> Result<DepthMm, String> {
    let (w, h) = raw.registrar.color_size();
    buffer.resize(w * h, 0);
    let mut out =
        DepthMm::from_mm_in_range(w, h, buffer).ok_or_else(|| format!("colour size {w}x{h}"))?;
    raw.registrar
        .register_into(&raw.depth, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

impl Drop for RegistrationWorker {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::synthetic;
    use crate::rgbd::register::Registrar;

    fn raw(seed: u32) -> UnregisteredDepth {
        let calib = synthetic::calibration(32, 24);
        let mm = (0..32 * 24).map(|i| 500 + (i * 7 + seed) % 900).collect();
        UnregisteredDepth {
            depth: Arc::new(DepthMm::from_mm(32, 24, mm).unwrap()),
            registrar: Arc::new(Registrar::new(&calib).unwrap()),
        }
    }

    #[test]
    fn each_result_belongs_to_its_frame_and_buffers_come_back() {
        let mut worker = RegistrationWorker::new();
        let (a, b, c) = (raw(1), raw(2), raw(3));
        let want = |r: &UnregisteredDepth| r.registrar.register(&r.depth).unwrap();

        let pending = worker.start(a.clone());
        assert!(matches!(pending, Pending::OnWorker));
        let (first, _) = worker.finish(pending).unwrap();
        assert_eq!(*first, want(&a));

        // A frame abandoned between start and finish: its result never reaches the next one.
        let _abandoned = worker.start(b.clone());
        let pending = worker.start(c.clone());
        let (third, _) = worker.finish(pending).unwrap();
        assert_eq!(*third, want(&c));

        // Once the loop lets go of a frame, its buffer is registered into again.
        let ptr = first.as_slice().as_ptr();
        drop(first);
        let pending = worker.start(a.clone());
        let (again, _) = worker.finish(pending).unwrap();
        assert_eq!(*again, want(&a));
        assert_eq!(again.as_slice().as_ptr(), ptr);
    }

    #[test]
    fn a_registration_error_is_reported_not_delivered() {
        let mut worker = RegistrationWorker::new();
        let mut bad = raw(1);
        bad.depth = Arc::new(DepthMm::zeros(8, 8));
        let pending = worker.start(bad);
        let err = worker.finish(pending).unwrap_err();
        assert!(err.contains("8"), "{err}");
    }
}
