//! `manifest.toml` of a model folder (models/MANIFEST.md): the schema and its checks.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ModelError;

pub const MANIFEST_FILE: &str = "manifest.toml";
pub const FORMAT: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Spatialbot,
    Policy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    Fp32,
    Fp16,
    /// MatMul weights int8 (onnxruntime dynamic quantisation); inputs and outputs stay f32.
    Int8,
    /// MatMul weights in 4-bit blocks of 32 (com.microsoft MatMulNBits); inputs and outputs f32.
    Q4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tower {
    Siglip,
    Clip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Resize to S×S ignoring the aspect ratio (SigLIP).
    Squash,
    /// Shortest edge to S, then centre-crop S×S (CLIP).
    ShortestEdgeCrop,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionSection {
    pub tower: Tower,
    pub image_size: usize,
    pub resize: ResizeMode,
    pub pad_to_square: bool,
    pub pad_color: [u8; 3],
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub tokens_per_image: usize,
    pub embed_dim: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmArch {
    Phi,
    Qwen2,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSection {
    pub arch: LlmArch,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub context_limit: usize,
    pub stop_ids: Vec<u32>,
    pub max_new_tokens: usize,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSection {
    /// Text with `{images}` and `{question}` (and optionally `{system}`) slots.
    pub template: String,
    /// One per image; `{n}` is the 1-based image number.
    pub image_placeholder: String,
    #[serde(default)]
    pub system: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameOrder {
    NewestFirst,
    OldestFirst,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FramePad {
    RepeatOldest,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionField {
    pub name: String,
    pub min: f64,
    pub max: f64,
    pub scale: f32,
    pub offset: f32,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    pub frames: usize,
    pub order: FrameOrder,
    pub pad: FramePad,
    pub instruction: String,
    #[serde(default)]
    pub depth: bool,
    #[serde(default)]
    pub action: Vec<ActionField>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepthApiSection {
    #[serde(default = "default_max_rounds")]
    pub max_rounds: usize,
    /// One per call, with `{x}`, `{y}`, `{value}`; calls joined with "\n" as a new USER turn.
    #[serde(default = "default_reply")]
    pub reply: String,
    #[serde(default = "default_unknown")]
    pub unknown: String,
    /// 0 = the exact pixel; k > 0 = median of the (2k+1)² box, zeros ignored.
    #[serde(default)]
    pub neighbourhood: usize,
    /// The follow-up USER turn, `{reply}` being the joined replies. The next round's prompt is
    /// the previous one + " " + answer + the stop token's text + this turn + the template's text
    /// after `{question}`, tokenised again from scratch.
    #[serde(default = "default_turn")]
    pub turn: String,
}

fn default_max_rounds() -> usize {
    2
}
fn default_reply() -> String {
    "API: Depth({x},{y})={value}".to_string()
}
fn default_turn() -> String {
    "USER: {reply}".to_string()
}
fn default_unknown() -> String {
    "unknown".to_string()
}

impl Default for DepthApiSection {
    fn default() -> Self {
        Self {
            max_rounds: default_max_rounds(),
            reply: default_reply(),
            unknown: default_unknown(),
            neighbourhood: 0,
            turn: default_turn(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub kind: ModelKind,
    pub name: String,
    pub dtype: WeightDtype,
    pub vision: VisionSection,
    pub llm: LlmSection,
    pub prompt: PromptSection,
    #[serde(default)]
    pub policy: Option<PolicySection>,
    #[serde(default)]
    pub depth_api: Option<DepthApiSection>,
    /// sha256 (lower-case hex) of every file in the folder except manifest.toml.
    pub files: BTreeMap<String, String>,
}

/// The files every model folder holds besides the manifest.
pub const REQUIRED_FILES: [&str; 4] = [
    "vision.onnx",
    "embed.onnx",
    "decoder.onnx",
    "tokenizer.json",
];

impl Manifest {
    /// Parses and checks a manifest's text. `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ModelError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ModelError::Manifest {
            file: origin.to_string(),
            reason: e.to_string(),
        })?;
        manifest.validate().map_err(|reason| ModelError::Manifest {
            file: origin.to_string(),
            reason,
        })?;
        Ok(manifest)
    }

    /// The depth API settings: the manifest's, or the defaults.
    pub fn depth_api(&self) -> DepthApiSection {
        self.depth_api.clone().unwrap_or_default()
    }

    fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format = {} but this runtime reads format {FORMAT}; re-export the folder",
                self.format
            ));
        }
        let v = &self.vision;
        let l = &self.llm;
        let positive = [
            ("vision.image_size", v.image_size),
            ("vision.tokens_per_image", v.tokens_per_image),
            ("vision.embed_dim", v.embed_dim),
            ("llm.hidden_size", l.hidden_size),
            ("llm.num_layers", l.num_layers),
            ("llm.num_kv_heads", l.num_kv_heads),
            ("llm.head_dim", l.head_dim),
            ("llm.vocab_size", l.vocab_size),
            ("llm.context_limit", l.context_limit),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be > 0"));
            }
        }
        if v.embed_dim != l.hidden_size {
            return Err(format!(
                "vision.embed_dim ({}) must equal llm.hidden_size ({}): image embeddings are spliced into the text",
                v.embed_dim, l.hidden_size
            ));
        }
        if v.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err("vision.std must be finite and > 0".into());
        }
        if let Some(bad) = l.stop_ids.iter().find(|id| **id as usize >= l.vocab_size) {
            return Err(format!(
                "llm.stop_ids has {bad}, outside the vocabulary of {}",
                l.vocab_size
            ));
        }
        let t = &self.prompt.template;
        if !t.contains("{question}") && self.kind == ModelKind::Spatialbot {
            return Err("prompt.template must contain {question}".into());
        }
        if !t.contains("{images}") {
            return Err("prompt.template must contain {images}".into());
        }
        match (self.kind, &self.policy) {
            (ModelKind::Policy, None) => {
                return Err("kind = \"policy\" needs a [policy] section".into())
            }
            (ModelKind::Policy, Some(p)) if p.frames == 0 => {
                return Err("policy.frames must be > 0".into())
            }
            _ => {}
        }
        if let Some(d) = &self.depth_api {
            if !d.reply.contains("{value}") {
                return Err("depth_api.reply must contain {value}".into());
            }
        }
        for name in REQUIRED_FILES {
            if !self.files.contains_key(name) {
                return Err(format!("[files] has no sha256 for {name}"));
            }
        }
        for (name, hash) in &self.files {
            if name.contains('/') && name.split('/').any(|part| part == "..")
                || name.starts_with('/')
            {
                return Err(format!("[files] entry {name:?} points outside the folder"));
            }
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("[files] sha256 of {name} is not 64 hex digits"));
            }
        }
        Ok(())
    }
}
