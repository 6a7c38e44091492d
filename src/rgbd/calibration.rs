//! Camera calibration: intrinsics of both streams, the depth→colour extrinsics and the depth
//! scale, in the `calibration/*.toml` schema.

use serde::{Deserialize, Serialize};

/// The lens distortion models librealsense reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistortionModel {
    None,
    BrownConrady,
    InverseBrownConrady,
    ModifiedBrownConrady,
}

/// Pinhole intrinsics of one stream, in pixels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intrinsics {
    pub width: usize,
    pub height: usize,
    pub fx: f64,
    pub fy: f64,
    pub ppx: f64,
    pub ppy: f64,
    pub model: DistortionModel,
    pub coeffs: [f64; 5],
}

impl Intrinsics {
    /// Intrinsics for a camera nobody calibrated: a pinhole with a 70° horizontal field of view
    /// centred on the image, no distortion.
    pub fn nominal(width: usize, height: usize) -> Self {
        let focal = width as f64 / 2.0 / (35.0_f64.to_radians()).tan();
        Self {
            width,
            height,
            fx: focal,
            fy: focal,
            ppx: (width as f64 - 1.0) / 2.0,
            ppy: (height as f64 - 1.0) / 2.0,
            model: DistortionModel::None,
            coeffs: [0.0; 5],
        }
    }
}

/// Rigid transform from the depth camera's frame to the colour camera's frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extrinsics {
    /// 3×3, row-major.
    pub rotation: [f64; 9],
    /// Metres.
    pub translation: [f64; 3],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Metres per raw Z16 unit.
    pub depth_scale: f64,
    pub depth: Intrinsics,
    pub color: Intrinsics,
    pub depth_to_color: Extrinsics,
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("{source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: field `{field}`: {message}")]
    Invalid {
        source_name: String,
        field: String,
        message: String,
    },
}

/// Largest accepted stream side, in pixels (the image cap of `crate::limits`).
const MAX_SIDE: usize = crate::limits::MAX_IMAGE_SIDE as usize;
/// How far R·Rᵀ may stray from I: rotations are usually printed with 6–7 decimals.
const ROTATION_TOLERANCE: f64 = 1e-4;
/// A depth→colour baseline beyond this is almost surely millimetres written as metres.
const MAX_BASELINE_M: f64 = 1.0;

