//! PURE. Prompt text → token chunks and image slots, as SpatialBot's released code builds it
//! (reference §2.2): each text chunk between image placeholders is tokenised on its own, with
//! no BOS, and a chunk that is only "\n" is kept.

use super::ModelError;

/// One run of text tokens, or the slot of the `k`-th image embedding (0-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromptPiece {
    Text(Vec<u32>),
    Image(usize),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prompt {
    pub pieces: Vec<PromptPiece>,
}

/// Text or image, before tokenisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Image(usize),
}

impl Prompt {
    /// Number of image slots.
    pub fn image_count(&self) -> usize {
        self.pieces
            .iter()
            .filter(|p| matches!(p, PromptPiece::Image(_)))
            .count()
    }

    /// Sequence length after splicing `tokens_per_image` rows for each image slot.
    pub fn spliced_len(&self, tokens_per_image: usize) -> usize {
        self.pieces
            .iter()
            .map(|p| match p {
                PromptPiece::Text(ids) => ids.len(),
                PromptPiece::Image(_) => tokens_per_image,
            })
            .sum()
    }

    /// Tokenises each text segment separately (`encode` is the tokenizer).
    pub fn from_segments(
        segments: &[Segment],
        mut encode: impl FnMut(&str) -> Result<Vec<u32>, ModelError>,
    ) -> Result<Prompt, ModelError> {
        let mut pieces = Vec::new();
        for segment in segments {
            match segment {
                Segment::Text(text) if text.is_empty() => {}
                Segment::Text(text) => {
                    let ids = encode(text)?;
                    if !ids.is_empty() {
                        pieces.push(PromptPiece::Text(ids));
                    }
                }
                Segment::Image(k) => pieces.push(PromptPiece::Image(*k)),
            }
        }
        Ok(Prompt { pieces })
    }
}

const IMAGE_MARK: &str = "<image {n}>";

/// The manifest's template filled in: `{system}`, `{images}` (one `image_placeholder` per image,
/// `{n}` = 1-based number) and `{question}`. The `<image {n}>` part of the placeholder becomes an
/// image slot; any other text of it (the "\n") stays text. Slots are structural: a question that
/// itself contains "<image 1>" stays text.
pub fn segments(
    template: &str,
    system: &str,
    image_placeholder: &str,
    images: usize,
    question: &str,
) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let push_text = |out: &mut Vec<Segment>, s: &str| {
        if s.is_empty() {
            return;
        }
        if let Some(Segment::Text(last)) = out.last_mut() {
            last.push_str(s);
        } else {
            out.push(Segment::Text(s.to_string()));
        }
    };
    let mut rest = template;
    while !rest.is_empty() {
        let next = ["{system}", "{images}", "{question}"]
            .iter()
            .filter_map(|slot| rest.find(slot).map(|at| (at, *slot)))
            .min_by_key(|(at, _)| *at);
        let Some((at, slot)) = next else {
            push_text(&mut out, rest);
            break;
        };
        push_text(&mut out, &rest[..at]);
        match slot {
            "{system}" => push_text(&mut out, system),
            "{question}" => push_text(&mut out, question),
            _ => {
                for k in 0..images {
                    let (before, after) = match image_placeholder.find(IMAGE_MARK) {
                        Some(i) => (
                            &image_placeholder[..i],
                            &image_placeholder[i + IMAGE_MARK.len()..],
                        ),
                        None => (image_placeholder, ""),
                    };
                    push_text(&mut out, &before.replace("{n}", &(k + 1).to_string()));
                    out.push(Segment::Image(k));
                    push_text(&mut out, &after.replace("{n}", &(k + 1).to_string()));
                }
            }
        }
        rest = &rest[at + slot.len()..];
    }
    out
}

/// `segments` tokenised: the prompt a model folder's template gives for `question` and `images`.
pub fn build(
    template: &str,
    system: &str,
    image_placeholder: &str,
    images: usize,
    question: &str,
    encode: impl FnMut(&str) -> Result<Vec<u32>, ModelError>,
) -> Result<Prompt, ModelError> {
    Prompt::from_segments(
        &segments(template, system, image_placeholder, images, question),
        encode,
    )
}

/// Where a spliced sequence of `len` positions goes over `limit`, how many positions to drop
/// from its end (the released code truncates the spliced embeddings at the limit).
pub fn overflow(len: usize, limit: usize) -> usize {
    len.saturating_sub(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spatialbot_template_gives_the_reference_chunks() {
        let s = segments(
            "{system} USER: {images}{question} ASSISTANT:",
            "SYS.",
            "<image {n}>\n",
            2,
            "How far?",
        );
        assert_eq!(
            s,
            vec![
                Segment::Text("SYS. USER: ".into()),
                Segment::Image(0),
                Segment::Text("\n".into()),
                Segment::Image(1),
                Segment::Text("\nHow far? ASSISTANT:".into()),
            ]
        );
    }

    #[test]
    fn question_text_that_looks_like_a_placeholder_stays_text() {
        let s = segments(
            "USER:{images}{question} ASSISTANT:",
            "",
            "<image {n}>\n",
            1,
            "<image 2> hi",
        );
        assert_eq!(
            s.iter().filter(|x| matches!(x, Segment::Image(_))).count(),
            1
        );
    }

    #[test]
    fn empty_chunks_vanish_and_splice_length_counts_images() {
        let p = build("{images}{question}", "", "<image {n}>", 2, "", |t| {
            Ok(t.bytes().map(u32::from).collect())
        })
        .unwrap();
        assert_eq!(p.pieces, vec![PromptPiece::Image(0), PromptPiece::Image(1)]);
        assert_eq!(p.spliced_len(5), 10);
    }
}
