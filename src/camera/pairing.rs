//! Pairs colour and depth frames by timestamp. PURE: values in, values out.

use std::collections::VecDeque;

/// Holds frames of each stream until a partner within `max_skew_ms` arrives. Each stream must
/// be pushed in timestamp order (as devices deliver them). A frame that can no longer find a
/// partner (the other stream has moved past it) is dropped and counted.
#[derive(Debug)]
pub struct Pairer<C, D> {
    color: VecDeque<(f64, C)>,
    depth: VecDeque<(f64, D)>,
    max_skew_ms: f64,
    max_waiting: usize,
    pub unpaired_color: u64,
    pub unpaired_depth: u64,
}

impl<C, D> Pairer<C, D> {
    /// `max_waiting` frames per stream may wait for a partner; older ones are dropped beyond it.
    pub fn new(max_skew_ms: f64, max_waiting: usize) -> Self {
        Self {
            color: VecDeque::new(),
            depth: VecDeque::new(),
            max_skew_ms,
            max_waiting: max_waiting.max(1),
            unpaired_color: 0,
            unpaired_depth: 0,
        }
    }

    pub fn push_color(&mut self, timestamp_ms: f64, frame: C) -> Option<Pair<C, D>> {
        self.color.push_back((timestamp_ms, frame));
        if self.color.len() > self.max_waiting {
            self.color.pop_front();
            self.unpaired_color += 1;
        }
        self.pair()
    }

    pub fn push_depth(&mut self, timestamp_ms: f64, frame: D) -> Option<Pair<C, D>> {
        self.depth.push_back((timestamp_ms, frame));
        if self.depth.len() > self.max_waiting {
            self.depth.pop_front();
            self.unpaired_depth += 1;
        }
        self.pair()
    }

    fn pair(&mut self) -> Option<Pair<C, D>> {
        loop {
            let (tc, td) = match (self.color.front(), self.depth.front()) {
                (Some(c), Some(d)) => (c.0, d.0),
                _ => return None,
            };
            if (tc - td).abs() <= self.max_skew_ms {
                let (color_ms, color) = self.color.pop_front()?;
                let (depth_ms, depth) = self.depth.pop_front()?;
                return Some(Pair {
                    color,
                    depth,
                    color_ms,
                    depth_ms,
                });
            }
            if tc < td {
                self.color.pop_front();
                self.unpaired_color += 1;
            } else {
                self.depth.pop_front();
                self.unpaired_depth += 1;
            }
        }
    }

    /// Frames waiting for a partner: (colour, depth).
    pub fn waiting(&self) -> (usize, usize) {
        (self.color.len(), self.depth.len())
    }

    /// Forgets waiting frames (after a reconnect the device's clock may restart).
    pub fn clear(&mut self) {
        self.color.clear();
        self.depth.clear();
    }
}

#[derive(Debug, PartialEq)]
pub struct Pair<C, D> {
    pub color: C,
    pub depth: D,
    pub color_ms: f64,
    pub depth_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_in_step_streams() {
        let mut p: Pairer<u32, u32> = Pairer::new(5.0, 4);
        assert_eq!(p.push_depth(0.0, 0), None);
        assert_eq!(
            p.push_color(1.0, 0).map(|x| (x.color, x.depth)),
            Some((0, 0))
        );
        assert_eq!(p.push_color(34.0, 1), None);
        assert_eq!(
            p.push_depth(33.0, 1).map(|x| (x.color, x.depth)),
            Some((1, 1))
        );
        assert_eq!((p.unpaired_color, p.unpaired_depth), (0, 0));
    }

    #[test]
    fn colour_starting_a_frame_late_pairs_by_time() {
        let mut p: Pairer<u32, u32> = Pairer::new(10.0, 4);
        let mut pairs = Vec::new();
        for i in 0..5u32 {
            pairs.extend(p.push_depth(i as f64 * 33.3, i));
            if i > 0 {
                pairs.extend(p.push_color(i as f64 * 33.3 + 2.0, 100 + i));
            }
        }
        assert_eq!(
            pairs.iter().map(|x| (x.color, x.depth)).collect::<Vec<_>>(),
            vec![(101, 1), (102, 2), (103, 3), (104, 4)]
        );
        assert_eq!((p.unpaired_color, p.unpaired_depth), (0, 1));
    }

    #[test]
    fn one_stream_silent_is_bounded_and_counted() {
        let mut p: Pairer<u32, u32> = Pairer::new(10.0, 3);
        for i in 0..10 {
            assert!(p.push_color(i as f64 * 33.0, i).is_none());
        }
        assert_eq!(p.unpaired_color, 7);
        assert_eq!(p.push_depth(9.0 * 33.0, 9).map(|x| x.color), Some(9));
        assert_eq!(p.unpaired_color, 9);
    }
}