impl Calibration {
    /// Parses and validates a calibration TOML. `source_name` (usually the file path) is
    /// named in every error.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Self, CalibrationError> {
        let calib: Calibration = toml::from_str(text).map_err(|e| CalibrationError::Parse {
            source_name: source_name.to_string(),
            message: e.to_string().replace('\n', " ").trim().to_string(),
        })?;
        calib.validate(source_name)?;
        Ok(calib)
    }

    pub fn to_toml_string(&self) -> String {
        // Serialising plain numbers and arrays cannot fail.
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks what parsing cannot: positive focal lengths and scale, finite numbers, sane
    /// sizes, a proper rotation. Every error names `source_name` and the field.
    pub fn validate(&self, source_name: &str) -> Result<(), CalibrationError> {
        let bad = |field: &str, message: String| CalibrationError::Invalid {
            source_name: source_name.to_string(),
            field: field.to_string(),
            message,
        };
        if !(self.depth_scale.is_finite() && self.depth_scale > 0.0) {
            return Err(bad(
                "depth_scale",
                format!(
                    "must be a positive number of metres per unit, got {}",
                    self.depth_scale
                ),
            ));
        }
        for (name, intr) in [("depth", &self.depth), ("color", &self.color)] {
            for (key, v) in [("width", intr.width), ("height", intr.height)] {
                if v == 0 || v > MAX_SIDE {
                    return Err(bad(
                        &format!("{name}.{key}"),
                        format!("must be between 1 and {MAX_SIDE} pixels, got {v}"),
                    ));
                }
            }
            // Registration sizes its tables from width × height: the image pixel cap applies.
            if (intr.width as u64).saturating_mul(intr.height as u64)
                > crate::limits::MAX_IMAGE_PIXELS
            {
                return Err(bad(
                    &format!("{name}.width"),
                    format!(
                        "{}x{} is more than {} pixels (docs/limits.md)",
                        intr.width,
                        intr.height,
                        crate::limits::MAX_IMAGE_PIXELS
                    ),
                ));
            }
            for (key, v) in [("fx", intr.fx), ("fy", intr.fy)] {
                if !(v.is_finite() && v > 0.0) {
                    return Err(bad(
                        &format!("{name}.{key}"),
                        format!("focal length must be a positive number of pixels, got {v}"),
                    ));
                }
            }
            for (key, v) in [("ppx", intr.ppx), ("ppy", intr.ppy)] {
                if !v.is_finite() {
                    return Err(bad(
                        &format!("{name}.{key}"),
                        format!("principal point must be finite, got {v}"),
                    ));
                }
            }
            if let Some(i) = intr.coeffs.iter().position(|c| !c.is_finite()) {
                return Err(bad(
                    &format!("{name}.coeffs"),
                    format!("coefficient {i} must be finite, got {}", intr.coeffs[i]),
                ));
            }
        }
        let r = &self.depth_to_color.rotation;
        if r.iter().any(|v| !v.is_finite()) {
            return Err(bad(
                "depth_to_color.rotation",
                "must hold 9 finite numbers".into(),
            ));
        }
        if self
            .depth_to_color
            .translation
            .iter()
            .any(|v| !v.is_finite())
        {
            return Err(bad(
                "depth_to_color.translation",
                "must hold 3 finite numbers (metres)".into(),
            ));
        }
        // R·Rᵀ = I and det R = +1, within what 6 printed decimals allow.
        let mut worst: f64 = 0.0;
        for i in 0..3 {
            for j in 0..3 {
                let dot: f64 = (0..3).map(|k| r[3 * i + k] * r[3 * j + k]).sum();
                worst = worst.max((dot - if i == j { 1.0 } else { 0.0 }).abs());
            }
        }
        let det = r[0] * (r[4] * r[8] - r[5] * r[7]) - r[1] * (r[3] * r[8] - r[5] * r[6])
            + r[2] * (r[3] * r[7] - r[4] * r[6]);
        if worst > ROTATION_TOLERANCE || det < 0.0 {
            return Err(bad(
                "depth_to_color.rotation",
                format!(
                    "must be a proper rotation matrix, row-major (R·Rᵀ deviates from I by {worst:.2e}, det {det:.4}); \
                     librealsense reports it column-major: transpose it"
                ),
            ));
        }
        if self
            .depth_to_color
            .translation
            .iter()
            .any(|v| v.abs() > MAX_BASELINE_M)
        {
            return Err(bad(
                "depth_to_color.translation",
                format!(
                    "must be in metres (each |t| ≤ {MAX_BASELINE_M} m), got {:?}",
                    self.depth_to_color.translation
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D435I: &str = include_str!("../../calibration/d435i.example.toml");
    const D405: &str = include_str!("../../calibration/d405.example.toml");

    fn err_of(text: &str) -> String {
        Calibration::from_toml_str(text, "cam.toml")
            .unwrap_err()
            .to_string()
    }

    fn assert_names(err: &str, field: &str) {
        assert!(
            err.starts_with("cam.toml: ") && err.contains(field),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn shipped_examples_parse_and_round_trip() {
        for text in [D435I, D405] {
            let calib = Calibration::from_toml_str(text, "example").unwrap();
            let again = Calibration::from_toml_str(&calib.to_toml_string(), "again").unwrap();
            assert_eq!(calib, again);
        }
        let d435i = Calibration::from_toml_str(D435I, "example").unwrap();
        assert_eq!((d435i.depth.width, d435i.color.width), (848, 1280));
        assert_eq!(d435i.color.model, DistortionModel::InverseBrownConrady);
    }

    #[test]
    fn zero_focal_length_names_the_field() {
        assert_names(
            &err_of(&D435I.replace("fx = 908.4", "fx = 0.0")),
            "color.fx",
        );
        assert_names(
            &err_of(&D435I.replace("fy = 421.3", "fy = -421.3")),
            "depth.fy",
        );
    }

    #[test]
    fn non_rotation_is_rejected() {
        let scaled = D435I.replace("rotation = [0.999992735", "rotation = [1.5");
        assert_names(&err_of(&scaled), "depth_to_color.rotation");
        let mirrored = D405.replace(
            "rotation = [0.999999848, 0.000174716, 0.000523538, -0.000174533, 0.999999924, -0.000349157, -0.000523599, 0.000349066, 0.999999802]",
            "rotation = [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]",
        );
        let err = err_of(&mirrored);
        assert_names(&err, "depth_to_color.rotation");
        assert!(err.contains("det"), "{err}");
    }

    #[test]
    fn translation_in_millimetres_is_rejected() {
        assert_names(
            &err_of(&D435I.replace("translation = [0.01485,", "translation = [14.85,")),
            "depth_to_color.translation",
        );
    }

    #[test]
    fn bad_sizes_and_scale_are_rejected() {
        assert_names(
            &err_of(&D435I.replace("width = 848", "width = 0")),
            "depth.width",
        );
        assert_names(
            &err_of(&D435I.replace("height = 720", "height = 100000")),
            "color.height",
        );
        assert_names(
            &err_of(&D435I.replace("depth_scale = 0.001 ", "depth_scale = 0.0 ")),
            "depth_scale",
        );
    }

    #[test]
    fn parse_errors_name_the_file_and_field() {
        assert_names(&err_of(&D435I.replace("fy = 908.6\n", "")), "fy");
        assert_names(
            &err_of(&D435I.replace("model = \"inverse_brown_conrady\"", "model = \"fisheye\"")),
            "fisheye",
        );
        assert_names(
            &err_of(&D435I.replace(
                "coeffs = [0.0, 0.0, 0.0, 0.0, 0.0]\n\n[color]",
                "coeffs = [0.0, 0.0]\n\n[color]",
            )),
            "coeffs",
        );
        assert_names(
            &err_of(&D435I.replace("ppx = 424.1", "ppx = \"centre\"")),
            "ppx",
        );
        assert_names(&err_of("depth_scale = 0.001\n"), "depth");
        assert_names(&err_of("this is not toml"), "cam.toml");
    }
}
