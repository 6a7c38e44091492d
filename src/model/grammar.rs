//! PURE. The small grammars constrained decoding keeps an answer inside (docs/decoding.md): a
//! character-level state machine over the answer's text. [`Grammar::step`] takes one
//! character; `None` means the text can no longer become a well-formed answer.
//!
//! - [`Grammar::DepthCalls`] (SpatialBot): free text, except that every `Depth(` opens a Depth
//!   API call that must read `Depth(x,y)` or `Depth(x, y)` with x and y numbers in [0, 1] in
//!   the released code's format (`0.51`, `0.715`, `1`: at most [`DEPTH_FRACTION_DIGITS`]
//!   fraction digits).
//! - [`Grammar::ActionList`] (policy): the whole answer is `[v0,v1,…]` (a space allowed after
//!   each comma, up to two before the bracket) with exactly one value per range, each a decimal
//!   number (`-`? digits, `.` digits; no exponent) inside its range, then the stop token.
//!
//! Every grammar is finite in length inside a structure, so a constrained answer always closes.

use crate::policy::ActionLayout;

/// Most fraction digits of a Depth API coordinate.
pub const DEPTH_FRACTION_DIGITS: u8 = 3;
/// Most integer and fraction digits of an action value.
pub const ACTION_INTEGER_DIGITS: u8 = 3;
pub const ACTION_FRACTION_DIGITS: u8 = 4;
/// Whitespace characters allowed before an action list's `[`.
const LEADING_SPACES: u8 = 2;
const CALL_OPEN: &[u8] = b"Depth(";

/// The closed range a number's value must lie in (`None`: unbounded on that side).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValueRange {
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

impl ValueRange {
    pub const UNIT: ValueRange = ValueRange {
        lo: Some(0.0),
        hi: Some(1.0),
    };
    pub const ANY: ValueRange = ValueRange { lo: None, hi: None };
}

#[derive(Clone, Debug, PartialEq)]
pub enum Grammar {
    DepthCalls,
    /// One range per value of the list, in order.
    ActionList {
        ranges: Vec<ValueRange>,
    },
}

/// A number written so far: sign, integer digits, point, fraction digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NumberPrefix {
    negative: bool,
    int: u64,
    int_digits: u8,
    point: bool,
    frac: u64,
    frac_digits: u8,
}

/// Where the machine is. Small and hashable: constrained decoding caches one token mask per
/// state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Free text; `matched` characters of `Depth(` are the text's tail.
    Free { matched: u8 },
    /// Inside `Depth(`: coordinate 0 (x) or 1 (y) so far; `space` after the comma seen.
    Call {
        coordinate: u8,
        number: NumberPrefix,
        space: bool,
    },
    /// Before the action list's `[`, after `spaces` whitespace characters.
    ListStart { spaces: u8 },
    /// Value `index` of the list so far; `space` after the comma seen.
    Value {
        index: u16,
        number: NumberPrefix,
        space: bool,
    },
    /// After `]`: only a stop token.
    ListDone,
}

/// Limits of one number: digits and the value's range in units of 10^-fraction_digits.
#[derive(Clone, Copy, Debug)]
struct NumberSpec {
    int_digits: u8,
    frac_digits: u8,
    lo: i128,
    hi: i128,
}

fn pow10(n: u8) -> i128 {
    10i128.pow(u32::from(n))
}

impl NumberSpec {
    fn new(range: ValueRange, int_digits: u8, frac_digits: u8) -> NumberSpec {
        let unit = pow10(frac_digits) as f64;
        let widest = pow10(int_digits) * pow10(frac_digits);
        // A hair of slack: a bound computed in floating point (min − offset)/scale can miss the
        // grid point it means by an ulp.
        let lo = range.lo.map_or(-widest, |v| {
            ((v * unit - 1e-6).ceil() as i128).clamp(-widest, widest)
        });
        let hi = range.hi.map_or(widest, |v| {
            ((v * unit + 1e-6).floor() as i128).clamp(-widest, widest)
        });
        NumberSpec {
            int_digits,
            frac_digits,
            lo,
            hi,
        }
    }

