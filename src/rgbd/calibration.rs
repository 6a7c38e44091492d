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

    fn validate(&self, source_name: &str) -> Result<(), CalibrationError> {
        let bad = |field: &str, message: String| CalibrationError::Invalid {
            source_name: source_name.to_string(),
            field: field.to_string(),
            message,
        };
        if !(self.depth_scale.is_finite() && self.depth_scale > 0.0) {
            return Err(bad(
                "depth_scale",
                format!(
                    "must be a positive number of metres, got {}",
                    self.depth_scale
                ),
            ));
        }
        for (name, intr) in [("depth", &self.depth), ("color", &self.color)] {
            if intr.width == 0 || intr.height == 0 {
                return Err(bad(
                    &format!("{name}.width/height"),
                    "must be non-zero".into(),
                ));
            }
            for (key, v) in [("fx", intr.fx), ("fy", intr.fy)] {
                if !(v.is_finite() && v > 0.0) {
                    return Err(bad(
                        &format!("{name}.{key}"),
                        format!("focal length must be positive, got {v}"),
                    ));
                }
            }
            for (key, v) in [("ppx", intr.ppx), ("ppy", intr.ppy)] {
                if !v.is_finite() {
                    return Err(bad(
                        &format!("{name}.{key}"),
                        format!("must be finite, got {v}"),
                    ));
                }
            }
            if intr.coeffs.iter().any(|c| !c.is_finite()) {
                return Err(bad(&format!("{name}.coeffs"), "must all be finite".into()));
            }
        }
        if self
            .depth_to_color
            .rotation
            .iter()
            .chain(&self.depth_to_color.translation)
            .any(|v| !v.is_finite())
        {
            return Err(bad(
                "depth_to_color",
                "rotation and translation must be finite".into(),
            ));
        }
        Ok(())
    }
}
