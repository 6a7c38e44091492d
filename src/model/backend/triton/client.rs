//! A blocking KServe v2 gRPC client: tonic on a current-thread tokio runtime this client owns,
//! every call bounded by a deadline (sent as `grpc-timeout` too, so the server drops work nobody
//! waits for). A reply that arrives after its deadline is never seen: the call's future is
//! dropped, which resets its HTTP/2 stream.

use std::collections::HashMap;
use std::time::Duration;

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::proto::{self, InferParameter, ParameterChoice};
use super::TritonConfig;

/// The largest reply accepted, bytes (a 3B model's image embeddings are ~5 MB per image).
pub const MAX_REPLY_BYTES: usize = 256 << 20;

/// Why a call gave no answer.
#[derive(Clone, Debug, PartialEq)]
pub enum CallError {
    /// No connection (refused, reset, TLS, DNS).
    Unreachable(String),
    /// No answer within the deadline.
    Deadline(Duration),
    /// The server answered with an error status.
    Server(String),
}

impl CallError {
    /// A short word for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Unreachable(_) => "unreachable",
            CallError::Deadline(_) => "deadline",
            CallError::Server(_) => "server error",
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(why) => write!(f, "unreachable: {why}"),
            CallError::Deadline(d) => write!(f, "no answer within {} ms", d.as_millis()),
            CallError::Server(why) => write!(f, "server error: {why}"),
        }
    }
}

/// One input tensor: name, KServe datatype, shape and little-endian bytes.
pub struct Input {
    pub name: &'static str,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
    pub data: Vec<u8>,
}

impl Input {
    pub fn f32(name: &'static str, shape: Vec<i64>, values: &[f32]) -> Input {
        Input {
            name,
            datatype: "FP32",
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn i64(name: &'static str, shape: Vec<i64>, values: impl Iterator<Item = i64>) -> Input {
        Input {
            name,
            datatype: "INT64",
            shape,
            data: values.flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// The sequence batcher's controls for a stateful model.
#[derive(Clone, Copy, Debug)]
pub struct Sequence {
    pub id: u64,
    pub start: bool,
}

/// Bytes a call put on and took off the wire (protobuf payloads, without HTTP/2 framing).
#[derive(Clone, Copy, Debug, Default)]
pub struct Traffic {
    pub sent: u64,
    pub received: u64,
}

pub struct Client {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    pub url: String,
    pub deadline: Duration,
}

/// `grpc://host:port` and `host:port` mean plain HTTP/2; `https://` is TLS.
pub fn endpoint_uri(url: &str) -> Result<String, String> {
    let url = url.trim();
    let uri = if let Some(rest) = url.strip_prefix("grpc://") {
        format!("http://{rest}")
    } else if url.starts_with("http://") || url.starts_with("https://") {
        url.to_string()
    } else if url.contains("://") {
        return Err(format!(
            "{url:?}: use grpc://HOST:PORT, http://HOST:PORT or https://HOST:PORT"
        ));
    } else {
        format!("http://{url}")
    };
    let authority = uri.split_once("://").map_or("", |(_, r)| r);
    if authority.is_empty() || authority.starts_with(':') {
        return Err(format!("{url:?}: no host"));
    }
    Ok(uri)
}

impl Client {
    /// A client for `config.url`; connects on first use (so a server that is down now may be
    /// up by the first call).
    pub fn new(config: &TritonConfig) -> Result<Client, String> {
        let uri = endpoint_uri(&config.url)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the client's runtime: {e}"))?;
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| format!("{:?}: {e}", config.url))?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true);
        if uri.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &config.ca_certificate {
                let pem = std::fs::read(ca)
                    .map_err(|e| format!("the CA certificate {}: {e}", ca.display()))?;
                tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| format!("TLS for {:?}: {e}", config.url))?;
        }
        let channel = {
            let _guard = runtime.enter();
            endpoint.connect_lazy()
        };
        Ok(Client {
            runtime,
            channel,
            url: config.url.clone(),
            deadline: config.deadline,
        })
    }

    fn call<Req, Resp>(
        &self,
        path: &'static str,
        message: Req,
        deadline: Duration,
    ) -> Result<(Resp, Traffic), CallError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let sent = message.encoded_len() as u64;
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_REPLY_BYTES)
            .max_encoding_message_size(MAX_REPLY_BYTES);
        let mut request = tonic::Request::new(message);
        request.set_timeout(deadline);
        let call = async move {
            grpc.ready()
                .await
                .map_err(|e| CallError::Unreachable(error_chain(&e)))?;
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            grpc.unary(request, PathAndQuery::from_static(path), codec)
                .await
                .map_err(|s| status_error(s, deadline))
        };
        let reply = self
            .runtime
            .block_on(async { tokio::time::timeout(deadline, call).await })
            .map_err(|_| CallError::Deadline(deadline))??
            .into_inner();
        let received = reply.encoded_len() as u64;
        Ok((reply, Traffic { sent, received }))
    }

