//! The limits policy: one documented cap for every size, count or duration that comes from a
//! file or a flag. Each is checked against its cap before anything is allocated or spawned, so a
//! bad input ends with exit code 2 naming the file or flag and the field, never with an
//! allocation failure or a panic. docs/limits.md lists the same caps in a table.

use std::fmt;
use std::time::Duration;

/// Widest or tallest image accepted (PNG header), in pixels.
pub const MAX_IMAGE_SIDE: u64 = 16_384;
/// Most pixels in one image accepted (PNG header): 8192 × 4096. A 4K RealSense colour frame
/// (3840 × 2160) is a quarter of this.
pub const MAX_IMAGE_PIXELS: u64 = 8192 * 4096;
/// Largest square side a vision graph may take (`vision.image_size`, `preprocess --size`).
/// The released towers use 336 and 384.
pub const MAX_MODEL_IMAGE_SIZE: u64 = 4096;
/// Most image tokens one image may become (`vision.tokens_per_image`).
pub const MAX_TOKENS_PER_IMAGE: u64 = 65_536;
/// Widest hidden state or embedding (`llm.hidden_size`, `vision.embed_dim`).
pub const MAX_HIDDEN_SIZE: u64 = 65_536;
/// Most decoder layers (`llm.num_layers`).
pub const MAX_LAYERS: u64 = 1024;
/// Most key/value heads (`llm.num_kv_heads`).
pub const MAX_KV_HEADS: u64 = 1024;
/// Widest attention head (`llm.head_dim`).
pub const MAX_HEAD_DIM: u64 = 4096;
/// Largest vocabulary (`llm.vocab_size`).
pub const MAX_VOCAB: u64 = 4_194_304;
/// Longest context (`llm.context_limit`), in positions.
pub const MAX_CONTEXT: u64 = 1_048_576;
/// Most tokens one answer may generate (`llm.max_new_tokens`, `--max-new-tokens`).
pub const MAX_NEW_TOKENS: u64 = 100_000;
/// Highest sampling temperature (`ask --temperature`); `--top-p` is a mass in (0, 1].
pub const MAX_TEMPERATURE: f32 = 100.0;
/// Most frames of policy history (`policy.frames`).
pub const MAX_POLICY_FRAMES: u64 = 64;
/// Most Depth API rounds per question (`depth_api.max_rounds`).
pub const MAX_DEPTH_API_ROUNDS: u64 = 64;
/// Largest Depth API neighbourhood k (`depth_api.neighbourhood`): a (2k+1)² box of pixels.
pub const MAX_DEPTH_NEIGHBOURHOOD: u64 = 64;
/// Most compute threads (`--threads`, `backend.threads`).
pub const MAX_THREADS: u64 = 64;
/// Most recorder encoder threads (`record --encoders`).
pub const MAX_ENCODERS: u64 = 64;
/// Most frames waiting for a recorder encoder (`record --queue`).
pub const MAX_QUEUE: u64 = 4096;
/// Longest run or recording asked for in seconds (`--duration`): 365 days.
pub const MAX_DURATION_S: f64 = 365.0 * 24.0 * 3600.0;
/// Most control-loop steps (`run --steps`).
pub const MAX_STEPS: u64 = 1_000_000_000;
/// Longest time in milliseconds a flag may give (`--max-age-ms`, `--stall-stop-ms`,
/// `--generate-deadline-ms`): one day.
pub const MAX_MS: u64 = 24 * 3600 * 1000;

/// A value over its cap (or otherwise not allowed). `origin` is the file or flag, `field` the
/// field inside it (empty for a flag).
#[derive(Clone, Debug, PartialEq)]
pub struct LimitError {
    pub origin: String,
    pub field: String,
    pub value: String,
    pub allowed: String,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(
                f,
                "{} = {} is not allowed; allowed: {} (docs/limits.md)",
                self.origin, self.value, self.allowed
            )
        } else {
            write!(
                f,
                "{}: {} = {} is not allowed; allowed: {} (docs/limits.md)",
                self.origin, self.field, self.value, self.allowed
            )
        }
    }
}