    /// Whether some completion of `p` is a number inside the range.
    fn feasible(&self, p: &NumberPrefix) -> bool {
        let unit = pow10(self.frac_digits);
        let sign = |lo: i128, hi: i128| if p.negative { (-hi, -lo) } else { (lo, hi) };
        let hits = |lo: i128, hi: i128| {
            let (lo, hi) = sign(lo, hi);
            lo <= self.hi && hi >= self.lo
        };
        if p.point {
            let step = pow10(self.frac_digits - p.frac_digits);
            let base = i128::from(p.int) * unit + i128::from(p.frac) * step;
            return hits(base, base + step - 1);
        }
        if p.int_digits == 0 {
            return hits(0, pow10(self.int_digits) * unit - 1);
        }
        if p.int == 0 {
            return hits(0, unit - 1);
        }
        (0..=self.int_digits - p.int_digits).any(|j| {
            let scale = pow10(j);
            hits(
                i128::from(p.int) * scale * unit,
                (i128::from(p.int) + 1) * scale * unit - 1,
            )
        })
    }

    /// Whether `p` is a whole number inside the range.
    fn complete(&self, p: &NumberPrefix) -> bool {
        if p.int_digits == 0 || (p.point && p.frac_digits == 0) {
            return false;
        }
        let unit = pow10(self.frac_digits);
        let mut v =
            i128::from(p.int) * unit + i128::from(p.frac) * pow10(self.frac_digits - p.frac_digits);
        if p.negative {
            v = -v;
        }
        (self.lo..=self.hi).contains(&v)
    }

    /// `p` followed by `c`, when that can still become a number in range.
    fn step(&self, p: NumberPrefix, c: char) -> Option<NumberPrefix> {
        let mut n = p;
        match c {
            '-' if p == NumberPrefix::default() && self.lo < 0 => n.negative = true,
            '0'..='9' => {
                let d = u64::from(c as u8 - b'0');
                if p.point {
                    if p.frac_digits >= self.frac_digits {
                        return None;
                    }
                    n.frac = p.frac * 10 + d;
                    n.frac_digits += 1;
                } else {
                    if p.int_digits >= self.int_digits || (p.int_digits == 1 && p.int == 0) {
                        return None;
                    }
                    n.int = p.int * 10 + d;
                    n.int_digits += 1;
                }
            }
            '.' if !p.point && p.int_digits > 0 && self.frac_digits > 0 => n.point = true,
            _ => return None,
        }
        self.feasible(&n).then_some(n)
    }
}

impl Grammar {
    /// The state before the first character.
    pub fn start(&self) -> State {
        match self {
            Grammar::DepthCalls => State::Free { matched: 0 },
            Grammar::ActionList { .. } => State::ListStart { spaces: 0 },
        }
    }

    /// Whether the answer may end (a stop token may come) in `state`.
    pub fn accepts(&self, state: &State) -> bool {
        matches!(state, State::Free { .. } | State::ListDone)
    }

    /// Whether `state` is free text, where nearly every token is allowed.
    pub fn is_free(&self, state: &State) -> bool {
        matches!(state, State::Free { .. })
    }

    fn number_spec(&self, state: &State) -> Option<NumberSpec> {
        match (self, state) {
            (Grammar::DepthCalls, State::Call { .. }) => {
                Some(NumberSpec::new(ValueRange::UNIT, 1, DEPTH_FRACTION_DIGITS))
            }
            (Grammar::ActionList { ranges }, State::Value { index, .. }) => ranges
                .get(usize::from(*index))
                .map(|r| NumberSpec::new(*r, ACTION_INTEGER_DIGITS, ACTION_FRACTION_DIGITS)),
            _ => None,
        }
    }