    pub fn server_live(&self) -> Result<bool, CallError> {
        let (r, _): (proto::ServerLiveResponse, _) = self.call(
            proto::SERVER_LIVE,
            proto::ServerLiveRequest {},
            self.deadline,
        )?;
        Ok(r.live)
    }

    pub fn server_ready(&self) -> Result<bool, CallError> {
        let (r, _): (proto::ServerReadyResponse, _) = self.call(
            proto::SERVER_READY,
            proto::ServerReadyRequest {},
            self.deadline,
        )?;
        Ok(r.ready)
    }

    pub fn model_ready(&self, name: &str) -> Result<bool, CallError> {
        let request = proto::ModelReadyRequest {
            name: name.to_string(),
            version: String::new(),
        };
        let (r, _): (proto::ModelReadyResponse, _) =
            self.call(proto::MODEL_READY, request, self.deadline)?;
        Ok(r.ready)
    }

    pub fn model_metadata(&self, name: &str) -> Result<proto::ModelMetadataResponse, CallError> {
        let request = proto::ModelMetadataRequest {
            name: name.to_string(),
            version: String::new(),
        };
        Ok(self.call(proto::MODEL_METADATA, request, self.deadline)?.0)
    }

    /// Runs `model` on `inputs` and returns the one output `output` as f32 values with its
    /// shape.
    pub fn infer_f32(
        &self,
        model: &str,
        inputs: Vec<Input>,
        output: &str,
        sequence: Option<Sequence>,
        deadline: Duration,
    ) -> Result<(Vec<i64>, Vec<f32>, Traffic), CallError> {
        let (shape, datatype, raw, traffic) =
            self.infer(model, inputs, output, None, sequence, deadline)?;
        let bad = |why: String| CallError::Server(format!("model {model}: {why}"));
        if datatype != "FP32" {
            return Err(bad(format!("output {output:?} is {datatype}, not FP32")));
        }
        let count: i64 = shape.iter().product();
        if shape.iter().any(|&d| d < 0) || raw.len() as i64 != count * 4 {
            return Err(bad(format!(
                "output {output:?} has shape {shape:?} but {} bytes",
                raw.len()
            )));
        }
        let values = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok((shape, values, traffic))
    }

    /// Like [`Client::infer_f32`], but the server sends only the `k` largest values of
    /// `output` with their indices (KServe's classification extension), largest first.
    pub fn infer_top_k(
        &self,
        model: &str,
        inputs: Vec<Input>,
        output: &str,
        k: u32,
        sequence: Option<Sequence>,
        deadline: Duration,
    ) -> Result<(Vec<(f32, usize)>, Traffic), CallError> {
        let (_, datatype, raw, traffic) =
            self.infer(model, inputs, output, Some(k), sequence, deadline)?;
        let bad = |why: String| CallError::Server(format!("model {model}: {why}"));
        if datatype != "BYTES" {
            return Err(bad(format!(
                "the top {k} of {output:?} came as {datatype}, not BYTES"
            )));
        }
        let top = parse_classes(&raw).map_err(bad)?;
        Ok((top, traffic))
    }

