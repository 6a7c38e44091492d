//! Tokenisation and prompt building against Python `tokenizers` and the reference pipeline's
//! recorded prompts.

use crate::support;
use spatialbot_edge::model::prompt::{self, PromptPiece};
use spatialbot_edge::model::sampling::Rng;
use spatialbot_edge::model::{ModelFolder, TextTokenizer};

fn tokenizer(name: &str) -> TextTokenizer {
    TextTokenizer::from_file(
        &support::repo_root()
            .join("models")
            .join(name)
            .join("tokenizer.json"),
    )
    .unwrap()
}

fn random_strings(seed: u64, count: usize) -> Vec<String> {
    let alphabet: Vec<char> =
        "abcXYZ 019.,:;!?()<>[]{}\n\t  éüßжж中文😀'\"-_/\\Depth(0.5, 0.2)<image 1>"
            .chars()
            .collect();
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let len = (rng.next_f64() * 40.0) as usize;
            (0..len)
                .map(|_| alphabet[(rng.next_f64() * alphabet.len() as f64) as usize])
                .collect()
        })
        .collect()
}

fn adversarial() -> Vec<String> {
    [
        "",
        " ",
        "   ",
        "\n",
        "\n\n \n",
        "a  b   c    d",
        "12345678901234567890",
        "3.14159, -2e10, 0x1F",
        "<image 1>\n<image 2>\nHow far?",
        "text<image 1>text",
        "<|endoftext|>",
        "answer<|endoftext|>USER: again",
        "Ünïcödé — “quotes” ‘and’ emoji 🤖🦾 and CJK 深度",
        "\u{200b}zero width\u{feff}",
        "tabs\tand\r\ncarriage",
        "Depth(0.51,0.40) Depth( 0.5 , 0.715 )",
        "ASSISTANT: [0.5,0.52,0.48,0.5,0.5,0.5,1.0,0.0]",
        "'s 't 're 've 'm 'll 'd",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn compare_with_python(name: &str, seed: u64) {
    let Some(py) = support::reference_python() else {
        return;
    };
    let tok = tokenizer(name);
    let mut texts = adversarial();
    texts.extend(random_strings(seed, 200));
    let path = support::repo_root()
        .join("models")
        .join(name)
        .join("tokenizer.json");
    let code = r#"
import sys, json
from tokenizers import Tokenizer
t = Tokenizer.from_file(sys.argv[1])
texts = json.load(sys.stdin)
print(json.dumps([t.encode(s).ids if s else [] for s in texts]))
"#;
    let mut child = std::process::Command::new(&py)
        .arg("-c")
        .arg(code)
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(serde_json::to_string(&texts).unwrap().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let theirs: Vec<Vec<u32>> = serde_json::from_slice(&out.stdout).unwrap();
    for (text, want) in texts.iter().zip(&theirs) {
        let ours = tok.encode(text).unwrap();
        assert_eq!(&ours, want, "{name}: tokenising {text:?}");
        if !text.is_empty() {
            assert_eq!(
                tok.decode(&ours, false).unwrap(),
                *text,
                "{name}: round trip of {text:?}"
            );
        }
    }
}

#[test]
fn tokenisation_matches_python_tokenizers_spatialbot() {
    compare_with_python("tiny-spatialbot", 11);
}

#[test]
fn tokenisation_matches_python_tokenizers_policy() {
    compare_with_python("tiny-policy", 12);
}

/// The reference pipeline's recorded `input_ids` (placeholders −201, −202) for every round of
/// every end-to-end case, rebuilt from the manifest template and the round's question text.
#[test]
fn prompts_match_the_reference_pipeline() {
    let f = ModelFolder::open(support::repo_root().join("models/tiny-spatialbot")).unwrap();
    let tok = tokenizer("tiny-spatialbot");
    let e2e: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(f.dir.join("reference/e2e/e2e.json")).unwrap(),
    )
    .unwrap();
    let p = &f.manifest.prompt;
    let settings = f.manifest.depth_api();
    let stop = tok.decode(&[f.manifest.llm.stop_ids[0]], false).unwrap();
    for case in e2e["cases"].as_array().unwrap() {
        let mut question = case["question"].as_str().unwrap().to_string();
        for round in case["rounds"].as_array().unwrap() {
            let built = prompt::build(
                &p.template,
                &p.system,
                &p.image_placeholder,
                2,
                &question,
                |t| tok.encode(t),
            )
            .unwrap();
            let flat: Vec<i64> = built
                .pieces
                .iter()
                .flat_map(|piece| match piece {
                    PromptPiece::Text(ids) => ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                    PromptPiece::Image(k) => vec![-201 - *k as i64],
                })
                .collect();
            let want: Vec<i64> = round["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(flat, want, "prompt of {:?}", round["prompt"]);
            if let Some(reply) = round
                .get("reply")
                .and_then(|r| r.as_str())
                .filter(|r| !r.is_empty())
            {
                let turn = settings.turn.replace("{reply}", reply);
                question = spatialbot_edge::model::vqa::next_question(
                    &question,
                    &p.template,
                    round["answer"].as_str().unwrap(),
                    &stop,
                    &turn,
                );
            }
        }
    }
}