impl std::error::Error for LimitError {}

impl LimitError {
    fn new(origin: &str, field: &str, value: impl fmt::Display, allowed: String) -> Self {
        LimitError {
            origin: origin.to_string(),
            field: field.to_string(),
            value: value.to_string(),
            allowed,
        }
    }
}

/// A number of seconds as an operator wrote it, short: `1e300`, not three hundred digits.
fn seconds_text(seconds: f64) -> String {
    if seconds.is_finite() && seconds.abs() >= 1e15 {
        format!("{seconds:e}")
    } else {
        seconds.to_string()
    }
}

/// `lo ..= cap`, else an error naming `origin` and `field`.
pub fn check_count(
    origin: &str,
    field: &str,
    value: u64,
    lo: u64,
    cap: u64,
) -> Result<u64, LimitError> {
    if (lo..=cap).contains(&value) {
        Ok(value)
    } else {
        Err(LimitError::new(
            origin,
            field,
            value,
            format!("{lo}..={cap}"),
        ))
    }
}

/// [`check_count`] for a `usize`.
pub fn check_usize(
    origin: &str,
    field: &str,
    value: usize,
    lo: u64,
    cap: u64,
) -> Result<usize, LimitError> {
    check_count(origin, field, value as u64, lo, cap).map(|_| value)
}

/// Seconds → a `Duration`: finite, greater than 0 and at most [`MAX_DURATION_S`].
pub fn duration_s(origin: &str, field: &str, seconds: f64) -> Result<Duration, LimitError> {
    if seconds.is_finite() && seconds > 0.0 && seconds <= MAX_DURATION_S {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(LimitError::new(
            origin,
            field,
            seconds_text(seconds),
            format!("a positive number of seconds, at most {MAX_DURATION_S}"),
        ))
    }
}

/// Seconds that may be 0 → a `Duration` (timeouts): finite, 0 ..= [`MAX_DURATION_S`].
pub fn duration_s_or_zero(origin: &str, field: &str, seconds: f64) -> Result<Duration, LimitError> {
    if seconds.is_finite() && (0.0..=MAX_DURATION_S).contains(&seconds) {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(LimitError::new(
            origin,
            field,
            seconds_text(seconds),
            format!("0 to {MAX_DURATION_S} seconds"),
        ))
    }
}

/// An image of `width × height` pixels from `origin`: both sides 1 ..= [`MAX_IMAGE_SIDE`] and
/// at most [`MAX_IMAGE_PIXELS`] pixels.
pub fn check_image(origin: &str, width: u64, height: u64) -> Result<(), LimitError> {
    let pixels = width.saturating_mul(height);
    if width == 0
        || height == 0
        || width > MAX_IMAGE_SIDE
        || height > MAX_IMAGE_SIDE
        || pixels > MAX_IMAGE_PIXELS
    {
        return Err(LimitError::new(
            origin,
            "image size",
            format!("{width}x{height}"),
            format!(
                "sides of 1..={MAX_IMAGE_SIDE} pixels and at most {MAX_IMAGE_PIXELS} pixels in all"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_name_origin_and_field() {
        let e = check_count(
            "m.toml",
            "vision.image_size",
            100_000,
            1,
            MAX_MODEL_IMAGE_SIZE,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("m.toml") && e.contains("vision.image_size"),
            "{e}"
        );
        let e = duration_s("--duration", "", 1e300).unwrap_err().to_string();
        assert!(e.starts_with("--duration = 1e300 is not allowed"), "{e}");
        assert!(duration_s("--duration", "", f64::NAN).is_err());
        assert!(duration_s("--duration", "", 0.5).is_ok());
        assert!(check_image("x.png", 100_000, 100_000).is_err());
        assert!(check_image("x.png", 3840, 2160).is_ok());
        assert!(check_image("x.png", 0, 1).is_err());
    }
}