    /// The state after `c`; `None` when no well-formed answer starts with the text so far.
    pub fn step(&self, state: State, c: char) -> Option<State> {
        match state {
            State::Free { matched } => {
                let m = usize::from(matched);
                if m + 1 == CALL_OPEN.len() && c == '(' {
                    return Some(State::Call {
                        coordinate: 0,
                        number: NumberPrefix::default(),
                        space: false,
                    });
                }
                let matched = if c as u32 == u32::from(CALL_OPEN[m]) {
                    matched + 1
                } else if c == 'D' {
                    1
                } else {
                    0
                };
                Some(State::Free { matched })
            }
            State::Call {
                coordinate,
                number,
                space,
            } => {
                let spec = self.number_spec(&state)?;
                match c {
                    ',' if coordinate == 0 && spec.complete(&number) => Some(State::Call {
                        coordinate: 1,
                        number: NumberPrefix::default(),
                        space: false,
                    }),
                    ')' if coordinate == 1 && spec.complete(&number) => {
                        Some(State::Free { matched: 0 })
                    }
                    ' ' if coordinate == 1 && !space && number == NumberPrefix::default() => {
                        Some(State::Call {
                            coordinate,
                            number,
                            space: true,
                        })
                    }
                    _ => Some(State::Call {
                        coordinate,
                        number: spec.step(number, c)?,
                        space,
                    }),
                }
            }
            State::ListStart { spaces } => match c {
                '[' => Some(State::Value {
                    index: 0,
                    number: NumberPrefix::default(),
                    space: false,
                }),
                ' ' | '\n' if spaces < LEADING_SPACES => {
                    Some(State::ListStart { spaces: spaces + 1 })
                }
                _ => None,
            },
            State::Value {
                index,
                number,
                space,
            } => {
                let Grammar::ActionList { ranges } = self else {
                    return None;
                };
                let spec = self.number_spec(&state)?;
                let last = usize::from(index) + 1 == ranges.len();
                match c {
                    ',' if !last && spec.complete(&number) => Some(State::Value {
                        index: index + 1,
                        number: NumberPrefix::default(),
                        space: false,
                    }),
                    ']' if last && spec.complete(&number) => Some(State::ListDone),
                    ' ' if index > 0 && !space && number == NumberPrefix::default() => {
                        Some(State::Value {
                            index,
                            number,
                            space: true,
                        })
                    }
                    _ => Some(State::Value {
                        index,
                        number: spec.step(number, c)?,
                        space,
                    }),
                }
            }
            State::ListDone => None,
        }
    }

    /// The state after `text`, or `None` where it leaves the grammar.
    pub fn run(&self, state: State, text: &str) -> Option<State> {
        text.chars().try_fold(state, |s, c| self.step(s, c))
    }

