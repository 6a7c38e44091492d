//! PURE. SpatialBot's Depth API (reference §3): the model writes `Depth(x, y)` with normalised
//! coordinates (x = column fraction, y = row fraction); the runtime looks up the millimetres in
//! the registered depth of the original frame and answers in a follow-up USER turn.

use std::sync::OnceLock;

use regex::Regex;

use super::manifest::DepthApiSection;
use crate::rgbd::frame::DepthMm;

/// One `Depth(x, y)` call as the model wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthCall {
    /// The coordinates' text as written, e.g. "0.51".
    pub x_text: String,
    pub y_text: String,
    /// Parsed coordinates; `None` when the text is not a number (e.g. "1.2.3").
    pub x: Option<f64>,
    pub y: Option<f64>,
}

/// A call with its looked-up value.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DepthAnswer {
    pub x: String,
    pub y: String,
    /// Column and row looked up, when the coordinates were inside the image.
    pub pixel: Option<(usize, usize)>,
    /// Millimetres; `None` = unknown (out of range, no data).
    pub mm: Option<u32>,
}

fn call_pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(
        || match Regex::new(r"Depth\(\s*([0-9.]+)\s*,\s*([0-9.]+)\s*\)") {
            Ok(re) => re,
            Err(e) => unreachable!("constant regex: {e}"),
        },
    )
}

/// Every `Depth(x, y)` call in `text`, in order.
pub fn parse_calls(text: &str) -> Vec<DepthCall> {
    call_pattern()
        .captures_iter(text)
        .map(|c| {
            let x_text = c[1].to_string();
            let y_text = c[2].to_string();
            DepthCall {
                x: x_text.parse().ok(),
                y: y_text.parse().ok(),
                x_text,
                y_text,
            }
        })
        .collect()
}

/// Pixel `(column, row)` of normalised `(x, y)` in a `width`×`height` image:
/// `(floor(x·W), floor(y·H))`, with exactly 1.0 mapping to the last pixel. `None` outside [0, 1].
pub fn pixel_of(x: f64, y: f64, width: usize, height: usize) -> Option<(usize, usize)> {
    let one = |v: f64, n: usize| -> Option<usize> {
        if !(0.0..=1.0).contains(&v) || n == 0 {
            return None;
        }
        Some(((v * n as f64).floor() as usize).min(n - 1))
    };
    Some((one(x, width)?, one(y, height)?))
}

/// Millimetres at `(column, row)`: the exact pixel when `neighbourhood` is 0, else the median of
/// the non-zero pixels in the (2k+1)² box (clipped to the image; the lower middle of an even
/// count). `None` when there is no data.
pub fn depth_at(depth: &DepthMm, column: usize, row: usize, neighbourhood: usize) -> Option<u32> {
    if neighbourhood == 0 {
        return depth.get(column, row).filter(|mm| *mm > 0);
    }
    let k = neighbourhood;
    // The box never holds more pixels than the image, whatever k is.
    let side = k.saturating_mul(2).saturating_add(1);
    let mut values: Vec<u32> = Vec::with_capacity(
        side.saturating_mul(side)
            .min(depth.width() * depth.height()),
    );
    for y in row.saturating_sub(k)..=row.saturating_add(k).min(depth.height().saturating_sub(1)) {
        for x in column.saturating_sub(k)
            ..=column
                .saturating_add(k)
                .min(depth.width().saturating_sub(1))
        {
            if let Some(mm) = depth.get(x, y).filter(|mm| *mm > 0) {
                values.push(mm);
            }
        }
    }
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(values[(values.len() - 1) / 2])
}

/// Looks every call up in `depth`.
pub fn answer_calls(
    calls: &[DepthCall],
    depth: &DepthMm,
    neighbourhood: usize,
) -> Vec<DepthAnswer> {
    calls
        .iter()
        .map(|call| {
            let pixel = match (call.x, call.y) {
                (Some(x), Some(y)) => pixel_of(x, y, depth.width(), depth.height()),
                _ => None,
            };
            let mm = pixel.and_then(|(c, r)| depth_at(depth, c, r, neighbourhood));
            DepthAnswer {
                x: call.x_text.clone(),
                y: call.y_text.clone(),
                pixel,
                mm,
            }
        })
        .collect()
}

/// The follow-up USER message: one `reply` line per answer, joined with "\n".
pub fn reply_text(answers: &[DepthAnswer], settings: &DepthApiSection) -> String {
    answers
        .iter()
        .map(|a| {
            let value =
                a.mm.map(|mm| mm.to_string())
                    .unwrap_or_else(|| settings.unknown.clone());
            settings
                .reply
                .replace("{x}", &a.x)
                .replace("{y}", &a.y)
                .replace("{value}", &value)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_calls_with_and_without_spaces() {
        let calls = parse_calls("It is Depth(0.51,0.40) and Depth( 0.5 , 0.715 ). Depth(1.2.3,0)");
        assert_eq!(calls.len(), 3);
        assert_eq!((calls[0].x, calls[0].y), (Some(0.51), Some(0.40)));
        assert_eq!((calls[1].x_text.as_str(), calls[1].y), ("0.5", Some(0.715)));
        assert_eq!(calls[2].x, None);
    }

    #[test]
    fn looks_up_exact_pixel_and_reports_unknown() {
        let mut d = DepthMm::zeros(4, 2);
        d.set(2, 1, 1234);
        d.set(3, 1, (1 << 24) - 1);
        let calls = parse_calls(
            "Depth(0.5,0.5) Depth(1.0,1.0) Depth(0.0,0.0) Depth(1.5,0.2) Depth(1.2.3,0.1)",
        );
        let a = answer_calls(&calls, &d, 0);
        assert_eq!(
            a.iter().map(|a| a.mm).collect::<Vec<_>>(),
            vec![Some(1234), Some((1 << 24) - 1), None, None, None]
        );
        let text = reply_text(&a[..3], &DepthApiSection::default());
        assert_eq!(
            text,
            "API: Depth(0.5,0.5)=1234\nAPI: Depth(1.0,1.0)=16777215\nAPI: Depth(0.0,0.0)=unknown"
        );
    }

    #[test]
    fn neighbourhood_median_ignores_zeros() {
        let d = DepthMm::from_mm(3, 3, vec![0, 10, 0, 30, 0, 20, 0, 0, 40]).unwrap();
        assert_eq!(depth_at(&d, 1, 1, 0), None);
        assert_eq!(depth_at(&d, 1, 1, 1), Some(20));
        assert_eq!(depth_at(&d, 0, 0, 1), Some(10));
    }
}
