//! PURE. Choosing the next token from logits: greedy, or temperature + top-p with a seeded
//! generator (same seed, same logits → same token).

#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Sampling {
    /// The highest logit; ties go to the lowest id (as `torch.argmax`).
    #[default]
    Greedy,
    /// Softmax at `temperature`, keep the smallest set of most likely tokens whose mass reaches
    /// `top_p`, draw from it.
    TopP {
        temperature: f32,
        top_p: f32,
        seed: u64,
    },
}

/// Index of the largest value; the first one on ties; NaN never wins.
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    best
}

/// A small deterministic generator (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The next token id under `sampling`; `rng` is only used when sampling.
pub fn choose(logits: &[f32], sampling: &Sampling, rng: &mut Rng) -> usize {
    match *sampling {
        Sampling::Greedy => argmax(logits),
        Sampling::TopP {
            temperature, top_p, ..
        } => {
            if temperature.is_nan() || temperature <= 0.0 || logits.is_empty() {
                return argmax(logits);
            }
            // Only finite logits take part: an infinite or NaN logit (a broken graph) never
            // reaches the softmax, and with no finite logit at all the choice is argmax's.
            let Some(max) = logits
                .iter()
                .filter(|v| v.is_finite())
                .map(|&v| v as f64)
                .reduce(f64::max)
            else {
                return argmax(logits);
            };
            let mut probs: Vec<(usize, f64)> = logits
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, &v)| (i, ((v as f64 - max) / temperature as f64).exp()))
                .collect();
            let total: f64 = probs.iter().map(|p| p.1).sum();
            probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let keep_mass = (top_p.clamp(0.0, 1.0) as f64) * total;
            let mut kept = 0;
            let mut mass = 0.0;
            for p in &probs {
                kept += 1;
                mass += p.1;
                if mass >= keep_mass {
                    break;
                }
            }
            let mut target = rng.next_f64() * mass;
            for p in &probs[..kept] {
                if target < p.1 {
                    return p.0;
                }
                target -= p.1;
            }
            probs[kept.saturating_sub(1)].0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_without_a_finite_logit_falls_back_to_argmax() {
        let sampling = Sampling::TopP {
            temperature: 0.7,
            top_p: 0.9,
            seed: 1,
        };
        let mut rng = Rng::new(1);
        assert_eq!(
            choose(&[f32::NAN, f32::NAN], &sampling, &mut rng),
            argmax(&[f32::NAN, f32::NAN])
        );
        assert_eq!(
            choose(&[f32::NEG_INFINITY; 3], &sampling, &mut rng),
            argmax(&[f32::NEG_INFINITY; 3])
        );
        // An infinite logit does not poison the others.
        let t = choose(&[f32::INFINITY, 1.0, 5.0], &sampling, &mut rng);
        assert!(t == 1 || t == 2);
    }

    #[test]
    fn greedy_takes_first_maximum_and_ignores_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, f32::NAN]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5]), 1);
    }

    #[test]
    fn tiny_top_p_is_greedy_and_sampling_is_reproducible() {
        let logits = [0.1, 2.0, 1.9, -1.0];
        let s = Sampling::TopP {
            temperature: 1.0,
            top_p: 1e-6,
            seed: 7,
        };
        assert_eq!(choose(&logits, &s, &mut Rng::new(7)), 1);
        let s = Sampling::TopP {
            temperature: 1.0,
            top_p: 0.9,
            seed: 7,
        };
        let a: Vec<usize> = {
            let mut r = Rng::new(3);
            (0..50).map(|_| choose(&logits, &s, &mut r)).collect()
        };
        let b: Vec<usize> = {
            let mut r = Rng::new(3);
            (0..50).map(|_| choose(&logits, &s, &mut r)).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().all(|&t| t == 1 || t == 2 || t == 0));
        assert!(a.contains(&1) && a.contains(&2));
    }
}
