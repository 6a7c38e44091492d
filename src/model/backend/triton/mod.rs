//! Inference offloaded to a Triton Inference Server over KServe v2 gRPC, with the board's local
//! backend standing in, call by call, when the server cannot answer in time.
//!
//! The server runs the model folder's own graphs, as `spatialbot-edge triton-repo` lays them out:
//! `{prefix}_vision` (dynamic batching: images of several robots run together), `{prefix}_embed`
//! and `{prefix}_decoder` (sequence batching: the key/value cache stays on the server, keyed by
//! this backend's correlation id; each decoder call sends only the new positions' embeddings, an
//! attention mask and position ids — never the cache).
//!
//! Fall-back, decided per call: a call the server does not answer within the deadline (down,
//! unreachable, slow, or an error) runs on the local backend instead; the late answer, if one
//! ever comes, is dropped with its stream. A generation whose decoder falls back mid-way replays
//! the embeddings it has fed so far into a local cache and goes on there. After a failure the
//! server is left alone for `retry_after`, then tried again. Every switch between server and
//! local is logged; every call is counted in [`RemoteStats`].
//!
//! Before the server runs anything, each model's metadata (inputs, outputs, datatypes, shapes)
//! is checked against the manifest: a server whose models disagree is refused, naming the model.

#[cfg(feature = "triton")]
mod client;
#[cfg(feature = "triton")]
pub mod proto;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Where the server is and how long to wait for it.
#[derive(Clone, Debug, PartialEq)]
pub struct TritonConfig {
    /// `grpc://HOST:PORT` (plain HTTP/2), `https://HOST:PORT` (TLS) or `HOST:PORT`.
    pub url: String,
    /// Longest wait for one call's answer (an image, an embedding, a decoder step).
    pub deadline: Duration,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// After a failed call, how long the server is left alone (calls run locally meanwhile).
    pub retry_after: Duration,
    /// PEM file of the CA that signed the server's certificate (`https://` only), besides the
    /// system's roots.
    pub ca_certificate: Option<PathBuf>,
    /// Model names on the server are `{prefix}_vision`, `{prefix}_embed`, `{prefix}_decoder`;
    /// `None` = the manifest's `name`.
    pub model_prefix: Option<String>,
    /// The decoder sends only the `k` largest logits of each step (with 6 decimals), the rest
    /// standing at −∞: exact for greedy decoding, sampling sees the top k only. `None` = all
    /// (vocabulary × 4 bytes per token).
    pub logits_top_k: Option<u32>,
}

impl TritonConfig {
    pub fn new(url: impl Into<String>) -> TritonConfig {
        TritonConfig {
            url: url.into(),
            deadline: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
            retry_after: Duration::from_millis(1000),
            ca_certificate: None,
            model_prefix: None,
            logits_top_k: None,
        }
    }
}

/// The three graphs' model names on the server for a model named `prefix`.
pub fn model_names(prefix: &str) -> [String; 3] {
    ["vision", "embed", "decoder"].map(|g| format!("{prefix}_{g}"))
}

/// What the remote backend did, for the run report: counters shared with the backend.
#[derive(Debug, Default)]
pub struct RemoteStats {
    pub url: String,
    /// Calls the server answered in time.
    pub remote_calls: AtomicU64,
    /// Calls that ran locally because the server did not answer in time (or was resting after
    /// a failure).
    pub local_calls: AtomicU64,
    /// Server → local switches, by cause.
    pub switches_unreachable: AtomicU64,
    pub switches_deadline: AtomicU64,
    pub switches_server_error: AtomicU64,
    /// Local → server switches (the server answered again).
    pub switches_back: AtomicU64,
    /// Decoder generations replayed into a local cache after the server failed mid-way.
    pub replays: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub last_error: Mutex<String>,
}

/// A snapshot of [`RemoteStats`].
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RemoteCounts {
    pub url: String,
    pub remote_calls: u64,
    pub local_calls: u64,
    pub switches_to_local: u64,
    pub switches_unreachable: u64,
    pub switches_deadline: u64,
    pub switches_server_error: u64,
    pub switches_back: u64,
    pub replays: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub last_error: String,
}

impl RemoteStats {
    pub fn counts(&self) -> RemoteCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (u, d, s) = (
            g(&self.switches_unreachable),
            g(&self.switches_deadline),
            g(&self.switches_server_error),
        );
        RemoteCounts {
            url: self.url.clone(),
            remote_calls: g(&self.remote_calls),
            local_calls: g(&self.local_calls),
            switches_to_local: u + d + s,
            switches_unreachable: u,
            switches_deadline: d,
            switches_server_error: s,
            switches_back: g(&self.switches_back),
            replays: g(&self.replays),
            bytes_sent: g(&self.bytes_sent),
            bytes_received: g(&self.bytes_received),
            last_error: self
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
        }
    }
}

/// The KServe datatype and shape each graph's inputs and outputs must have on the server, from
/// the manifest (`-1` = any size). Vision's first axis is the batch axis.
pub fn expected_io(
    manifest: &crate::model::manifest::Manifest,
) -> [(&'static str, Vec<TensorSpec>, Vec<TensorSpec>); 3] {
    let v = &manifest.vision;
    let l = &manifest.llm;
    let (s, t, h, vocab) = (
        v.image_size as i64,
        v.tokens_per_image as i64,
        l.hidden_size as i64,
        l.vocab_size as i64,
    );
    let spec = |name: &'static str, datatype: &'static str, shape: Vec<i64>| TensorSpec {
        name,
        datatype,
        shape,
    };
    [
        (
            "vision",
            vec![spec("pixel_values", "FP32", vec![-1, 3, s, s])],
            vec![spec(
                "image_embeds",
                "FP32",
                vec![-1, t, v.embed_dim as i64],
            )],
        ),
        (
            "embed",
            vec![spec("input_ids", "INT64", vec![1, -1])],
            vec![spec("inputs_embeds", "FP32", vec![1, -1, h])],
        ),
        (
            "decoder",
            vec![
                spec("inputs_embeds", "FP32", vec![1, -1, h]),
                spec("attention_mask", "INT64", vec![1, -1]),
                spec("position_ids", "INT64", vec![1, -1]),
            ],
            vec![spec("logits", "FP32", vec![1, 1, vocab])],
        ),
    ]
}

/// One tensor a server model must have.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: &'static str,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

/// Where a served tensor (`name`, `datatype`, `shape`) disagrees with `want`; `None` if it fits.
/// A served `-1` fits any expected size; an expected `-1` needs a served `-1`.
pub fn tensor_mismatch(want: &TensorSpec, datatype: &str, shape: &[i64]) -> Option<String> {
    if datatype != want.datatype {
        return Some(format!(
            "{} is {datatype}, the manifest needs {}",
            want.name, want.datatype
        ));
    }
    let fits = shape.len() == want.shape.len()
        && shape
            .iter()
            .zip(&want.shape)
            .all(|(&got, &w)| got == w || (got == -1 && w >= 0) || (w == -1 && got == -1));
    (!fits).then(|| {
        format!(
            "{} has shape {shape:?}, the manifest needs {:?}",
            want.name, want.shape
        )
    })
}

#[cfg(feature = "triton")]
mod remote;
#[cfg(feature = "triton")]
pub use remote::{probe_server, ServerCheck, TritonBackend};

/// Why this build has no Triton client.
pub const TRITON_UNAVAILABLE: &str =
    "this binary was built without the Triton client; rebuild with the default features (`triton`)";
