//! The Triton backend: the server first, the local backend when the server does not answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{CallError, Client, Input, Sequence, Traffic};
use super::{expected_io, model_names, tensor_mismatch, RemoteStats, TritonConfig};
use crate::model::backend::{Backend, KvCache, LoadStep};
use crate::model::manifest::Manifest;
use crate::model::{ModelError, ModelFolder};

fn backend_error(reason: impl std::fmt::Display) -> ModelError {
    ModelError::Backend {
        backend: "triton".into(),
        reason: reason.to_string(),
    }
}

/// What `doctor` and `devices` learn from a server: live, ready, and each model's metadata
/// against the manifest.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ServerCheck {
    pub url: String,
    pub live: bool,
    pub ready: bool,
    /// One line per model: `NAME: ready, matches the manifest` or what is wrong.
    pub models: Vec<String>,
    /// Everything needed to run the folder on the server is there and matches.
    pub usable: bool,
    /// The first problem, when not usable.
    pub problem: String,
}

/// Checks the server at `config.url` for the model folder `manifest`.
pub fn probe_server(config: &TritonConfig, manifest: &Manifest) -> ServerCheck {
    let mut check = ServerCheck {
        url: config.url.clone(),
        live: false,
        ready: false,
        models: Vec::new(),
        usable: false,
        problem: String::new(),
    };
    let client = match Client::new(config) {
        Ok(c) => c,
        Err(e) => {
            check.problem = e;
            return check;
        }
    };
    match client.server_live() {
        Ok(live) => check.live = live,
        Err(e) => {
            check.problem = format!("{}: {e}", config.url);
            return check;
        }
    }
    check.ready = client.server_ready().unwrap_or(false);
    let prefix = config
        .model_prefix
        .clone()
        .unwrap_or_else(|| manifest.name.clone());
    match verify_models(&client, &prefix, manifest) {
        Ok(lines) => {
            check.models = lines;
            check.usable = check.live && check.ready;
            if !check.ready {
                check.problem = format!("{}: the server is live but not ready", config.url);
            }
        }
        Err((lines, problem)) => {
            check.models = lines;
            check.problem = problem.to_string();
        }
    }
    check
}

/// Each model ready and its metadata as the manifest says. `Err` carries the lines so far and
/// the error: [`ModelError::Input`] naming the model when the metadata disagrees (the server
/// serves another model), a backend error when the server cannot be asked.
fn verify_models(
    client: &Client,
    prefix: &str,
    manifest: &Manifest,
) -> Result<Vec<String>, (Vec<String>, ModelError)> {
    let mut lines = Vec::new();
    let names = model_names(prefix);
    for ((graph, inputs, outputs), name) in expected_io(manifest).into_iter().zip(&names) {
        let ask = |e: CallError| backend_error(format!("{}: model {name}: {e}", client.url));
        let ready = match client.model_ready(name) {
            Ok(r) => r,
            Err(e) => return Err((lines, ask(e))),
        };
        if !ready {
            let e = ModelError::Input(format!(
                "the Triton server {} has no ready model {name} (the {graph} graph of {}); serve the repository `spatialbot-edge triton-repo --model DIR` writes",
                client.url, manifest.name
            ));
            lines.push(format!("{name}: not ready"));
            return Err((lines, e));
        }
        let meta = match client.model_metadata(name) {
            Ok(m) => m,
            Err(e) => return Err((lines, ask(e))),
        };
        let mut problems = Vec::new();
        for (want, served) in [(&inputs, &meta.inputs), (&outputs, &meta.outputs)] {
            for w in want.iter() {
                match served.iter().find(|t| t.name == w.name) {
                    None => problems.push(format!("no tensor {}", w.name)),
                    Some(t) => problems.extend(tensor_mismatch(w, &t.datatype, &t.shape)),
                }
            }
        }
        if !problems.is_empty() {
            lines.push(format!("{name}: {}", problems.join("; ")));
            let e = ModelError::Input(format!(
                "the Triton server {} serves a model {name} that disagrees with the manifest of {} ({}): {}; serve the repository `spatialbot-edge triton-repo` writes for this model folder",
                client.url,
                manifest.name,
                graph,
                problems.join("; ")
            ));
            return Err((lines, e));
        }
        lines.push(format!("{name}: ready, matches the manifest"));
    }
    Ok(lines)
}

