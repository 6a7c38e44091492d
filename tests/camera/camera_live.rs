//! The live-camera logic (pairing, frame-loss counting, clock mapping, unplug recovery) driven
//! by a scripted device layer: the logic is the real `LiveSource`, only the USB device is played.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use spatialbot_edge::camera::live::{
    DeviceError, DeviceLayer, LiveOptions, LiveSource, Payload, RawFrame,
};
use spatialbot_edge::camera::synthetic;
use spatialbot_edge::camera::{RgbdFrame, Source, SourceError};
use spatialbot_edge::rgbd::{Calibration, DepthMm, RgbImage};

#[derive(Clone, Copy, Debug)]
enum Step {
    Color(u64, f64),
    Depth(u64, f64),
    /// The cable comes out; the next `n` start attempts find no device.
    Unplug(usize),
    /// The link hangs: no frame within the timeout.
    Hang,
}

struct ScriptedDevice {
    script: VecDeque<Step>,
    calib: Calibration,
    plugged: bool,
    absent_for: usize,
    starts: usize,
    resets: usize,
    usb: &'static str,
}

impl ScriptedDevice {
    fn new(script: Vec<Step>) -> Self {
        Self {
            script: script.into(),
            calib: synthetic::calibration(2, 2),
            plugged: false,
            absent_for: 0,
            starts: 0,
            resets: 0,
            usb: "3.2",
        }
    }
}

impl DeviceLayer for ScriptedDevice {
    fn start(&mut self) -> Result<(), DeviceError> {
        if self.absent_for > 0 {
            self.absent_for -= 1;
            return Err(DeviceError::NotFound("no camera on the bus".into()));
        }
        self.plugged = true;
        self.starts += 1;
        Ok(())
    }
    fn poll(&mut self, _timeout: Duration) -> Result<Option<RawFrame>, DeviceError> {
        if !self.plugged {
            return Err(DeviceError::Disconnected("not streaming".into()));
        }
        let arrival = Instant::now();
        match self.script.pop_front() {
            Some(Step::Color(n, ts)) => Ok(Some(RawFrame {
                payload: Payload::Color(RgbImage::filled(2, 2, [n as u8, 0, 0])),
                frame_number: n,
                device_timestamp_ms: Some(ts),
                arrival,
            })),
            Some(Step::Depth(n, ts)) => Ok(Some(RawFrame {
                payload: Payload::Depth(DepthMm::from_mm(2, 2, vec![1000 + n as u32; 4]).unwrap()),
                frame_number: n,
                device_timestamp_ms: Some(ts),
                arrival,
            })),
            Some(Step::Unplug(n)) => {
                self.plugged = false;
                self.absent_for = n;
                Err(DeviceError::Disconnected("USB device removed".into()))
            }
            Some(Step::Hang) => Ok(None),
            None => Err(DeviceError::Failed("script ended".into())),
        }
    }
    fn stop(&mut self) {
        self.plugged = false;
    }
    fn hardware_reset(&mut self) -> Result<(), DeviceError> {
        self.resets += 1;
        Ok(())
    }
    fn calibration(&self) -> &Calibration {
        &self.calib
    }
    fn describe(&self) -> String {
        "scripted D435 #0000".into()
    }
    fn usb_type(&self) -> Option<String> {
        Some(self.usb.into())
    }
}

fn options() -> LiveOptions {
    LiveOptions {
        max_skew_ms: 10.0,
        frame_timeout: Duration::from_millis(5),
        reconnect_timeout: Duration::from_secs(20),
        retry_interval: Duration::from_millis(1),
        hardware_reset_on_start: false,
        asked_fps: None,
    }
}

/// Frames `first..first+n` of both streams, colour 1 ms after depth, at 30 fps from `t0`.
fn steady(first: u64, n: u64, t0: f64) -> Vec<Step> {
    (first..first + n)
        .flat_map(|i| {
            let t = t0 + (i - first) as f64 * 33.3;
            [Step::Depth(i, t), Step::Color(i, t + 1.0)]
        })
        .collect()
}

fn drain(src: &mut dyn Source) -> (Vec<RgbdFrame>, SourceError) {
    let mut frames = Vec::new();
    loop {
        match src.next_frame() {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => panic!("a live source never ends"),
            Err(e) => return (frames, e),
        }
    }
}

fn numbers(frames: &[RgbdFrame]) -> Vec<(u64, u64)> {
    frames
        .iter()
        .map(|f| (f.color_frame_number, f.depth_frame_number))
        .collect()
}

#[test]
fn unplug_mid_stream_resumes_without_restart() {
    let mut script = steady(0, 5, 1000.0);
    script.push(Step::Unplug(3));
    // After replug the device's clock and counters start again from zero.
    script.extend(steady(0, 4, 0.0));
    let mut src = LiveSource::new(ScriptedDevice::new(script), options());
    let (frames, end) = drain(&mut src);
    assert!(end.to_string().contains("script ended"), "{end}");
    assert_eq!(
        numbers(&frames),
        vec![
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 3),
            (4, 4),
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 3)
        ]
    );
    for f in &frames {
        assert_eq!(
            f.color.data[0] as u32 + 1000,
            f.depth.image().unwrap().as_slice()[0],
            "colour and depth of one instant"
        );
        assert!(f.capture <= f.arrival);
    }
    assert_eq!(
        frames.iter().map(|f| f.sequence).collect::<Vec<_>>(),
        (0..9).collect::<Vec<_>>()
    );
    let s = src.stats();
    assert_eq!((s.delivered, s.disconnects, s.reconnects), (9, 1, 1));
    assert_eq!(
        (s.unpaired_color, s.unpaired_depth, s.dropped_by_device),
        (0, 0, 0)
    );
    assert_eq!(src.device().starts, 2);
}

