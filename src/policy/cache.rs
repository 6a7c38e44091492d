//! The vision-embedding cache: each frame goes through the vision graph once, and its
//! embeddings are reused for as long as the frame stays in the history. The released code
//! re-encodes every frame of the history at every step.

use std::sync::Arc;

use super::history::FrameHistory;
use super::spec::PolicySpec;

/// One frame's embeddings: its RGB image, then its depth image when the policy takes depth.
#[derive(Debug)]
pub struct EncodedFrame<E> {
    pub seq: u64,
    pub images: Vec<Arc<E>>,
}

impl<E> Clone for EncodedFrame<E> {
    fn clone(&self) -> Self {
        Self {
            seq: self.seq,
            images: self.images.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheCounts {
    pub steps: u64,
    /// Images that went through the vision graph.
    pub images_encoded: u64,
    /// Images the released code would have encoded: every image of every step.
    pub images_referenced: u64,
}

impl CacheCounts {
    /// Vision work per step relative to re-encoding the whole history.
    pub fn encode_ratio(&self) -> f64 {
        if self.images_referenced == 0 {
            0.0
        } else {
            self.images_encoded as f64 / self.images_referenced as f64
        }
    }
}

#[derive(Debug)]
pub struct EmbeddingHistory<E> {
    history: FrameHistory<EncodedFrame<E>>,
    images_per_frame: usize,
    counts: CacheCounts,
}

impl<E> EmbeddingHistory<E> {
    pub fn new(spec: &PolicySpec) -> Self {
        Self {
            history: FrameHistory::new(spec.frames, spec.order, spec.pad),
            images_per_frame: spec.images_per_frame(),
            counts: CacheCounts::default(),
        }
    }

    pub fn counts(&self) -> CacheCounts {
        self.counts
    }

    /// One policy step on frame `seq`: encodes its images with `encode(image_index)` unless the
    /// frame is still in the history, pushes it, and returns the step's embeddings in prompt
    /// order (frames in the manifest's order, each frame's images in order). On an encode
    /// error the history is left as it was.
    pub fn step<Err>(
        &mut self,
        seq: u64,
        mut encode: impl FnMut(usize) -> Result<E, Err>,
    ) -> Result<Vec<Arc<E>>, Err> {
        let cached = self
            .history
            .iter_newest_first()
            .find(|f| f.seq == seq)
            .cloned();
        let frame = match cached {
            Some(f) => f,
            None => {
                let mut images = Vec::with_capacity(self.images_per_frame);
                for i in 0..self.images_per_frame {
                    images.push(Arc::new(encode(i)?));
                }
                self.counts.images_encoded += self.images_per_frame as u64;
                EncodedFrame { seq, images }
            }
        };
        self.history.push(frame);
        self.counts.steps += 1;
        let window = self.history.window().unwrap_or_default();
        let embeddings: Vec<Arc<E>> = window
            .iter()
            .flat_map(|f| f.images.iter().cloned())
            .collect();
        self.counts.images_referenced += embeddings.len() as u64;
        Ok(embeddings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::spec::{FrameOrder, HistoryPad, PromptSpec};
    use crate::policy::ActionLayout;

    fn spec(depth: bool) -> PolicySpec {
        PolicySpec {
            prompt: PromptSpec {
                template: String::new(),
                image_placeholder: String::new(),
                system: String::new(),
            },
            frames: 4,
            order: FrameOrder::NewestFirst,
            pad: HistoryPad::RepeatOldest,
            instruction: String::new(),
            depth,
            actions: ActionLayout::maniskill(),
            max_new_tokens: 8,
        }
    }

    #[test]
    fn each_frame_is_encoded_once() {
        let mut cache = EmbeddingHistory::new(&spec(false));
        let mut calls = Vec::new();
        for seq in 10..30u64 {
            let e = cache
                .step(seq, |i| {
                    calls.push((seq, i));
                    Ok::<_, ()>(seq)
                })
                .unwrap();
            let got: Vec<u64> = e.iter().map(|a| **a).collect();
            let oldest = seq.saturating_sub(3).max(10);
            let want: Vec<u64> = (0..4).map(|k| seq.saturating_sub(k).max(oldest)).collect();
            assert_eq!(got, want);
        }
        assert_eq!(calls.len(), 20);
        let c = cache.counts();
        assert_eq!(
            (c.steps, c.images_encoded, c.images_referenced),
            (20, 20, 80)
        );
        assert!(c.encode_ratio() <= 0.3);
    }

    #[test]
    fn depth_images_follow_their_frame_and_repeats_hit_the_cache() {
        let mut cache = EmbeddingHistory::new(&spec(true));
        let enc = |seq: u64| move |i: usize| Ok::<_, ()>(seq * 10 + i as u64);
        cache.step(1, enc(1)).unwrap();
        let e = cache.step(2, enc(2)).unwrap();
        let got: Vec<u64> = e.iter().map(|a| **a).collect();
        assert_eq!(got, [20, 21, 10, 11, 10, 11, 10, 11]);
        cache
            .step(2, |_| Err::<u64, _>("must not encode a cached frame"))
            .unwrap();
        assert_eq!(cache.counts().images_encoded, 4);
    }

    #[test]
    fn encode_error_leaves_history_unchanged() {
        let mut cache = EmbeddingHistory::new(&spec(false));
        cache.step(1, |_| Ok::<_, &str>(1u8)).unwrap();
        assert!(cache.step(2, |_| Err("vision failed")).is_err());
        let e = cache.step(3, |_| Ok::<_, &str>(3u8)).unwrap();
        assert_eq!(e.iter().map(|a| **a).collect::<Vec<_>>(), [3, 1, 1, 1]);
    }
}