/// Where calls go now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Server,
    /// Local until this instant, then the server is tried again.
    Local(Instant),
}

/// The decoder's cache: the server holds the keys and values; this keeps the embeddings fed so
/// far, to rebuild the cache locally when the server fails mid-generation.
struct TritonCache {
    /// Which of this backend's sequences it is; a later sequence restarts the server's one.
    generation: u64,
    /// Still on the server.
    remote: bool,
    history: Vec<f32>,
    local: Option<KvCache>,
}

pub struct TritonBackend {
    client: Client,
    config: TritonConfig,
    manifest: Manifest,
    names: [String; 3],
    local: Option<Box<dyn Backend>>,
    /// The models' metadata matched the manifest.
    verified: bool,
    route: Route,
    /// This process's correlation id for the decoder's sequence.
    sequence_id: u64,
    generation: AtomicU64,
    stats: Arc<RemoteStats>,
    steps: Vec<LoadStep>,
}

impl TritonBackend {
    /// Connects to the server and checks its models against the manifest. `local` runs what
    /// the server does not answer; without it a server that is down at start is an error.
    pub fn load(
        folder: &ModelFolder,
        config: &TritonConfig,
        local: Option<Box<dyn Backend>>,
    ) -> Result<TritonBackend, ModelError> {
        let started = Instant::now();
        let client = Client::new(config).map_err(backend_error)?;
        let manifest = folder.manifest.clone();
        let prefix = config
            .model_prefix
            .clone()
            .unwrap_or_else(|| manifest.name.clone());
        let names = model_names(&prefix);
        let stats = Arc::new(RemoteStats {
            url: config.url.clone(),
            ..RemoteStats::default()
        });
        let mut backend = TritonBackend {
            client,
            config: config.clone(),
            manifest,
            names,
            local,
            verified: false,
            route: Route::Server,
            sequence_id: sequence_id(),
            generation: AtomicU64::new(0),
            stats,
            steps: Vec::new(),
        };
        match verify_models(&backend.client, &prefix, &backend.manifest) {
            Ok(_) => backend.verified = true,
            Err((_, e)) if e.is_bad_input() => return Err(e),
            Err((_, e)) if backend.local.is_none() => return Err(e),
            Err((_, e)) => {
                tracing::warn!(
                    "triton: {e}; running on the local backend until the server answers"
                );
                backend.note_failure_text(&e.to_string());
                backend.route = Route::Local(Instant::now() + config.retry_after);
            }
        }
        backend.steps.push(LoadStep::new(
            format!("triton {}: models checked", config.url),
            started.elapsed(),
        ));
        if let Some(local) = &backend.local {
            backend.steps.extend(local.load_steps().iter().cloned());
        }
        Ok(backend)
    }

    fn note_failure_text(&self, text: &str) {
        if let Ok(mut last) = self.stats.last_error.lock() {
            *last = text.to_string();
        }
    }

    /// May this call go to the server? Checks the models first if that never succeeded.
    fn server_now(&mut self) -> bool {
        if let Route::Local(until) = self.route {
            if Instant::now() < until {
                return false;
            }
        }
        if !self.verified {
            match verify_models(&self.client, &self.names_prefix(), &self.manifest) {
                Ok(_) => self.verified = true,
                Err((_, e)) => {
                    if e.is_bad_input() {
                        tracing::error!("triton: {e}; the server is not used again this run");
                        self.route = Route::Local(Instant::now() + Duration::from_secs(1 << 30));
                    } else {
                        self.route = Route::Local(Instant::now() + self.config.retry_after);
                    }
                    self.note_failure_text(&e.to_string());
                    return false;
                }
            }
        }
        true
    }

    fn names_prefix(&self) -> String {
        self.config
            .model_prefix
            .clone()
            .unwrap_or_else(|| self.manifest.name.clone())
    }

