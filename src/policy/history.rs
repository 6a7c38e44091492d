//! The policy's frame history: the last `frames` steps' frames, presented in the manifest's
//! order and padded by repeating the oldest frame until the history is full.

use std::collections::VecDeque;

use super::spec::{FrameOrder, HistoryPad};

#[derive(Clone, Debug)]
pub struct FrameHistory<T> {
    capacity: usize,
    order: FrameOrder,
    pad: HistoryPad,
    /// Newest at the front.
    frames: VecDeque<T>,
}

impl<T> FrameHistory<T> {
    /// `capacity` is at least 1; 0 is treated as 1.
    pub fn new(capacity: usize, order: FrameOrder, pad: HistoryPad) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            order,
            pad,
            frames: VecDeque::with_capacity(capacity + 1),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Adds the newest frame; returns the frame that fell out of the history, if any.
    pub fn push(&mut self, frame: T) -> Option<T> {
        self.frames.push_front(frame);
        if self.frames.len() > self.capacity {
            self.frames.pop_back()
        } else {
            None
        }
    }

    /// Frames held, newest first, without padding.
    pub fn iter_newest_first(&self) -> impl Iterator<Item = &T> {
        self.frames.iter()
    }

    /// Exactly `capacity` frames in the manifest's order, the oldest repeated to fill a
    /// history that is not yet full; `None` before the first frame.
    pub fn window(&self) -> Option<Vec<&T>> {
        let oldest = self.frames.back()?;
        let HistoryPad::RepeatOldest = self.pad;
        let mut w: Vec<&T> = self.frames.iter().collect();
        w.resize(self.capacity, oldest);
        if self.order == FrameOrder::OldestFirst {
            w.reverse();
        }
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(h: &FrameHistory<u32>) -> Vec<u32> {
        h.window().unwrap().into_iter().copied().collect()
    }

    #[test]
    fn newest_first_padded_with_oldest() {
        let mut h = FrameHistory::new(4, FrameOrder::NewestFirst, HistoryPad::RepeatOldest);
        assert!(h.window().is_none());
        h.push(1);
        assert_eq!(window(&h), [1, 1, 1, 1]);
        h.push(2);
        assert_eq!(window(&h), [2, 1, 1, 1]);
        h.push(3);
        h.push(4);
        assert_eq!(window(&h), [4, 3, 2, 1]);
        assert_eq!(h.push(5), Some(1));
        assert_eq!(window(&h), [5, 4, 3, 2]);
    }

    #[test]
    fn oldest_first_is_the_reverse() {
        let mut h = FrameHistory::new(3, FrameOrder::OldestFirst, HistoryPad::RepeatOldest);
        h.push(1);
        h.push(2);
        assert_eq!(window(&h), [1, 1, 2]);
    }

    /// The released code: `deque(maxlen=4)`, reversed, then `list += [list[-1]] * (4 - len)`.
    #[test]
    fn matches_the_reference_list_building() {
        let mut h = FrameHistory::new(4, FrameOrder::NewestFirst, HistoryPad::RepeatOldest);
        let mut deque: Vec<u32> = Vec::new();
        for step in 0..10u32 {
            h.push(step);
            deque.push(step);
            if deque.len() > 4 {
                deque.remove(0);
            }
            let mut reference: Vec<u32> = deque.iter().rev().copied().collect();
            let last = *reference.last().unwrap();
            while reference.len() < 4 {
                reference.push(last);
            }
            assert_eq!(window(&h), reference);
        }
    }
}
