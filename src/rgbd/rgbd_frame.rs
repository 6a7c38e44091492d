//! The RGB-D frame every camera source delivers and every stage of the loop takes: a colour
//! image, its depth as far as it has been processed ([`Depth`]), and when and where it came
//! from. Depth is registered to colour in one place, [`RgbdFrame::register_depth`].

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::calibration::{Calibration, Intrinsics};
use super::frame::{DepthMm, RgbImage};
use super::register::{RegisterError, Registrar};

/// What a consumer needs of a camera's depth, from the command line or policy manifest down to
/// the camera.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DepthNeed {
    /// No depth: frames carry [`Depth::None`]. Sources that can skip reading, converting or
    /// rendering it (PNG recordings, RealSense cameras and `.bag` files, the synthetic camera)
    /// do; a `pair:` still reads its depth half, which is what pairs it.
    None,
    /// Depth as the camera delivers it ([`Depth::Raw`] unless the camera registers it itself),
    /// registered by whoever needs it ([`RgbdFrame::register_depth`]).
    #[default]
    Raw,
    /// Depth registered to colour on every frame ([`Depth::Registered`], or [`Depth::None`]
    /// for a colour-only camera).
    Registered,
}

/// What registers one camera's raw depth into its colour camera's frame: its calibration, and
/// the [`Registrar`] built from it the first time it is asked for (shared by every frame of
/// the camera, so the tables are built once).
pub struct DepthRegistration {
    calibration: Calibration,
    registrar: OnceLock<Registrar>,
}

impl std::fmt::Debug for DepthRegistration {
    /// The calibration, and whether the registrar is built (its tables are large).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DepthRegistration")
            .field("calibration", &self.calibration)
            .field("built", &self.registrar.get().is_some())
            .finish()
    }
}

impl DepthRegistration {
    pub fn new(calibration: Calibration) -> Self {
        Self {
            calibration,
            registrar: OnceLock::new(),
        }
    }

    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    /// The registrar, built on first use; an error when the calibration cannot register.
    pub fn registrar(&self) -> Result<&Registrar, RegisterError> {
        if let Some(r) = self.registrar.get() {
            return Ok(r);
        }
        let built = Registrar::new(&self.calibration)?;
        Ok(self.registrar.get_or_init(|| built))
    }
}

/// A frame's depth.
#[derive(Clone, Debug)]
pub enum Depth {
    /// None: a colour-only camera, or a consumer that asked for none ([`DepthNeed::None`]).
    None,
    /// Millimetres in the depth camera's frame (intrinsics
    /// `registration.calibration().depth`), with what registers it.
    Raw {
        depth: Arc<DepthMm>,
        registration: Arc<DepthRegistration>,
    },
    /// Millimetres registered to the colour camera: the colour image's size and intrinsics.
    Registered(Arc<DepthMm>),
}

/// Equal: the same variant and the same pixels, and raw depth registered by the same
/// calibration.
impl PartialEq for Depth {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Depth::None, Depth::None) => true,
            (
                Depth::Raw {
                    depth: a,
                    registration: ra,
                },
                Depth::Raw {
                    depth: b,
                    registration: rb,
                },
            ) => a == b && ra.calibration() == rb.calibration(),
            (Depth::Registered(a), Depth::Registered(b)) => a == b,
            _ => false,
        }
    }
}

impl Depth {
    /// The depth image, registered or not.
    pub fn image(&self) -> Option<&Arc<DepthMm>> {
        match self {
            Depth::None => None,
            Depth::Raw { depth, .. } | Depth::Registered(depth) => Some(depth),
        }
    }

    /// The depth image when it is registered to colour.
    pub fn registered(&self) -> Option<&Arc<DepthMm>> {
        match self {
            Depth::Registered(depth) => Some(depth),
            Depth::None | Depth::Raw { .. } => None,
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Depth::None)
    }

    pub fn is_raw(&self) -> bool {
        matches!(self, Depth::Raw { .. })
    }

    pub fn is_registered(&self) -> bool {
        matches!(self, Depth::Registered(_))
    }
}

/// One colour image and the depth paired with it.
#[derive(Clone, Debug)]
pub struct RgbdFrame {
    /// Counts frames the source delivered, from 0 (or from where a test's source starts).
    pub sequence: u64,
    pub color: Arc<RgbImage>,
    pub depth: Depth,
    pub color_intrinsics: Intrinsics,
    /// The sensor's own frame counters (a colour-only camera: the colour one in both).
    pub color_frame_number: u64,
    pub depth_frame_number: u64,
    /// The sensor's hardware timestamp of the colour frame (ms, the device's clock), when it has
    /// one.
    pub device_timestamp_ms: Option<f64>,
    /// When the light hit the sensor, on the host monotonic clock (device time mapped onto it).
    pub capture: Instant,
    /// When the host received the frame.
    pub arrival: Instant,
    /// When the frame was ready in memory for the loop (depth registered as far as asked); a
    /// source sets it to `arrival`, the loop's frame source when it hands the frame on.
    pub ready: Instant,
}

