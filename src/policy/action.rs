//! The policy's answer text → numbers → decoded action values.
//!
//! The released policy answers with a bracketed comma list, `"[v0,v1,…]"`, of plain text
//! numbers (ints for some datasets, floats for ManiSkill). Anything else is a parse failure:
//! a robot must not act on a guess.

use serde::Deserialize;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionParseError {
    #[error("action text is not a bracketed list `[v0,v1,…]`: {text:?}")]
    NotBracketed { text: String },
    #[error("action text has an empty item at index {index}: {text:?}")]
    EmptyItem { index: usize, text: String },
    #[error("action item {index} is not a decimal number: {item:?}")]
    NotANumber { index: usize, item: String },
    #[error("action item {index} is not finite: {item:?}")]
    NotFinite { index: usize, item: String },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionDecodeError {
    #[error("the model answered {got} action values; the manifest's action layout has {want}")]
    WrongLength { got: usize, want: usize },
    #[error("the model answered {got} action values; the ManiSkill layout needs at least {want}")]
    TooShort { got: usize, want: usize },
}

/// Parses `"[v0, v1, …]"`: surrounding whitespace is ignored, and so is whitespace around each
/// item. Each item is an optional sign, digits with an optional fraction, and an optional
/// exponent. Empty lists, empty items, words (`nan`, `inf`, `up`), and values that overflow
/// to infinity are errors.
pub fn parse_action_text(text: &str) -> Result<Vec<f64>, ActionParseError> {
    let trimmed = text.trim();
    let inner = trimmed
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| ActionParseError::NotBracketed {
            text: text.to_string(),
        })?;
    inner
        .split(',')
        .enumerate()
        .map(|(index, raw)| {
            let item = raw.trim();
            if item.is_empty() {
                return Err(ActionParseError::EmptyItem {
                    index,
                    text: text.to_string(),
                });
            }
            if !is_decimal_number(item) {
                return Err(ActionParseError::NotANumber {
                    index,
                    item: item.to_string(),
                });
            }
            let v: f64 = item.parse().map_err(|_| ActionParseError::NotANumber {
                index,
                item: item.to_string(),
            })?;
            if !v.is_finite() {
                return Err(ActionParseError::NotFinite {
                    index,
                    item: item.to_string(),
                });
            }
            Ok(v)
        })
        .collect()
}

/// `[+-]? (digits [. digits?]? | . digits) ([eE] [+-]? digits)?`
fn is_decimal_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

/// One index of the action vector: `decoded = scale · v + offset`, with the constants rounded
/// to f32 and the arithmetic in f64, as the reference's numpy 1.x code computes it.
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionDim {
    pub name: String,
    /// The decoded range, for the governor; decoding itself never clamps.
    #[serde(default)]
    pub min: Option<f32>,
    #[serde(default)]
    pub max: Option<f32>,
    #[serde(default = "one")]
    pub scale: f32,
    #[serde(default)]
    pub offset: f32,
}

fn one() -> f32 {
    1.0
}

impl ActionDim {
    pub fn identity(name: &str) -> Self {
        Self {
            name: name.to_string(),
            min: None,
            max: None,
            scale: 1.0,
            offset: 0.0,
        }
    }

    /// `v · (max − min) + min` with f32 constants, the reference's mapping from [0, 1].
    pub fn affine_from_unit(name: &str, min: f32, max: f32) -> Self {
        Self {
            name: name.to_string(),
            min: Some(min),
            max: Some(max),
            scale: max - min,
            offset: min,
        }
    }

