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

impl ModelKind {
    /// The manifest's spelling: `spatialbot` or `policy`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Spatialbot => "spatialbot",
            ModelKind::Policy => "policy",
        }
    }
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

pub use crate::preprocess::Tower;

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

/// `[prompt]` and `[policy]` are the policy module's own types: one schema, read here.
pub use crate::policy::spec::{
    FrameOrder, HistoryPad as FramePad, PolicySection, PromptSpec as PromptSection,
};
pub use crate::policy::ActionDim as ActionField;

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

/// The axis names of the wire protocol, the only names a `[[policy.action]]` may have.
pub use crate::link::WIRE_AXIS_NAMES;

/// The files every model folder holds besides the manifest.
pub const REQUIRED_FILES: [&str; 4] = [
    "vision.onnx",
    "embed.onnx",
    "decoder.onnx",
    "tokenizer.json",
];

impl Manifest {
    /// The policy's view of this manifest (`[prompt]`, `[policy]`, `llm.max_new_tokens`).
    pub fn policy_spec(&self) -> Result<crate::policy::PolicySpec, crate::policy::SpecError> {
        let policy = match (self.kind, &self.policy) {
            (ModelKind::Policy, Some(p)) => p.clone(),
            _ => return Err(crate::policy::SpecError::NotPolicy(self.kind.name().into())),
        };
        crate::policy::PolicySpec::from_sections(
            self.prompt.clone(),
            policy,
            Some(self.llm.max_new_tokens),
        )
    }

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
        use crate::limits as lim;
        // Every dimension is checked against its cap (crate::limits) before a backend sizes a
        // buffer from it.
        let capped = [
            ("vision.image_size", v.image_size, lim::MAX_MODEL_IMAGE_SIZE),
            (
                "vision.tokens_per_image",
                v.tokens_per_image,
                lim::MAX_TOKENS_PER_IMAGE,
            ),
            ("vision.embed_dim", v.embed_dim, lim::MAX_HIDDEN_SIZE),
            ("llm.hidden_size", l.hidden_size, lim::MAX_HIDDEN_SIZE),
            ("llm.num_layers", l.num_layers, lim::MAX_LAYERS),
            ("llm.num_kv_heads", l.num_kv_heads, lim::MAX_KV_HEADS),
            ("llm.head_dim", l.head_dim, lim::MAX_HEAD_DIM),
            ("llm.vocab_size", l.vocab_size, lim::MAX_VOCAB),
            ("llm.context_limit", l.context_limit, lim::MAX_CONTEXT),
        ];
        for (name, value, cap) in capped {
            if value == 0 {
                return Err(format!("{name} must be > 0"));
            }
            lim::check_usize(name, "", value, 1, cap).map_err(|e| e.to_string())?;
        }
        lim::check_usize(
            "llm.max_new_tokens",
            "",
            l.max_new_tokens,
            0,
            lim::MAX_NEW_TOKENS,
        )
        .map_err(|e| e.to_string())?;
        if let Some(p) = &self.policy {
            lim::check_usize("policy.frames", "", p.frames, 0, lim::MAX_POLICY_FRAMES)
                .map_err(|e| e.to_string())?;
            for (i, a) in p.action.iter().enumerate() {
                let name = format!("policy.action[{i}].name");
                if spatialbot_link::Axis::from_name(&a.name)
                    .is_none_or(|axis| axis == spatialbot_link::Axis::Unused)
                {
                    return Err(format!(
                        "{name} = {:?} is not an axis of the wire protocol; allowed: {}",
                        a.name,
                        WIRE_AXIS_NAMES.join(", ")
                    ));
                }
                if p.action[..i].iter().any(|o| o.name == a.name) {
                    return Err(format!("{name} = {:?} is listed twice", a.name));
                }
                let finite = |v: Option<f32>| v.is_some_and(f32::is_finite);
                if !(finite(a.min) && finite(a.max) && a.min <= a.max) {
                    return Err(format!(
                        "policy.action[{i}] ({}): min and max must be finite with min <= max",
                        a.name
                    ));
                }
            }
        }
        if let Some(d) = &self.depth_api {
            lim::check_usize(
                "depth_api.neighbourhood",
                "",
                d.neighbourhood,
                0,
                lim::MAX_DEPTH_NEIGHBOURHOOD,
            )
            .map_err(|e| e.to_string())?;
            lim::check_usize(
                "depth_api.max_rounds",
                "",
                d.max_rounds,
                0,
                lim::MAX_DEPTH_API_ROUNDS,
            )
            .map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_policy() -> String {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(dir.join("models/tiny-policy/manifest.toml")).unwrap()
    }

    fn refused(text: &str) -> String {
        Manifest::parse(text, "m.toml").unwrap_err().to_string()
    }

    #[test]
    fn dimensions_over_their_caps_name_the_field() {
        let base = tiny_policy();
        assert!(Manifest::parse(&base, "m.toml").is_ok());
        for (from, to, field) in [
            (
                "image_size = 28",
                "image_size = 100000",
                "vision.image_size",
            ),
            (
                "context_limit = 4096",
                "context_limit = 100000000",
                "llm.context_limit",
            ),
            ("frames = 4", "frames = 1000", "policy.frames"),
        ] {
            let e = refused(&base.replacen(from, to, 1));
            assert!(e.starts_with("m.toml: ") && e.contains(field), "{e}");
        }
        let e = refused(&format!("{base}\n[depth_api]\nneighbourhood = 1000000\n"));
        assert!(e.contains("depth_api.neighbourhood"), "{e}");
    }

    #[test]
    fn wire_axis_names_are_the_wire_crates() {
        for name in WIRE_AXIS_NAMES {
            let axis = spatialbot_link::Axis::from_name(name);
            assert!(
                axis.is_some_and(|a| a != spatialbot_link::Axis::Unused),
                "{name}"
            );
        }
    }

    #[test]
    fn action_names_must_be_wire_axes() {
        let base = tiny_policy();
        let e = refused(&base.replacen("name = \"dy\"", "name = \"sideways\"", 1));
        assert!(
            e.contains("policy.action[2].name") && e.contains("dpitch"),
            "{e}"
        );
        let e = refused(&base.replacen("name = \"dy\"", "name = \"dx\"", 1));
        assert!(e.contains("twice"), "{e}");
    }
}