    fn answered(&mut self, traffic: Traffic) {
        self.stats.remote_calls.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_sent
            .fetch_add(traffic.sent, Ordering::Relaxed);
        self.stats
            .bytes_received
            .fetch_add(traffic.received, Ordering::Relaxed);
        if self.route != Route::Server {
            self.stats.switches_back.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "triton {}: the server answers again; calls go to it",
                self.config.url
            );
            self.route = Route::Server;
        }
    }

    /// The server failed `what`: count, log the switch, rest the server.
    fn failed(&mut self, what: &str, e: &CallError) -> Result<(), ModelError> {
        let counter = match e {
            CallError::Unreachable(_) => &self.stats.switches_unreachable,
            CallError::Deadline(_) => &self.stats.switches_deadline,
            CallError::Server(_) => &self.stats.switches_server_error,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.note_failure_text(&format!("{what}: {e}"));
        if self.local.is_none() {
            return Err(backend_error(format!(
                "{}: {what}: {e}; the board's backend order has no local backend after triton",
                self.config.url
            )));
        }
        tracing::warn!(
            "triton {}: {what}: {e}; falling back to the local backend ({}) for {} ms",
            self.config.url,
            e.kind(),
            self.config.retry_after.as_millis()
        );
        self.route = Route::Local(Instant::now() + self.config.retry_after);
        Ok(())
    }

    fn local(&mut self) -> Result<&mut Box<dyn Backend>, ModelError> {
        self.stats.local_calls.fetch_add(1, Ordering::Relaxed);
        let url = self.config.url.clone();
        self.local.as_mut().ok_or_else(|| {
            backend_error(format!(
                "{url} is resting after a failure and there is no local backend"
            ))
        })
    }

    fn remote_vision(&self, pixels: &[f32], n: usize) -> Result<(Vec<f32>, Traffic), CallError> {
        let s = self.manifest.vision.image_size as i64;
        let input = Input::f32("pixel_values", vec![n as i64, 3, s, s], pixels);
        let (shape, values, traffic) = self.client.infer_f32(
            &self.names[0],
            vec![input],
            "image_embeds",
            None,
            self.config.deadline,
        )?;
        let want = [
            n as i64,
            self.manifest.vision.tokens_per_image as i64,
            self.manifest.vision.embed_dim as i64,
        ];
        if shape != want {
            return Err(CallError::Server(format!(
                "{}: image_embeds {shape:?}, expected {want:?}",
                self.names[0]
            )));
        }
        Ok((values, traffic))
    }

    fn remote_embed(&self, ids: &[u32]) -> Result<(Vec<f32>, Traffic), CallError> {
        let input = Input::i64(
            "input_ids",
            vec![1, ids.len() as i64],
            ids.iter().map(|&i| i64::from(i)),
        );
        let (shape, values, traffic) = self.client.infer_f32(
            &self.names[1],
            vec![input],
            "inputs_embeds",
            None,
            self.config.deadline,
        )?;
        let want = [1, ids.len() as i64, self.manifest.llm.hidden_size as i64];
        if shape != want {
            return Err(CallError::Server(format!(
                "{}: inputs_embeds {shape:?}, expected {want:?}",
                self.names[1]
            )));
        }
        Ok((values, traffic))
    }

    fn remote_decode(
        &self,
        past: usize,
        embeds: &[f32],
        len: usize,
    ) -> Result<(Vec<f32>, Traffic), CallError> {
        let h = self.manifest.llm.hidden_size as i64;
        let inputs = vec![
            Input::f32("inputs_embeds", vec![1, len as i64, h], embeds),
            Input::i64(
                "attention_mask",
                vec![1, (past + len) as i64],
                std::iter::repeat_n(1, past + len),
            ),
            Input::i64(
                "position_ids",
                vec![1, len as i64],
                (past..past + len).map(|p| p as i64),
            ),
        ];
        let sequence = Sequence {
            id: self.sequence_id,
            start: past == 0,
        };
        let vocab = self.manifest.llm.vocab_size;
        if let Some(k) = self.config.logits_top_k {
            let (top, traffic) = self.client.infer_top_k(
                &self.names[2],
                inputs,
                "logits",
                k,
                Some(sequence),
                self.config.deadline,
            )?;
            let mut logits = vec![f32::NEG_INFINITY; vocab];
            for (score, index) in top {
                let slot = logits.get_mut(index).ok_or_else(|| {
                    CallError::Server(format!(
                        "{}: logit index {index} beyond the vocabulary ({vocab})",
                        self.names[2]
                    ))
                })?;
                *slot = score;
            }
            return Ok((logits, traffic));
        }
        let (shape, values, traffic) = self.client.infer_f32(
            &self.names[2],
            inputs,
            "logits",
            Some(sequence),
            self.config.deadline,
        )?;
        if values.len() != vocab {
            return Err(CallError::Server(format!(
                "{}: logits {shape:?}, expected {vocab} values",
                self.names[2]
            )));
        }
        Ok((values, traffic))
    }
}