    pub fn decode(&self, v: f64) -> f64 {
        v * f64::from(self.scale) + f64::from(self.offset)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ActionLayout {
    dims: Vec<ActionDim>,
    /// Fewest values an answer must have.
    min_len: usize,
    /// Values beyond `dims` pass through unchanged (the ManiSkill decoder does this);
    /// otherwise the answer must have exactly `dims.len()` values.
    pass_through_extra: bool,
}

/// ManiSkill world-vector and rotation-delta range: ±0.2 (m, rad).
const MANISKILL_DELTA: f32 = 0.2;

impl ActionLayout {
    /// An explicit layout from a manifest: exactly one value per dimension.
    pub fn new(dims: Vec<ActionDim>) -> Self {
        Self {
            min_len: dims.len(),
            dims,
            pass_through_extra: false,
        }
    }

    /// The released `process_answer` for ManiSkill: indices 1–6 map v → 0.4·v − 0.2, index 0
    /// and indices ≥ 7 pass through. At least 7 values; index 7 is named `gripper` (the
    /// RT-1/Open-X order the code's indexing matches).
    pub fn maniskill() -> Self {
        let mut dims = vec![ActionDim::identity("terminate")];
        for name in ["dx", "dy", "dz", "droll", "dpitch", "dyaw"] {
            dims.push(ActionDim::affine_from_unit(
                name,
                -MANISKILL_DELTA,
                MANISKILL_DELTA,
            ));
        }
        let min_len = dims.len();
        dims.push(ActionDim::identity("gripper"));
        Self {
            dims,
            min_len,
            pass_through_extra: true,
        }
    }

    pub fn dims(&self) -> &[ActionDim] {
        &self.dims
    }

    pub fn decode(&self, values: &[f64]) -> Result<Vec<f64>, ActionDecodeError> {
        if self.pass_through_extra {
            if values.len() < self.min_len {
                return Err(ActionDecodeError::TooShort {
                    got: values.len(),
                    want: self.min_len,
                });
            }
        } else if values.len() != self.dims.len() {
            return Err(ActionDecodeError::WrongLength {
                got: values.len(),
                want: self.dims.len(),
            });
        }
        Ok(values
            .iter()
            .enumerate()
            .map(|(i, &v)| self.dims.get(i).map_or(v, |d| d.decode(v)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_floats_and_ints() {
        assert_eq!(
            parse_action_text(" [0.5, 0.25,1,-2e-1 ,+3.] \n").unwrap(),
            vec![0.5, 0.25, 1.0, -0.2, 3.0]
        );
        assert_eq!(parse_action_text("[7]").unwrap(), vec![7.0]);
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "[]",
            "0.5,0.5",
            "[0.5,0.5",
            "[0.5,,0.5]",
            "[0.5,]",
            "[nan]",
            "[inf]",
            "[-infinity]",
            "[1_0]",
            "[0x10]",
            "[.]",
            "[1e]",
            "[up]",
            "([1])",
            "[1e999]",
            "[1 2]",
        ] {
            assert!(parse_action_text(bad).is_err(), "accepted {bad:?}");
        }
        assert!(matches!(
            parse_action_text("[1e999]"),
            Err(ActionParseError::NotFinite { .. })
        ));
    }

    #[test]
    fn maniskill_matches_reference_values() {
        // Values the reference computes (spatialbot-reference.md §4), to the last bit.
        let l = ActionLayout::maniskill();
        let d = l
            .decode(&[1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 0.51, 0.3, 9.0])
            .unwrap();
        assert_eq!(d[0], 1.0);
        assert_eq!(d[1], -0.20000000298023224);
        assert_eq!(d[2], -0.10000000149011612);
        assert_eq!(d[3], 0.0);
        assert_eq!(d[4], 0.10000000149011612);
        assert_eq!(d[5], 0.20000000298023224);
        assert!((d[6] - 0.00400000006).abs() < 1e-11);
        assert_eq!(&d[7..], &[0.3, 9.0]);
        assert_eq!(
            l.decode(&[0.0; 6]),
            Err(ActionDecodeError::TooShort { got: 6, want: 7 })
        );
    }

    #[test]
    fn explicit_layout_needs_exact_length() {
        let l = ActionLayout::new(vec![
            ActionDim::identity("a"),
            ActionDim::affine_from_unit("b", -1.0, 1.0),
        ]);
        assert_eq!(l.decode(&[3.0, 0.5]).unwrap(), vec![3.0, 0.0]);
        assert_eq!(
            l.decode(&[3.0]),
            Err(ActionDecodeError::WrongLength { got: 1, want: 2 })
        );
    }
}