impl RgbdFrame {
    /// A frame of `color` alone, numbered `sequence` in both frame counters, captured, received
    /// and ready at `at`, with [`Intrinsics::nominal`] for its size: for sources that make frames
    /// up (tests, benchmarks). Set the other fields with struct update syntax.
    pub fn new(sequence: u64, color: Arc<RgbImage>, at: Instant) -> Self {
        let color_intrinsics = Intrinsics::nominal(color.width, color.height);
        Self {
            sequence,
            color,
            depth: Depth::None,
            color_intrinsics,
            color_frame_number: sequence,
            depth_frame_number: sequence,
            device_timestamp_ms: None,
            capture: at,
            arrival: at,
            ready: at,
        }
    }

    /// Intrinsics of the depth image as it is: the depth camera's while raw, the colour
    /// camera's once registered; `None` without depth.
    pub fn depth_intrinsics(&self) -> Option<&Intrinsics> {
        match &self.depth {
            Depth::None => None,
            Depth::Raw { registration, .. } => Some(&registration.calibration().depth),
            Depth::Registered(_) => Some(&self.color_intrinsics),
        }
    }

    /// Registers raw depth into the colour camera's frame; nothing to do for depth already
    /// registered or none.
    pub fn register_depth(&mut self) -> Result<(), RegisterError> {
        self.register_depth_reusing(&mut Vec::new())
    }

    /// [`Self::register_depth`], writing into `spare` (empty, or what the previous call left in
    /// it) and leaving in it the raw depth's buffer when this frame held the only reference to
    /// it: a source registering every frame reuses one buffer rather than allocating a
    /// multi-megabyte image per frame.
    pub fn register_depth_reusing(&mut self, spare: &mut Vec<u32>) -> Result<(), RegisterError> {
        let Depth::Raw {
            depth,
            registration,
        } = &self.depth
        else {
            return Ok(());
        };
        let registrar = registration.registrar()?;
        let (w, h) = registrar.color_size();
        let mut buffer = std::mem::take(spare);
        buffer.resize(w * h, 0);
        // `register_into` overwrites every pixel; the length is right by construction.
        let mut registered =
            DepthMm::from_mm_in_range(w, h, buffer).unwrap_or_else(|| DepthMm::zeros(w, h));
        registrar.register_into(depth, &mut registered)?;
        let old = std::mem::replace(&mut self.depth, Depth::Registered(Arc::new(registered)));
        if let Depth::Raw { depth, .. } = old {
            if let Ok(raw) = Arc::try_unwrap(depth) {
                *spare = raw.into_vec();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rgbd::calibration::Extrinsics;

    fn calibration() -> Calibration {
        Calibration {
            depth_scale: 0.001,
            depth: Intrinsics::nominal(8, 6),
            color: Intrinsics::nominal(16, 12),
            depth_to_color: Extrinsics {
                rotation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                translation: [0.01, 0.0, 0.0],
            },
        }
    }

    fn raw_frame(depth: DepthMm) -> RgbdFrame {
        RgbdFrame {
            depth: Depth::Raw {
                depth: Arc::new(depth),
                registration: Arc::new(DepthRegistration::new(calibration())),
            },
            ..RgbdFrame::new(
                3,
                Arc::new(RgbImage::filled(16, 12, [1, 2, 3])),
                Instant::now(),
            )
        }
    }

    #[test]
    fn raw_depth_registers_once_into_the_colour_camera() {
        let depth = DepthMm::from_mm(8, 6, vec![800; 48]).unwrap();
        let want = Registrar::new(&calibration())
            .unwrap()
            .register(&depth)
            .unwrap();
        let mut frame = raw_frame(depth);
        assert_eq!(frame.depth_intrinsics(), Some(&calibration().depth));
        frame.register_depth().unwrap();
        assert_eq!(frame.depth, Depth::Registered(Arc::new(want.clone())));
        assert_eq!(frame.depth_intrinsics(), Some(&frame.color_intrinsics));
        // Registered depth stays as it is.
        frame.register_depth().unwrap();
        assert_eq!(frame.depth.registered().map(|d| &**d), Some(&want));
    }

    #[test]
    fn the_spare_buffer_is_reused_and_none_stays_none() {
        let mut spare = Vec::new();
        let mut frame = raw_frame(DepthMm::from_mm(8, 6, vec![900; 48]).unwrap());
        frame.register_depth_reusing(&mut spare).unwrap();
        assert_eq!(
            spare.len(),
            48,
            "the raw depth's buffer, kept for the next frame"
        );
        let mut next = raw_frame(DepthMm::from_mm(8, 6, vec![900; 48]).unwrap());
        next.register_depth_reusing(&mut spare).unwrap();
        assert_eq!(next.depth, frame.depth);

        let mut colour_only =
            RgbdFrame::new(0, Arc::new(RgbImage::filled(4, 4, [0; 3])), Instant::now());
        colour_only.register_depth().unwrap();
        assert!(colour_only.depth.is_none());
        assert_eq!(colour_only.depth_intrinsics(), None);
    }

    #[test]
    fn depth_of_the_wrong_size_is_an_error_and_stays_raw() {
        let mut frame = raw_frame(DepthMm::zeros(4, 3));
        let err = frame.register_depth().unwrap_err();
        assert!(matches!(err, RegisterError::DepthSize { .. }), "{err}");
        assert!(frame.depth.is_raw());
    }
}