/// A correlation id unlikely to collide with another robot's: time and process id mixed.
fn sequence_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32);
    // splitmix64 finaliser; positive as an int64, and 0 means "no sequence" to Triton.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((x ^ (x >> 31)) >> 1) | 1
}

impl Backend for TritonBackend {
    fn describe(&self) -> String {
        let local = self
            .local
            .as_ref()
            .map(|l| format!("; falls back to {}", l.describe()))
            .unwrap_or_default();
        format!(
            "triton {} (models {}, deadline {} ms){local}",
            self.config.url,
            self.names.join(", "),
            self.config.deadline.as_millis()
        )
    }

    fn load_steps(&self) -> &[LoadStep] {
        &self.steps
    }

    fn remote_stats(&self) -> Option<Arc<RemoteStats>> {
        Some(self.stats.clone())
    }

    fn vision(&mut self, pixels: &[f32], n: usize) -> Result<Vec<f32>, ModelError> {
        if self.server_now() {
            match self.remote_vision(pixels, n) {
                Ok((values, traffic)) => {
                    self.answered(traffic);
                    return Ok(values);
                }
                Err(e) => self.failed("vision", &e)?,
            }
        }
        self.local()?.vision(pixels, n)
    }

    fn embed(&mut self, ids: &[u32]) -> Result<Vec<f32>, ModelError> {
        if self.server_now() {
            match self.remote_embed(ids) {
                Ok((values, traffic)) => {
                    self.answered(traffic);
                    return Ok(values);
                }
                Err(e) => self.failed("embed", &e)?,
            }
        }
        self.local()?.embed(ids)
    }

    fn new_cache(&self) -> Result<KvCache, ModelError> {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(KvCache {
            past_len: 0,
            inner: Box::new(TritonCache {
                generation,
                remote: true,
                history: Vec::new(),
                local: None,
            }),
        })
    }

    fn decode(
        &mut self,
        cache: &mut KvCache,
        embeds: &[f32],
        len: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let hidden = self.manifest.llm.hidden_size;
        crate::model::backend::check_decode_input(embeds, len, hidden)?;
        let past = cache.past_len;
        let current = self.generation.load(Ordering::Relaxed);
        let state = cache.state_mut::<TritonCache>()?;
        // The server keeps one sequence per process: an older cache's was restarted.
        if state.generation != current {
            state.remote = false;
        }
        if state.remote && self.server_now() {
            match self.remote_decode(past, embeds, len) {
                Ok((logits, traffic)) => {
                    let state = cache.state_mut::<TritonCache>()?;
                    state.history.extend_from_slice(embeds);
                    cache.past_len += len;
                    self.answered(traffic);
                    return Ok(logits);
                }
                Err(e) => self.failed("decoder", &e)?,
            }
        }
        // Local from here on for this generation: rebuild the cache from what was fed so far.
        let state = cache.state_mut::<TritonCache>()?;
        state.remote = false;
        let local_cache = state.local.take();
        let history = std::mem::take(&mut state.history);
        self.stats.local_calls.fetch_add(1, Ordering::Relaxed);
        let url = self.config.url.clone();
        let Some(local) = self.local.as_mut() else {
            return Err(backend_error(format!(
                "{url} is resting after a failure and there is no local backend"
            )));
        };
        let mut replayed = false;
        let mut lc = match local_cache {
            Some(c) => c,
            None => {
                let mut fresh = local.new_cache()?;
                if past > 0 {
                    local.decode(&mut fresh, &history, past)?;
                    replayed = true;
                }
                fresh
            }
        };
        let logits = local.decode(&mut lc, embeds, len);
        if replayed {
            self.stats.replays.fetch_add(1, Ordering::Relaxed);
        }
        let state = cache.state_mut::<TritonCache>()?;
        state.local = Some(lc);
        if logits.is_ok() {
            cache.past_len += len;
        }
        logits
    }
}