    /// The characters a well-formed answer's structure needs, each of which the tokenizer must
    /// spell as one token (so that no reachable state is a dead end).
    pub fn alphabet(&self) -> &'static str {
        match self {
            Grammar::DepthCalls => "0123456789.,)",
            Grammar::ActionList { .. } => "[0123456789.,]-",
        }
    }

    /// The list a policy's action layout reads: one value per dimension, each inside the raw
    /// range that decodes into the dimension's `[min, max]` (unbounded where either is absent).
    pub fn for_actions(layout: &ActionLayout) -> Result<Grammar, String> {
        let ranges = layout
            .dims()
            .iter()
            .map(|d| match (d.min, d.max) {
                (Some(min), Some(max)) if d.scale != 0.0 && d.scale.is_finite() => {
                    let raw = |v: f32| (f64::from(v) - f64::from(d.offset)) / f64::from(d.scale);
                    let (a, b) = (raw(min), raw(max));
                    ValueRange {
                        lo: Some(a.min(b)),
                        hi: Some(a.max(b)),
                    }
                }
                _ => ValueRange::ANY,
            })
            .collect();
        Grammar::action_list(ranges)
    }

    /// A list of these values' ranges, or an error when there are none (or too many to index),
    /// or a range holds no number the grammar can write.
    pub fn action_list(ranges: Vec<ValueRange>) -> Result<Grammar, String> {
        if ranges.is_empty() || ranges.len() > usize::from(u16::MAX) {
            return Err(format!(
                "an action list of {} values cannot be constrained",
                ranges.len()
            ));
        }
        if let Some(i) = ranges.iter().position(|r| {
            let s = NumberSpec::new(*r, ACTION_INTEGER_DIGITS, ACTION_FRACTION_DIGITS);
            s.lo > s.hi
        }) {
            return Err(format!(
                "action value {i}'s range {:?}..{:?} holds no number with at most {} fraction digits",
                ranges[i].lo, ranges[i].hi, ACTION_FRACTION_DIGITS
            ));
        }
        Ok(Grammar::ActionList { ranges })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(g: &Grammar, text: &str) -> bool {
        g.run(g.start(), text).is_some_and(|s| g.accepts(&s))
    }

    #[test]
    fn depth_calls_in_free_text() {
        let g = Grammar::DepthCalls;
        for ok in [
            "",
            "The depth value of point(0.51,0.40) is Depth(0.51,0.40).",
            "It is Depth(0.5, 0.715) and Depth(1,0).",
            "Depth is deep; Depths too. DDepth(0.1,1.000)",
            "Yes.",
        ] {
            assert!(accepts(&g, ok), "{ok:?}");
        }
        for bad in [
            "Depth(",
            "Depth(0.5,0.5",
            "Depth(1.2,0.5)",
            "Depth(0.5,0.5.1)",
            "Depth(0.1234,0.5)",
            "Depth( 0.5,0.5)",
            "Depth(0.5,  0.5)",
            "Depth(05,0.5)",
            "Depth(.5,0.5)",
            "Depth(-0.5,0.5)",
            "Depth(0.,0.5)",
            "Depth(x, y)",
        ] {
            assert!(!accepts(&g, bad), "{bad:?}");
        }
    }

    #[test]
    fn action_lists_have_the_count_and_ranges() {
        let g = Grammar::action_list(vec![
            ValueRange::UNIT,
            ValueRange {
                lo: Some(-0.5),
                hi: Some(2.0),
            },
            ValueRange::ANY,
        ])
        .unwrap();
        for ok in [
            "[0.0,1.5,-123.4567]",
            " [1, -0.5, 7]",
            "[0.3,2,999.9999]",
            "\n[0.25,0.0,0]",
        ] {
            assert!(accepts(&g, ok), "{ok:?}");
        }
        for bad in [
            "[0.0,1.5]",
            "[0.0,1.5,1,1]",
            "[1.1,0,0]",
            "[0,2.5,0]",
            "[0,-0.6,0]",
            "[-0.1,0,0]",
            "[0,0,1e3]",
            "[0,0,1000]",
            "[0, 0,0 ]",
            "[ 0,0,0]",
            "[0,,0]",
            "[0,0,0]]",
            "[0,0,0] ",
            "(0,0,0)",
            "   [0,0,0]",
            "[00,0,0]",
            "[0.12345,0,0]",
        ] {
            assert!(!accepts(&g, bad), "{bad:?}");
        }
        assert!(Grammar::action_list(vec![]).is_err());
        assert!(Grammar::action_list(vec![ValueRange {
            lo: Some(0.00001),
            hi: Some(0.00002)
        }])
        .is_err());
    }

    #[test]
    fn prefixes_that_cannot_reach_the_range_die_early() {
        let g = Grammar::action_list(vec![ValueRange {
            lo: Some(0.25),
            hi: Some(0.5),
        }])
        .unwrap();
        assert!(g.run(g.start(), "[0.2").is_some(), "0.25 is still possible");
        assert!(g.run(g.start(), "[0.1").is_none());
        assert!(g.run(g.start(), "[0.6").is_none());
        assert!(g.run(g.start(), "[1").is_none());
        assert!(g.run(g.start(), "[0.5").is_some_and(|s| !g.accepts(&s)));
        assert!(g.run(g.start(), "[0.50]").is_some());
        assert!(g.run(g.start(), "[0.501").is_none());
    }

    #[test]
    fn a_bound_off_by_an_ulp_still_admits_its_grid_point() {
        // The tiny policy's dx: min −0.2, offset −0.2000000029…, scale 0.4000000059…
        let scale = f64::from(0.4f32);
        let offset = f64::from(-0.2f32);
        let hi = (f64::from(0.2f32) - offset) / scale;
        let g = Grammar::action_list(vec![ValueRange {
            lo: Some((f64::from(-0.2f32) - offset) / scale),
            hi: Some(hi),
        }])
        .unwrap();
        assert!(accepts(&g, "[1.0]") && accepts(&g, "[0]"), "hi = {hi}");
    }
}