    /// One `ModelInfer`: the requested output's shape, datatype and raw bytes.
    fn infer(
        &self,
        model: &str,
        inputs: Vec<Input>,
        output: &str,
        classification: Option<u32>,
        sequence: Option<Sequence>,
        deadline: Duration,
    ) -> Result<(Vec<i64>, String, Vec<u8>, Traffic), CallError> {
        let mut parameters = HashMap::new();
        if let Some(s) = sequence {
            // Triton takes the id as int64_param (or a string), not uint64_param.
            parameters.insert(
                "sequence_id".to_string(),
                InferParameter::new(ParameterChoice::Int64Param(s.id as i64)),
            );
            parameters.insert(
                "sequence_start".to_string(),
                InferParameter::new(ParameterChoice::BoolParam(s.start)),
            );
            parameters.insert(
                "sequence_end".to_string(),
                InferParameter::new(ParameterChoice::BoolParam(false)),
            );
        }
        let mut output_parameters = HashMap::new();
        if let Some(k) = classification {
            output_parameters.insert(
                "classification".to_string(),
                InferParameter::new(ParameterChoice::Int64Param(i64::from(k))),
            );
        }
        let mut request = proto::ModelInferRequest {
            model_name: model.to_string(),
            parameters,
            outputs: vec![proto::InferRequestedOutputTensor {
                name: output.to_string(),
                parameters: output_parameters,
            }],
            ..Default::default()
        };
        for input in inputs {
            request.inputs.push(proto::InferInputTensor {
                name: input.name.to_string(),
                datatype: input.datatype.to_string(),
                shape: input.shape,
            });
            request.raw_input_contents.push(input.data);
        }
        let (mut reply, traffic): (proto::ModelInferResponse, _) =
            self.call(proto::MODEL_INFER, request, deadline)?;
        let bad = |why: String| CallError::Server(format!("model {model}: {why}"));
        let at = reply
            .outputs
            .iter()
            .position(|o| o.name == output)
            .ok_or_else(|| bad(format!("no output {output:?} in the reply")))?;
        if at >= reply.raw_output_contents.len() {
            return Err(bad(format!("output {output:?} has no raw contents")));
        }
        let raw = reply.raw_output_contents.swap_remove(at);
        let tensor = reply.outputs.swap_remove(at);
        Ok((tensor.shape, tensor.datatype, raw, traffic))
    }
}

/// A BYTES tensor of `score:index[:label]` strings (each a little-endian u32 length, then the
/// bytes), as the classification extension sends it.
pub fn parse_classes(raw: &[u8]) -> Result<Vec<(f32, usize)>, String> {
    let mut out = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or("a truncated BYTES element")?;
        let len = u32::from_le_bytes(*len) as usize;
        if tail.len() < len {
            return Err("a truncated BYTES element".into());
        }
        let (text, tail) = tail.split_at(len);
        let text = std::str::from_utf8(text).map_err(|_| "a class that is not UTF-8")?;
        let mut parts = text.split(':');
        let score = parts.next().and_then(|v| v.parse::<f32>().ok());
        let index = parts.next().and_then(|v| v.parse::<usize>().ok());
        match (score, index) {
            (Some(s), Some(i)) => out.push((s, i)),
            _ => return Err(format!("a class {text:?} that is not score:index")),
        }
        rest = tail;
    }
    Ok(out)
}

fn status_error(status: tonic::Status, deadline: Duration) -> CallError {
    use tonic::Code;
    match status.code() {
        Code::Unavailable | Code::Unknown if status.message().contains("transport") => {
            CallError::Unreachable(status.message().to_string())
        }
        Code::Unavailable => CallError::Unreachable(status.message().to_string()),
        // Triton answers a request whose grpc-timeout ran out with Cancelled ("Timeout
        // expired"); this client cancels nothing else.
        Code::DeadlineExceeded | Code::Cancelled => CallError::Deadline(deadline),
        code => CallError::Server(format!("{code:?}: {}", status.message())),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let mut raw = Vec::new();
        for t in ["4.021417:61", "3.88:0:label"] {
            raw.extend((t.len() as u32).to_le_bytes());
            raw.extend(t.as_bytes());
        }
        assert_eq!(
            parse_classes(&raw).unwrap(),
            vec![(4.021417, 61), (3.88, 0)]
        );
        assert!(parse_classes(&raw[..raw.len() - 1]).is_err());
        assert!(parse_classes(&[3, 0, 0, 0, b'x', b'y', b'z']).is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(endpoint_uri("grpc://h:8001").unwrap(), "http://h:8001");
        assert_eq!(endpoint_uri("h:8001").unwrap(), "http://h:8001");
        assert_eq!(endpoint_uri("https://h:8001").unwrap(), "https://h:8001");
        assert!(endpoint_uri("ftp://h").is_err());
        assert!(endpoint_uri("grpc://").is_err());
    }
}
