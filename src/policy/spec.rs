//! The parts of a policy model's `manifest.toml` the control loop needs: `[prompt]` and
//! `[policy]` (see models/MANIFEST.md). Parsed from text; reading the file is the caller's job.

use serde::Deserialize;

use super::action::{ActionDim, ActionLayout};

/// Placeholders `<image 1>`…`<image 8>` are the only multi-image slots the models know.
pub const MAX_IMAGES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("manifest is not valid TOML or lacks a field the policy needs: {0}")]
    Toml(String),
    #[error("manifest kind is {0:?}, not \"policy\"; pass a policy model folder (e.g. models/tiny-policy)")]
    NotPolicy(String),
    #[error("[policy] frames = {frames}{depth} needs {images} images but the models take at most {MAX_IMAGES}; lower frames")]
    TooManyImages {
        frames: usize,
        depth: &'static str,
        images: usize,
    },
    #[error("[policy] frames must be at least 1")]
    NoFrames,
    #[error(
        "[prompt] template must contain {{images}} and {{question}} exactly once each, got {0:?}"
    )]
    Template(String),
    #[error("[prompt] image_placeholder must contain `<image {{n}}>` once, got {0:?}")]
    Placeholder(String),
    #[error("[policy] instruction must contain {{goal}}, got {0:?}")]
    Instruction(String),
    #[error("[[policy.action]] {name:?}: scale and offset must be finite")]
    ActionNotFinite { name: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameOrder {
    /// `<image 1>` is the newest frame (the released policy code).
    NewestFirst,
    OldestFirst,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryPad {
    /// Until the history is full, the oldest frame is repeated (the released policy code).
    RepeatOldest,
}

/// A manifest's `[prompt]` table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    pub template: String,
    pub image_placeholder: String,
    #[serde(default)]
    pub system: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PolicySpec {
    pub prompt: PromptSpec,
    pub frames: usize,
    pub order: FrameOrder,
    pub pad: HistoryPad,
    pub instruction: String,
    /// Each frame also contributes its packed depth image, right after its RGB image.
    pub depth: bool,
    pub actions: ActionLayout,
    pub max_new_tokens: usize,
}

/// A manifest's `[policy]` table (models/MANIFEST.md).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    pub frames: usize,
    pub order: FrameOrder,
    pub pad: HistoryPad,
    pub instruction: String,
    #[serde(default)]
    pub depth: bool,
    #[serde(default)]
    pub action: Vec<ActionDim>,
}

/// The tables of a manifest text the policy reads; the rest is ignored here (the model
/// module's `Manifest` reads whole model folders with these same section types).
#[derive(Deserialize)]
struct PolicyTables {
    kind: String,
    prompt: Option<PromptSpec>,
    policy: Option<PolicySection>,
    #[serde(default)]
    llm: Option<LlmTable>,
}

#[derive(Deserialize)]
struct LlmTable {
    #[serde(default)]
    max_new_tokens: Option<usize>,
}

/// What the released robot scripts use when a manifest does not say.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 128;

impl PolicySpec {
    /// Parses and checks the policy parts of a manifest's text. An empty `[[policy.action]]`
    /// list means the ManiSkill layout.
    pub fn from_manifest_toml(text: &str) -> Result<Self, SpecError> {
        let t: PolicyTables =
            toml::from_str(text).map_err(|e| SpecError::Toml(e.message().to_string()))?;
        if t.kind != "policy" {
            return Err(SpecError::NotPolicy(t.kind));
        }
        let missing = |table: &str| SpecError::Toml(format!("missing table [{table}]"));
        let prompt = t.prompt.ok_or_else(|| missing("prompt"))?;
        let policy = t.policy.ok_or_else(|| missing("policy"))?;
        Self::from_sections(prompt, policy, t.llm.and_then(|l| l.max_new_tokens))
    }

    /// The spec from a manifest's `[prompt]` and `[policy]` tables and `llm.max_new_tokens`
    /// (default [`DEFAULT_MAX_NEW_TOKENS`]), checked.
    pub fn from_sections(
        prompt: PromptSpec,
        policy: PolicySection,
        max_new_tokens: Option<usize>,
    ) -> Result<Self, SpecError> {
        let actions = if policy.action.is_empty() {
            ActionLayout::maniskill()
        } else {
            ActionLayout::new(policy.action)
        };
        let spec = PolicySpec {
            prompt,
            frames: policy.frames,
            order: policy.order,
            pad: policy.pad,
            instruction: policy.instruction,
            depth: policy.depth,
            actions,
            max_new_tokens: max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS),
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Images the prompt carries per step: one per frame, two with depth.
    pub fn images_per_step(&self) -> usize {
        self.frames * self.images_per_frame()
    }

    pub fn images_per_frame(&self) -> usize {
        if self.depth {
            2
        } else {
            1
        }
    }

    fn validate(&self) -> Result<(), SpecError> {
        if self.frames == 0 {
            return Err(SpecError::NoFrames);
        }
        if self.images_per_step() > MAX_IMAGES {
            return Err(SpecError::TooManyImages {
                frames: self.frames,
                depth: if self.depth { " with depth" } else { "" },
                images: self.images_per_step(),
            });
        }
        let t = &self.prompt.template;
        if t.matches("{images}").count() != 1 || t.matches("{question}").count() != 1 {
            return Err(SpecError::Template(t.clone()));
        }
        let p = &self.prompt.image_placeholder;
        if p.matches("{n}").count() != 1
            || super::prompt::split_on_placeholders(&p.replace("{n}", "1")).len() != 2
        {
            return Err(SpecError::Placeholder(p.clone()));
        }
        if !self.instruction.contains("{goal}") {
            return Err(SpecError::Instruction(self.instruction.clone()));
        }
        for d in self.actions.dims() {
            if !d.scale.is_finite() || !d.offset.is_finite() {
                return Err(SpecError::ActionNotFinite {
                    name: d.name.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const TINY: &str = r#"
format = 1
kind = "policy"
name = "t"
[llm]
max_new_tokens = 32
[prompt]
template = "USER:{images}{question} ASSISTANT:"
image_placeholder = "<image {n}>\n"
system = ""
[policy]
frames = 4
order = "newest_first"
pad = "repeat_oldest"
instruction = "Instruct the robot to {goal}\nAnswer with robot parameters."
depth = false
"#;

    #[test]
    fn parses_and_defaults_to_maniskill() {
        let s = PolicySpec::from_manifest_toml(TINY).unwrap();
        assert_eq!(s.frames, 4);
        assert_eq!(s.order, FrameOrder::NewestFirst);
        assert_eq!(s.actions, ActionLayout::maniskill());
        assert_eq!(s.max_new_tokens, 32);
        assert_eq!(s.images_per_step(), 4);
    }

    #[test]
    fn rejects_what_the_models_cannot_take() {
        let spatial = TINY.replace("kind = \"policy\"", "kind = \"spatialbot\"");
        assert!(matches!(
            PolicySpec::from_manifest_toml(&spatial),
            Err(SpecError::NotPolicy(_))
        ));
        let many = TINY
            .replace("frames = 4", "frames = 5")
            .replace("depth = false", "depth = true");
        assert!(matches!(
            PolicySpec::from_manifest_toml(&many),
            Err(SpecError::TooManyImages { images: 10, .. })
        ));
        let bad_ph = TINY.replace("<image {n}>", "<img {n}>");
        assert!(matches!(
            PolicySpec::from_manifest_toml(&bad_ph),
            Err(SpecError::Placeholder(_))
        ));
        let no_goal = TINY.replace("{goal}", "it");
        assert!(matches!(
            PolicySpec::from_manifest_toml(&no_goal),
            Err(SpecError::Instruction(_))
        ));
        assert!(matches!(
            PolicySpec::from_manifest_toml("kind = 1"),
            Err(SpecError::Toml(_))
        ));
    }

    #[test]
    fn explicit_action_layout() {
        let text = format!(
            "{TINY}\n[[policy.action]]\nname = \"a\"\nscale = 2.0\noffset = 1.0\n[[policy.action]]\nname = \"b\"\n"
        );
        let s = PolicySpec::from_manifest_toml(&text).unwrap();
        assert_eq!(s.actions.dims().len(), 2);
        assert_eq!(s.actions.dims()[1].scale, 1.0);
    }
}
