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

/// One SpatialBench record's outcome: file stem, record index, ground truth, the model's final
/// answer (`None`: not asked).
pub struct BenchRecord<'a> {
    pub file: &'a str,
    pub index: usize,
    pub answer: &'a str,
    pub response: Option<&'a str>,
}

/// SpatialBench's score of one task file, as its evaluation script computes it (reference §5):
/// reach and size in (positive, negative) record pairs, +1 per right answer and +1 when both
/// are, out of 3; existence in pairs, 1 when both are right; positional plain accuracy;
/// counting 100 − the mean relative error in %. A response without a whole number counts as a
/// 100 % error (the script would stop there); a record not asked counts as wrong.
pub fn spatialbench_score(file: &str, records: &[BenchRecord<'_>]) -> Option<f64> {
    let right = |r: &BenchRecord<'_>| r.response.is_some_and(|resp| resp.contains(r.answer));
    let mut mine: Vec<&BenchRecord<'_>> = records.iter().filter(|r| r.file == file).collect();
    mine.sort_by_key(|r| r.index);
    let last = mine.last()?.index;
    let at = |i: usize| mine.iter().find(|r| r.index == i).copied();
    let pairs = (last + 2) / 2;
    match file {
        "reach" | "size" => {
            let mut score = 0;
            for k in 0..pairs {
                let p = at(2 * k).is_some_and(right);
                let n = at(2 * k + 1).is_some_and(right);
                score += usize::from(p) + usize::from(n) + usize::from(p && n);
            }
            Some(100.0 * score as f64 / (3 * pairs) as f64)
        }
        "existence" => {
            let both = (0..pairs)
                .filter(|k| at(2 * k).is_some_and(right) && at(2 * k + 1).is_some_and(right))
                .count();
            Some(100.0 * both as f64 / pairs as f64)
        }
        "positional" => {
            Some(100.0 * mine.iter().filter(|r| right(r)).count() as f64 / mine.len() as f64)
        }
        "counting" => {
            let errors: Vec<f64> = mine
                .iter()
                .map(|r| {
                    let gt = r.answer.trim().parse::<f64>().unwrap_or(0.0);
                    match (r.response.and_then(first_integer), gt > 0.0) {
                        (Some(got), true) => (got as f64 - gt).abs() / gt * 100.0,
                        _ => 100.0,
                    }
                })
                .collect();
            Some(100.0 - errors.iter().sum::<f64>() / errors.len() as f64)
        }
        _ => None,
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
    fn spatialbench_pairs_and_counting() {
        let r = |file, index, answer, response| BenchRecord {
            file,
            index,
            answer,
            response,
        };
        let recs = [
            r("reach", 0, "Yes", Some("Yes")),
            r("reach", 1, "No", Some("No")),
            r("reach", 2, "Yes", Some("No")),
            r("reach", 3, "No", Some("No")),
            r("existence", 0, "Yes", Some("Yes")),
            r("existence", 1, "No", Some("Yes")),
            r("counting", 0, "4", Some("2")),
            r("counting", 1, "2", None),
        ];
        // Pair 1: 1 + 1 + 1; pair 2: 0 + 1 + 0 → 4 of 6.
        assert!((spatialbench_score("reach", &recs).unwrap() - 400.0 / 6.0).abs() < 1e-9);
        assert_eq!(spatialbench_score("existence", &recs), Some(0.0));
        // Errors 50 % and 100 % → 25.
        assert_eq!(spatialbench_score("counting", &recs), Some(25.0));
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