#[test]
fn a_usb2_link_is_named_in_the_description() {
    let mut device = ScriptedDevice::new(steady(0, 1, 0.0));
    device.usb = "2.1";
    let mut src = LiveSource::new(device, options());
    src.next_frame().unwrap().unwrap();
    let text = src.describe();
    assert!(text.contains("USB 2.1") && text.contains("USB 3"), "{text}");
    let mut src = LiveSource::new(ScriptedDevice::new(steady(0, 1, 0.0)), options());
    src.next_frame().unwrap().unwrap();
    assert!(!src.describe().contains("USB"), "{}", src.describe());
}

#[test]
fn a_hung_link_counts_as_a_loss_and_recovers() {
    let mut script = steady(0, 2, 0.0);
    script.push(Step::Hang);
    script.extend(steady(2, 2, 66.6));
    let mut src = LiveSource::new(ScriptedDevice::new(script), options());
    let (frames, _) = drain(&mut src);
    assert_eq!(numbers(&frames), vec![(0, 0), (1, 1), (2, 2), (3, 3)]);
    assert_eq!((src.stats().disconnects, src.stats().reconnects), (1, 1));
}

#[test]
fn gives_up_after_the_reconnect_timeout_with_a_clear_error() {
    let mut script = steady(0, 3, 0.0);
    script.push(Step::Unplug(usize::MAX));
    let mut opts = options();
    opts.reconnect_timeout = Duration::from_millis(30);
    let mut src = LiveSource::new(ScriptedDevice::new(script), opts);
    let (frames, end) = drain(&mut src);
    assert_eq!(frames.len(), 3, "frames before the loss are delivered");
    let msg = end.to_string();
    assert!(matches!(end, SourceError::DeviceLost { .. }), "{msg}");
    assert!(
        msg.contains("scripted D435")
            && msg.contains("USB device removed")
            && msg.contains("gave up"),
        "{msg}"
    );
}

#[test]
fn absent_at_start_waits_for_the_device() {
    let mut dev = ScriptedDevice::new(steady(0, 2, 0.0));
    dev.absent_for = 4;
    let mut opts = options();
    opts.hardware_reset_on_start = true;
    let mut src = LiveSource::new(dev, opts);
    let (frames, _) = drain(&mut src);
    assert_eq!(frames.len(), 2);
    assert_eq!(src.device().resets, 1);
}

#[test]
fn colour_a_frame_behind_pairs_by_timestamp() {
    // Colour frame numbers lag depth by one (the colour sensor started a frame later) but the
    // timestamps agree: pairing goes by time, and the orphan depth frame is counted.
    let mut script = vec![Step::Depth(10, 0.0)];
    for i in 1..6u64 {
        script.push(Step::Depth(10 + i, i as f64 * 33.3));
        script.push(Step::Color(i - 1, i as f64 * 33.3 + 2.0));
    }
    let mut src = LiveSource::new(ScriptedDevice::new(script), options());
    let (frames, _) = drain(&mut src);
    assert_eq!(
        numbers(&frames),
        vec![(0, 11), (1, 12), (2, 13), (3, 14), (4, 15)]
    );
    assert_eq!(
        (src.stats().unpaired_depth, src.stats().unpaired_color),
        (1, 0)
    );
}

#[test]
fn dropped_and_repeated_frames_are_counted() {
    let script = vec![
        Step::Depth(0, 0.0),
        Step::Color(0, 1.0),
        Step::Depth(1, 33.3),
        Step::Color(1, 34.3),
        // Depth 2 and 3 never arrive.
        Step::Color(2, 67.6),
        Step::Color(3, 101.0),
        Step::Depth(4, 133.2),
        Step::Color(4, 134.2),
        // A repeated frame is skipped.
        Step::Color(4, 134.2),
        Step::Depth(5, 166.5),
        Step::Color(5, 167.5),
    ];
    let mut src = LiveSource::new(ScriptedDevice::new(script), options());
    let (frames, _) = drain(&mut src);
    assert_eq!(numbers(&frames), vec![(0, 0), (1, 1), (4, 4), (5, 5)]);
    let s = src.stats();
    assert_eq!(
        (s.dropped_by_device, s.unpaired_color, s.unpaired_depth),
        (2, 2, 0)
    );
}

#[test]
fn capture_times_follow_the_device_clock() {
    let script = steady(0, 20, 5000.0);
    let mut src = LiveSource::new(ScriptedDevice::new(script), options());
    let (frames, _) = drain(&mut src);
    for w in frames.windows(2) {
        assert!(w[0].capture <= w[1].capture);
        assert!(w[1].capture <= w[1].arrival);
    }
    assert_eq!(
        frames[3].device_timestamp_ms,
        Some(5000.0 + 3.0 * 33.3 + 1.0)
    );
}
