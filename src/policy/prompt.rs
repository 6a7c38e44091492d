//! The policy prompt as the released robot scripts build it:
//! `"USER:" + "<image 1>\n…<image 4>\n" + "Instruct the robot to {goal}\nAnswer with robot parameters." + " ASSISTANT:"`,
//! from the manifest's `[prompt]` template and `[policy]` instruction, then split on the
//! `<image N>` placeholders into text chunks that are tokenised separately (reference §2.2).

use super::spec::PolicySpec;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    #[error(
        "the goal is empty; say what the robot should do, e.g. --goal \"pick up the red cube\""
    )]
    EmptyGoal,
    #[error("the goal contains an image placeholder {0:?}; remove it")]
    PlaceholderInGoal(String),
}

/// The full prompt text and its text chunks: `chunks.len() == images + 1`, image `i` sits
/// between `chunks[i]` and `chunks[i + 1]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyPrompt {
    pub text: String,
    pub chunks: Vec<String>,
}

impl PolicyPrompt {
    pub fn images(&self) -> usize {
        self.chunks.len() - 1
    }
}

pub fn build_policy_prompt(spec: &PolicySpec, goal: &str) -> Result<PolicyPrompt, PromptError> {
    if goal.trim().is_empty() {
        return Err(PromptError::EmptyGoal);
    }
    if let Some((start, end)) = find_placeholder(goal) {
        return Err(PromptError::PlaceholderInGoal(goal[start..end].to_string()));
    }
    let images: String = (1..=spec.images_per_step())
        .map(|n| spec.prompt.image_placeholder.replace("{n}", &n.to_string()))
        .collect();
    let question = spec.instruction.replacen("{goal}", goal, 1);
    let text = spec
        .prompt
        .template
        .replace("{system}", &spec.prompt.system)
        .replacen("{images}", &images, 1)
        .replacen("{question}", &question, 1);
    let chunks = split_on_placeholders(&text);
    Ok(PolicyPrompt { text, chunks })
}

/// `re.split(r"<image \d+>", text)`.
pub fn split_on_placeholders(text: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut rest = text;
    while let Some((start, end)) = find_placeholder(rest) {
        chunks.push(rest[..start].to_string());
        rest = &rest[end..];
    }
    chunks.push(rest.to_string());
    chunks
}

/// True when `s` is exactly one placeholder `<image N>`.
pub fn is_placeholder(s: &str) -> bool {
    find_placeholder(s) == Some((0, s.len()))
}

/// Byte range of the first `<image \d+>` in `s`.
fn find_placeholder(s: &str) -> Option<(usize, usize)> {
    const OPEN: &str = "<image ";
    let mut from = 0;
    while let Some(off) = s[from..].find(OPEN) {
        let start = from + off;
        let digits_start = start + OPEN.len();
        let digits = s[digits_start..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let close = digits_start + digits;
        if digits > 0 && s.as_bytes().get(close) == Some(&b'>') {
            return Some((start, close + 1));
        }
        from = start + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::spec::PolicySpec;

    fn spec() -> PolicySpec {
        PolicySpec::from_manifest_toml(
            r#"
kind = "policy"
[prompt]
template = "USER:{images}{question} ASSISTANT:"
image_placeholder = "<image {n}>\n"
[policy]
frames = 4
order = "newest_first"
pad = "repeat_oldest"
instruction = "Instruct the robot to {goal}\nAnswer with robot parameters."
"#,
        )
        .unwrap()
    }

    #[test]
    fn matches_the_calvin_script() {
        let goal = "open the drawer";
        let p = build_policy_prompt(&spec(), goal).unwrap();
        let reference = "USER:".to_string()
            + "<image 1>\n<image 2>\n<image 3>\n<image 4>\n"
            + "Instruct the robot to "
            + goal
            + "\nAnswer with robot parameters."
            + " ASSISTANT:";
        assert_eq!(p.text, reference);
        assert_eq!(
            p.chunks,
            [
                "USER:",
                "\n",
                "\n",
                "\n",
                "\nInstruct the robot to open the drawer\nAnswer with robot parameters. ASSISTANT:"
            ]
        );
        assert_eq!(p.images(), 4);
    }

    #[test]
    fn goal_checks() {
        assert_eq!(
            build_policy_prompt(&spec(), "  "),
            Err(PromptError::EmptyGoal)
        );
        assert!(
            matches!(build_policy_prompt(&spec(), "go <image 12> now"), Err(PromptError::PlaceholderInGoal(p)) if p == "<image 12>")
        );
        assert!(build_policy_prompt(&spec(), "put <image> in {goal}").is_ok());
    }

    #[test]
    fn splitting_edge_cases() {
        assert_eq!(split_on_placeholders("<image 1>"), ["", ""]);
        assert_eq!(
            split_on_placeholders("a<image >b<image x><image 3"),
            ["a<image >b<image x><image 3"]
        );
        assert_eq!(split_on_placeholders("<<image 7>>"), ["<", ">"]);
        assert!(is_placeholder("<image 10>"));
        assert!(!is_placeholder("<image 1>\n"));
    }
}
