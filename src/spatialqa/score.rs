//! Whether an answer is right, by the question's kind (docs/spatialqa.md, "Scoring"):
//! yes/no by the first word, a choice by naming it and no other, depth within the tolerance,
//! a count exactly, text by SpatialBench's substring rule (`gt in response`).

use super::{Kind, Question};

/// The first whole number in `text` that is not part of a decimal (so "point(0.41,0.62) is
/// 734 mm" gives 734).
pub fn first_integer(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let after_dot = start > 0 && bytes[start - 1] == b'.';
            let before_dot =
                i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit();
            if !after_dot && !before_dot {
                if let Ok(v) = text[start..i].parse::<i64>() {
                    return Some(v);
                }
            }
            // Skip the rest of a decimal.
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    None
}

/// The answer's first word, lower-case, without punctuation.
fn first_word(text: &str) -> String {
    text.split_whitespace()
        .next()
        .unwrap_or("")
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

/// Whether `response` answers `q` right.
pub fn is_correct(q: &Question, response: &str) -> bool {
    match q.kind {
        Kind::YesNo => first_word(response) == first_word(&q.answer),
        Kind::Choice => {
            let names = |c: &str| response.to_lowercase().contains(&c.to_lowercase());
            names(&q.answer)
                && q.choices
                    .iter()
                    .filter(|c| !c.eq_ignore_ascii_case(&q.answer))
                    // A choice that contains the answer ("the box" in "the red box") cannot rule it out.
                    .filter(|c| !q.answer.to_lowercase().contains(&c.to_lowercase()))
                    .all(|c| !names(c))
        }
        Kind::DepthMm => {
            let (Some(want), Some(got)) =
                (q.answer.trim().parse::<f64>().ok(), first_integer(response))
            else {
                return false;
            };
            (got as f64 - want).abs() <= q.tolerance.unwrap_or(0.0)
        }
        Kind::Count => {
            let Ok(want) = q.answer.trim().parse::<i64>() else {
                return false;
            };
            first_integer(response) == Some(want) || first_word(response) == number_word(want)
        }
        Kind::Text => response.contains(&q.answer),
    }
}

fn number_word(n: i64) -> String {
    const WORDS: [&str; 11] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    usize::try_from(n)
        .ok()
        .and_then(|i| WORDS.get(i))
        .map(|w| w.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spatialqa::Turn;

    fn q(kind: Kind, answer: &str, choices: &[&str], tolerance: Option<f64>) -> Question {
        Question {
            id: "t".into(),
            category: "x".into(),
            bench_category: "x".into(),
            level: "low".into(),
            image: String::new(),
            depth: String::new(),
            question: String::new(),
            answer: answer.into(),
            kind,
            choices: choices.iter().map(|c| c.to_string()).collect(),
            tolerance,
            conversation: vec![Turn::human("q")],
        }
    }

    #[test]
    fn integers_skip_decimals() {
        assert_eq!(first_integer("point(0.41,0.62) is 734 mm."), Some(734));
        assert_eq!(first_integer("Since 700 < 801"), Some(700));
        assert_eq!(first_integer("no number 0.5"), None);
    }

    #[test]
    fn kinds() {
        let yn = q(Kind::YesNo, "Yes", &[], None);
        assert!(is_correct(&yn, "Yes, the gripper has touched it."));
        assert!(!is_correct(&yn, "No. Yes."));
        let c = q(
            Kind::Choice,
            "the red box",
            &["the red box", "the ball"],
            None,
        );
        assert!(is_correct(&c, "Since 700 < 800, the red box is closer."));
        assert!(!is_correct(&c, "The red box or the ball."));
        let d = q(Kind::DepthMm, "734", &[], Some(14.0));
        assert!(is_correct(
            &d,
            "The depth value of point(0.41,0.62) is 740 mm."
        ));
        assert!(!is_correct(
            &d,
            "The depth value of point(0.41,0.62) is 750 mm."
        ));
        let n = q(Kind::Count, "3", &[], None);
        assert!(is_correct(&n, "There are 3 boxes."));
        assert!(is_correct(&n, "Three."));
        assert!(!is_correct(&n, "There are 4 boxes."));
    }
}
